"""Quantise an exported SSD (ONNX) to int8 with ONNX Runtime, calibrated on the config's val set.

The network's convolutions (and the ReLU / pooling / residual additions between them) become
int8; normalisation, box decoding and post-processing stay float32
(:mod:`ssd_plugin.deploy.quantize`). ``--target`` names the CPUs the int8 graph is for
(``auto``: this one; ``avx2`` holds on every x86 CPU, see the module): the settings are printed
and stored in the graph's metadata (``int8_settings``). With ``--eval`` it also scores both graphs
on the val set through the config's evaluator (``CocoMetric``): each evaluator table is headed by
the graph it belongs to, then one line compares the two bbox mAPs. Examples::

    python tools/deploy/export_onnx.py configs/ssd_demo_shapes.py work_dirs/demo/iter_2000.pth \\
        work_dirs/demo/model.onnx --with-nms
    python tools/deploy/quantize_onnx.py configs/ssd_demo_shapes.py work_dirs/demo/model.onnx \\
        work_dirs/demo/model_int8.onnx --calib-images 200 --eval
    python tools/deploy/quantize_onnx.py CONFIG model.onnx model_int8.onnx --target avx2
"""

import argparse
import os.path as osp

from ssd_plugin_cli.errors import add_debug_arg, run_tool
from ssd_plugin_cli.options import add_data_root_arg

# mmdet and ssd_plugin (torch) are imported where they are used, after the arguments are
# parsed: --help and a wrong option answer without loading the detection stack

# ssd_plugin.deploy.quantize's INT8_TARGETS (keys) and QUANT_OPS, for --target and --ops (a test
# checks that they agree)
INT8_TARGETS = ('avx2', 'vnni', 'amx')
QUANT_OPS = ('Conv', 'Relu', 'Clip', 'MaxPool', 'Add', 'Concat')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='int8 static quantisation of an exported SSD')
    parser.add_argument('config', help='the config the model was exported from')
    parser.add_argument('model', help='float32 .onnx from tools/deploy/export_onnx.py')
    parser.add_argument('out', help='int8 .onnx to write (e.g. model_int8.onnx)')
    parser.add_argument('--calib-images', type=int, default=100,
                        help='val images to calibrate on (default 100)')  # fmt: skip
    parser.add_argument('--batch-size', type=int, default=8, help='images per call (default 8)')
    parser.add_argument('--format', choices=['qdq', 'qoperator'], default='qdq',
                        help='QuantizeLinear/DequantizeLinear pairs or int8 operators')  # fmt: skip
    parser.add_argument('--per-channel', action=argparse.BooleanOptionalAction, default=True,
                        help='one weight scale per output channel (default: yes)')  # fmt: skip
    parser.add_argument('--target', choices=['auto', *INT8_TARGETS], default='auto',
                        help='the CPUs the graph is for: avx2 (7-bit weights, holds on any CPU), '
                        'vnni, amx; auto: this CPU\'s (default)')  # fmt: skip
    parser.add_argument(
        '--ops',
        nargs='+',
        default=list(QUANT_OPS),
        help=f'operator types to quantise (default {" ".join(QUANT_OPS)})',
    )
    parser.add_argument('--eval', action='store_true',
                        help='print the val bbox mAP of the float32 and int8 graphs')  # fmt: skip
    parser.add_argument('--eval-images', type=int, help='evaluate on the first N val images')
    add_data_root_arg(parser)
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    for key in ('config', 'model'):
        if not osp.isfile(getattr(args, key)):
            parser.error(f'{key} file not found: {getattr(args, key)}')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmengine.registry import init_default_scope

    import ssd_plugin  # noqa: F401  (registers the components: configs need no custom_imports)
    from ssd_plugin.cli.data_root import load_config_with_data_root
    from ssd_plugin.deploy.onnx_eval import bbox_map, evaluate_onnx
    from ssd_plugin.deploy.quantize import calibration_batches, int8_settings, quantize_onnx

    cfg = load_config_with_data_root(args.config, args.data_root)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    settings = int8_settings(args.target, args.format, args.per_channel)
    print(f'{settings.describe()} (--target {args.target})', flush=True)
    batches = calibration_batches(cfg, args.model, args.calib_images, args.batch_size)
    quantize_onnx(args.model, args.out, batches, settings, op_types=args.ops,
                  note=f'first {args.calib_images} val images')  # fmt: skip
    print(f'wrote {args.out}: int8 for {settings.target} CPUs ({args.format}, per-channel '
          f'{args.per_channel}, reduce_range {settings.reduce_range}), calibrated on '
          f'{args.calib_images} val images', flush=True)  # fmt: skip
    if not args.eval:
        return {}
    maps = {}
    for name, path in (('float32', args.model), ('int8', args.out)):
        print(f'\n==== val set, {name} graph ({path}) ====', flush=True)
        metrics = evaluate_onnx(path, cfg, batch_size=args.batch_size, num_images=args.eval_images)
        maps[name] = bbox_map(metrics)
    print(f'val bbox mAP: float32 {maps["float32"]:.4f}, int8 {maps["int8"]:.4f} '
          f'(int8 - float32 = {maps["int8"] - maps["float32"]:+.4f})')  # fmt: skip
    return maps


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
