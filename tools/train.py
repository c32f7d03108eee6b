"""Train a detector (MMDetection 3.x ``tools/train.py`` conventions).

Examples::

    python tools/train.py configs/ssd300_vgg16_8xb8-120e_coco.py --work-dir work_dirs/ssd300
    python tools/train.py CONFIG --resume                 # from work_dir's newest intact checkpoint
    python tools/train.py CONFIG --resume path/to/epoch_12.pth --amp --auto-scale-lr
    bash tools/dist_train.sh CONFIG 8                     # 8 processes (gloo without GPUs)
    mim train ssd_plugin CONFIG --launcher pytorch --gpus 8
"""

import argparse

from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.config import Config
from mmengine.registry import RUNNERS

import ssd_plugin  # noqa: F401  (registers the components: configs need no custom_imports)
from ssd_plugin.engine import QuietRunner
from ssd_plugin.engine.amp import add_amp_args, apply_amp_cfg
from ssd_plugin.engine.checkpoint import weights_only_checkpoint_loading
from ssd_plugin.engine.launch import (
    add_hooks,
    add_launch_args,
    add_run_hooks,
    load_cfg,
    setup_cpu_distributed,
)
from ssd_plugin.engine.resume import resolve_auto_resume


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    add_amp_args(parser)
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the LR by the total batch size / auto_scale_lr.base_batch_size')  # fmt: skip
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the one '
                        'last_checkpoint in the work dir names (or, where that one is missing or '
                        'damaged, the newest intact checkpoint there)')  # fmt: skip
    add_launch_args(parser)
    return parser.parse_args(argv)


def build_cfg(args: argparse.Namespace) -> Config:
    """The config as the command line asks for it."""
    cfg = load_cfg(args.config, args)
    apply_amp_cfg(cfg, args.amp, args.amp_dtype)  # --amp, --amp-dtype or the config's amp
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError(f'--auto-scale-lr needs auto_scale_lr.base_batch_size in '
                               f'{args.config}')  # fmt: skip
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume

    if args.launcher != 'none':
        add_hooks(cfg, ['AllReduceLossHook'])  # log the mean loss of all ranks
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_cache_size_limit_of_dynamo()
    cfg = build_cfg(args)
    # a plain --resume skips a truncated newest checkpoint (killed while saving, disk full)
    resume_note = resolve_auto_resume(cfg) if args.resume == 'auto' else None
    setup_cpu_distributed(cfg)
    add_run_hooks(cfg)
    runner = QuietRunner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if resume_note is not None:
        runner.logger.warning(resume_note)
    with weights_only_checkpoint_loading():  # loads mmengine's checkpoints with torch >= 2.6
        runner.train()


if __name__ == '__main__':
    main()
