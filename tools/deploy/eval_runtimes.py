"""Score exported SSDs on the config's val set in every CPU runtime, next to PyTorch's score.

The checkpoint runs in PyTorch (``model.test_step``) and each MODEL (``--with-nms`` exports:
``.onnx`` float32 or int8, or an OpenVINO IR ``.xml``) in ONNX Runtime, OpenVINO and OpenCV's DNN
module (``--runtimes``; an ``.xml`` in OpenVINO only), on the same images through the same
evaluator (``CocoMetric``): a verified export is one whose bbox mAP matches PyTorch's. Each
evaluator table is headed by what it scores; a summary table ends the output (mAP and the
difference to PyTorch's; a runtime that cannot load or run a graph gets its error there).
Example::

    python tools/deploy/eval_runtimes.py configs/ssd_demo_shapes.py work_dirs/demo/iter_2000.pth \\
        work_dirs/demo/model.onnx work_dirs/demo/model_int8.onnx work_dirs/demo/model_ov_int8.xml
"""

import argparse
import os.path as osp
from typing import Dict, List, Optional

from ssd_plugin_cli.errors import add_debug_arg, run_tool
from ssd_plugin_cli.options import add_data_root_arg

# mmdet and ssd_plugin (torch) are imported where they are used, after the arguments are
# parsed: --help and a wrong option answer without loading the detection stack

#: ssd_plugin.deploy.runtimes.RUNTIMES, for --runtimes' choices (a test checks that they agree)
RUNTIMES = ('onnxruntime', 'openvino', 'opencv')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="exported SSDs' val bbox mAP in each CPU "
                                     "runtime, next to PyTorch's")  # fmt: skip
    parser.add_argument('config', help='the config the models were exported from')
    parser.add_argument('checkpoint', help='the checkpoint they were exported from')
    parser.add_argument('models', nargs='+', help='.onnx (--with-nms) or OpenVINO .xml files')
    parser.add_argument('--runtimes', nargs='+', choices=RUNTIMES, default=list(RUNTIMES),
                        help='runtimes to score .onnx files in (default: all)')  # fmt: skip
    parser.add_argument('--batch-size', type=int, default=8, help='images per call (default 8)')
    parser.add_argument('--eval-images', type=int, help='evaluate on the first N val images')
    add_data_root_arg(parser)
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    for path in (args.config, args.checkpoint, *args.models):
        if not osp.isfile(path):
            parser.error(f'file not found: {path}')
    return args


def main(argv=None) -> List[Dict[str, Optional[float]]]:
    args = parse_args(argv)
    from mmdet.apis import init_detector
    from mmengine.registry import init_default_scope

    import ssd_plugin  # noqa: F401  (registers the components: configs need no custom_imports)
    from ssd_plugin.cli.data_root import load_config_with_data_root
    from ssd_plugin.deploy.onnx_eval import bbox_map, evaluate_onnx, evaluate_pytorch
    from ssd_plugin.deploy.runtimes import runtime_version
    from ssd_plugin.engine.checkpoint import weights_only_checkpoint_loading

    cfg = load_config_with_data_root(args.config, args.data_root)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    with weights_only_checkpoint_loading():  # loads mmengine's checkpoints with torch >= 2.6
        model = init_detector(cfg, args.checkpoint, device='cpu')
    print(f'\n==== val set, PyTorch float32 ({args.checkpoint}) ====', flush=True)
    reference = bbox_map(evaluate_pytorch(model, cfg, batch_size=args.batch_size,
                                          num_images=args.eval_images))  # fmt: skip
    rows = [dict(model=args.checkpoint, runtime='pytorch', mAP=reference, error=None)]
    for path in args.models:
        runtimes = ['openvino'] if path.endswith('.xml') else args.runtimes
        for runtime in runtimes:
            print(
                f'\n==== val set, {path} in {runtime} {runtime_version(runtime)} ====', flush=True
            )
            row = dict(model=path, runtime=runtime, mAP=None, error=None)
            try:
                row['mAP'] = bbox_map(evaluate_onnx(path, cfg, batch_size=args.batch_size,
                                                    num_images=args.eval_images,
                                                    runtime=runtime))  # fmt: skip
            except Exception as exc:  # one runtime's failure leaves the others' rows
                row['error'] = f'{type(exc).__name__}: {str(exc).splitlines()[0][:120]}'
                print(f'{runtime} failed on {path}: {row["error"]}', flush=True)
            rows.append(row)
    print('\n| model | runtime | val bbox mAP | - PyTorch |\n|---|---|---|---|')
    for row in rows:
        if row['mAP'] is None:
            print(f'| {row["model"]} | {row["runtime"]} | failed: {row["error"]} | - |')
        else:
            print(f'| {row["model"]} | {row["runtime"]} | {row["mAP"]:.4f} | '
                  f'{row["mAP"] - reference:+.4f} |')  # fmt: skip
    return rows


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
