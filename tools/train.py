"""Train a detector (MMDetection 3.x ``tools/train.py`` conventions).

Examples::

    python tools/train.py configs/ssd300_vgg16_8xb8-120e_coco.py --work-dir work_dirs/ssd300
    python tools/train.py CONFIG --resume                 # from work_dir's newest intact checkpoint
    python tools/train.py CONFIG --resume path/to/epoch_12.pth --amp
    python tools/train.py CONFIG --no-auto-scale-lr       # the config's lr, whatever the batch
    python tools/train.py CONFIG --seed 0 --deterministic # the same checkpoints every time
    bash tools/dist_train.sh CONFIG 8 --sync-bn           # 8 processes (gloo without GPUs)
    mim train ssd_plugin CONFIG --launcher pytorch --gpus 8
"""

import argparse

from mmengine.config import Config  # no torch: mmengine's config module

from ssd_plugin_cli.errors import add_debug_arg, run_tool
from ssd_plugin_cli.options import add_amp_args, add_launch_args, add_train_options

# mmdet, mmengine's runner and ssd_plugin (torch) are imported where they are used, after the
# arguments are parsed: --help and a wrong option answer without loading the detection stack


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    add_amp_args(parser)
    add_train_options(parser)  # --[no-]auto-scale-lr, --sync-bn, --seed, --deterministic
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the one '
                        'last_checkpoint in the work dir names (or, where that one is missing or '
                        'damaged, the newest intact checkpoint there)')  # fmt: skip
    add_launch_args(parser)
    add_debug_arg(parser)
    return parser.parse_args(argv)


def build_cfg(args: argparse.Namespace) -> Config:
    """The config as the command line asks for it."""
    import ssd_plugin  # noqa: F401  (registers the components: configs need no custom_imports)
    from ssd_plugin.cli.amp import apply_amp_cfg
    from ssd_plugin.cli.launch import add_hooks, load_cfg
    from ssd_plugin.cli.train_options import apply_train_options

    cfg = load_cfg(args.config, args)
    apply_amp_cfg(cfg, args.amp, args.amp_dtype)  # --amp, --amp-dtype or the config's amp
    apply_train_options(cfg, args)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume

    if args.launcher != 'none':
        add_hooks(cfg, ['AllReduceLossHook'])  # log the mean loss of all ranks
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    from mmengine.registry import RUNNERS

    from ssd_plugin.cli.launch import add_run_hooks, end_distributed, setup_distributed
    from ssd_plugin.cli.resume import resolve_auto_resume
    from ssd_plugin.cli.train_options import check_sync_bn
    from ssd_plugin.engine import QuietRunner
    from ssd_plugin.engine.checkpoint import weights_only_checkpoint_loading

    setup_cache_size_limit_of_dynamo()
    cfg = build_cfg(args)
    # a plain --resume skips a truncated newest checkpoint (killed while saving, disk full)
    resume_note = resolve_auto_resume(cfg) if args.resume == 'auto' else None
    check_sync_bn(cfg)  # before any process waits for another
    setup_distributed(cfg)
    add_run_hooks(cfg)
    runner = QuietRunner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if resume_note is not None:
        runner.logger.warning(resume_note)
    with weights_only_checkpoint_loading():  # loads mmengine's checkpoints with torch >= 2.6
        runner.train()
    if cfg.launcher != 'none':
        del runner  # its DDP reducer goes before the process group
        end_distributed()


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
