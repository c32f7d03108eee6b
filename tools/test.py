"""Test (and evaluate) a detector (MMDetection 3.x ``tools/test.py`` conventions).

Examples::

    python tools/test.py CONFIG CHECKPOINT                 # metrics of cfg.test_evaluator
    python tools/test.py CONFIG CHECKPOINT --out res.pkl   # also dump the raw results, for
                                                           # tools/analysis/rescore_results.py
    python tools/test.py CONFIG CHECKPOINT --show-dir vis  # draw the predictions
    python tools/test.py configs/ssd300_vgg16_8xb8-120e_coco_test-dev.py CHECKPOINT  # submission
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
    mim test ssd_plugin CONFIG --checkpoint CHECKPOINT --launcher pytorch --gpus 8
"""

import argparse

from mmengine.config import Config  # no torch: mmengine's config module

from ssd_plugin_cli.errors import add_debug_arg, run_tool
from ssd_plugin_cli.options import add_amp_args, add_launch_args

# mmdet, mmengine's runner and ssd_plugin (torch) are imported where they are used, after the
# arguments are parsed: --help and a wrong option answer without loading the detection stack


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the raw results (predictions and ground truth) to '
                        'this .pkl file for offline evaluation')  # fmt: skip
    parser.add_argument('--show', action='store_true', help='show the predictions')
    parser.add_argument('--show-dir', help='save images with predictions drawn, under '
                        'work_dir/<timestamp>/<show-dir>')  # fmt: skip
    parser.add_argument('--wait-time', type=float, default=2, help='--show interval (s)')
    add_amp_args(parser)
    add_launch_args(parser)
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl or .pickle file, got {args.out}')
    return args


def build_cfg(args: argparse.Namespace) -> Config:
    """The config as the command line asks for it."""
    from mmdet.engine.hooks.utils import trigger_visualization_hook

    import ssd_plugin  # noqa: F401  (registers the components: configs need no custom_imports)
    from ssd_plugin.cli.amp import apply_amp_cfg
    from ssd_plugin.cli.launch import load_cfg
    from ssd_plugin.visualization import border_safe

    cfg = load_cfg(args.config, args)
    cfg.load_from = args.checkpoint
    apply_amp_cfg(cfg, args.amp, args.amp_dtype)  # --amp, --amp-dtype or the config's amp
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
        border_safe(cfg.visualizer)  # boxes ending on the border: no out-of-bounds warnings
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmdet.engine.hooks import DetVisualizationHook
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    from mmengine.evaluator import DumpResults
    from mmengine.registry import RUNNERS

    from ssd_plugin.cli.launch import add_run_hooks, end_distributed, setup_distributed
    from ssd_plugin.engine import QuietRunner
    from ssd_plugin.engine.checkpoint import weights_only_checkpoint_loading

    setup_cache_size_limit_of_dynamo()
    cfg = build_cfg(args)
    setup_distributed(cfg)
    add_run_hooks(cfg)
    runner = QuietRunner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if args.out is not None:
        # mmengine's DumpResults keeps the ground truth (mmdet's DumpDetResults drops it), so
        # metrics that read it from the samples, such as VOCMetric, can re-score the file
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    with weights_only_checkpoint_loading():  # loads mmengine's checkpoints with torch >= 2.6
        runner.test()
    if args.show_dir:
        (hook,) = [h for h in runner.hooks if isinstance(h, DetVisualizationHook)]
        runner.logger.info(f'--show-dir: the drawn predictions are in {hook.test_out_dir}')
    if cfg.launcher != 'none':
        del runner  # its DDP model goes before the process group
        end_distributed()


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
