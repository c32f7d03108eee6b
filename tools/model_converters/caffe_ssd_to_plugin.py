"""Convert a Caffe SSD model (deploy prototxt + caffemodel) into an mmdet config and checkpoint.

Usage::

    python tools/model_converters/caffe_ssd_to_plugin.py deploy.prototxt model.caffemodel \\
        --out-dir work_dirs/caffe_face --classes face --mean 104 177 123

writes ``DIR/config.py`` and ``DIR/model.pth`` for ``tools/test.py``, ``tools/image_demo.py``,
``mmdet.apis.init_detector`` and ``tools/deploy/export_onnx.py``, and prints what it assumed
(Caffe files do not store the preprocessing). The logic lives in :mod:`ssd_plugin.caffe`.
"""

import argparse
import sys
from typing import List, Optional

from ssd_plugin.caffe import CaffeFormatError, convert
from ssd_plugin.caffe.convert import DEFAULT_MEAN

__all__ = ['main', 'parse_args']


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('prototxt', help='deploy prototxt (text)')
    parser.add_argument('caffemodel', help='trained weights (binary .caffemodel)')
    parser.add_argument('--out-dir', required=True, help='receives config.py and model.pth')
    names = parser.add_mutually_exclusive_group()
    names.add_argument(
        '--classes', nargs='+', help='foreground class names in Caffe label order (no background)'
    )
    names.add_argument(
        '--labelmap', help="SSD's labelmap.prototxt (item { name label display_name })"
    )
    parser.add_argument(
        '--mean',
        nargs='+',
        type=float,
        default=list(DEFAULT_MEAN),
        help="per-channel mean in the net's channel order (default: Caffe SSD's 104 117 123)",
    )
    parser.add_argument(
        '--std',
        nargs='+',
        type=float,
        default=None,
        help='per-channel divisor after the mean; Caffe scale s is std 1/s (default: none)',
    )
    parser.add_argument(
        '--input-order',
        choices=('bgr', 'rgb'),
        default='bgr',
        help='channel order the net was trained on (default: bgr, as Caffe)',
    )
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        convert(
            args.prototxt,
            args.caffemodel,
            args.out_dir,
            classes=args.classes,
            labelmap=args.labelmap,
            mean=args.mean,
            std=args.std,
            input_order=args.input_order,
        )
    except (CaffeFormatError, FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
