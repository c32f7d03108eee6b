"""Quantise an exported SSD (ONNX) to int8 for OpenVINO with NNCF, calibrated on the val set.

The OpenVINO counterpart of ``quantize_onnx.py`` (:mod:`ssd_plugin.deploy.openvino_quantize`):
the network becomes int8, normalisation, decoding and post-processing stay float32; the output
is OpenVINO IR (``.xml`` + ``.bin``). Score it next to PyTorch and the other runtimes with
``eval_runtimes.py``. Example::

    python tools/deploy/quantize_openvino.py configs/ssd_demo_shapes.py work_dirs/demo/model.onnx \\
        work_dirs/demo/model_ov_int8.xml --calib-images 200
"""

import argparse
import os.path as osp

from ssd_plugin_cli.errors import add_debug_arg, run_tool
from ssd_plugin_cli.options import add_data_root_arg

# mmdet and ssd_plugin (torch) are imported where they are used, after the arguments are
# parsed: --help and a wrong option answer without loading the detection stack


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='int8 NNCF quantisation of an exported SSD for '
                                     'OpenVINO')  # fmt: skip
    parser.add_argument('config', help='the config the model was exported from')
    parser.add_argument('model', help='float32 .onnx from tools/deploy/export_onnx.py')
    parser.add_argument('out', help='OpenVINO IR .xml to write (a .bin is written beside it)')
    parser.add_argument('--calib-images', type=int, default=100,
                        help='val images to calibrate on (default 100)')  # fmt: skip
    add_data_root_arg(parser)
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    for key in ('config', 'model'):
        if not osp.isfile(getattr(args, key)):
            parser.error(f'{key} file not found: {getattr(args, key)}')
    if not args.out.endswith('.xml'):
        parser.error(f'out must end with .xml (OpenVINO IR), got {args.out}')
    return args


def main(argv=None) -> str:
    args = parse_args(argv)
    from mmengine.registry import init_default_scope

    import ssd_plugin  # noqa: F401  (registers the components: configs need no custom_imports)
    from ssd_plugin.cli.data_root import load_config_with_data_root
    from ssd_plugin.deploy.openvino_quantize import quantize_openvino
    from ssd_plugin.deploy.quantize import calibration_batches

    cfg = load_config_with_data_root(args.config, args.data_root)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    batches = calibration_batches(cfg, args.model, args.calib_images)
    quantize_openvino(args.model, args.out, batches, note=f'first {args.calib_images} val images')
    print(f'wrote {args.out}: int8 (NNCF) for OpenVINO, calibrated on {args.calib_images} val '
          'images')  # fmt: skip
    return args.out


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
