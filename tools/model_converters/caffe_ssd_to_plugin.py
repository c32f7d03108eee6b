"""Convert a Caffe SSD model (deploy prototxt + caffemodel) into an mmdet config and checkpoint.

Usage::

    python tools/model_converters/caffe_ssd_to_plugin.py deploy.prototxt model.caffemodel \\
        --out-dir work_dirs/caffe_face --classes face --mean 104 177 123

writes ``DIR/config.py`` and ``DIR/model.pth`` for ``tools/test.py``, ``tools/image_demo.py``,
``mmdet.apis.init_detector`` and ``tools/deploy/export_onnx.py``, and prints what it assumed
(Caffe files do not store the preprocessing). The logic lives in :mod:`ssd_plugin.caffe.converter`.

The prototxt is checked whole before anything is built; a file the converter refuses (a field
out of range, a cycle, a net larger than ``--max-memory-gib``, a prototxt larger than
``--max-prototxt-mib``) is one line on stderr naming the file, the layer and the field, and
exit status 1 (``--debug`` prints the traceback).
"""

import argparse
import sys
from typing import List, Optional

from ssd_plugin_cli.errors import add_debug_arg, run_tool

__all__ = ['main', 'parse_args']

# The converter's defaults (ssd_plugin.caffe.converter's DEFAULT_MEAN, DEFAULT_MAX_MEMORY_GIB,
# DEFAULT_MAX_PROTOTXT_MIB) as --help states them: importing them would import mmdet and torch
# before --help answers; a test checks that these equal the converter's.
DEFAULT_MEAN = (104.0, 117.0, 123.0)
DEFAULT_MAX_MEMORY_GIB = 2.0
DEFAULT_MAX_PROTOTXT_MIB = 8.0


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
    parser.add_argument(
        '--max-memory-gib',
        type=float,
        default=DEFAULT_MAX_MEMORY_GIB,
        help='refuse a net whose conversion is estimated to need more memory (default: '
        f'{DEFAULT_MAX_MEMORY_GIB:g} GiB; the estimate is printed either way)',
    )
    parser.add_argument(
        '--max-prototxt-mib',
        type=float,
        default=DEFAULT_MAX_PROTOTXT_MIB,
        help='refuse a larger prototxt before parsing it (default: '
        f'{DEFAULT_MAX_PROTOTXT_MIB:g} MiB; SSD deploy nets take under 1 MiB)',
    )
    add_debug_arg(parser)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    from ssd_plugin.caffe.converter import convert  # after parsing: imports mmdet and torch

    convert(
        args.prototxt,
        args.caffemodel,
        args.out_dir,
        classes=args.classes,
        labelmap=args.labelmap,
        mean=args.mean,
        std=args.std,
        input_order=args.input_order,
        max_memory_gib=args.max_memory_gib,
        max_prototxt_mib=args.max_prototxt_mib,
    )


if __name__ == '__main__':
    sys.exit(run_tool(main))  # a refusal: one line naming the file, layer and field; exit 1
