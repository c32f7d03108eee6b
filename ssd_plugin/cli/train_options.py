"""``tools/train.py``'s options that decide what a run trains on N processes, applied to a config.

The options themselves are built by :func:`ssd_plugin_cli.options.add_train_options` (no torch);
:func:`apply_train_options` writes them into the config.

- ``--auto-scale-lr`` / ``--no-auto-scale-lr``: the learning rate follows the global batch
  (:mod:`ssd_plugin.engine.global_batch`); by default it does wherever the config names
  ``auto_scale_lr.base_batch_size``.
- ``--sync-bn``: mmengine's ``sync_bn`` config key: every BatchNorm of the model becomes
  ``torch.nn.SyncBatchNorm`` in a distributed run, so its statistics come from the global batch.
  torch's SyncBatchNorm runs on accelerators only; a distributed run without one stops before
  it starts, with the reason (:func:`check_sync_bn`).
- ``--seed S`` and ``--deterministic``: mmengine's ``randomness`` (seed, deterministic
  algorithms).
"""

import argparse

from mmengine.config import Config
from mmengine.device import get_device

from ssd_plugin_cli.options import SYNC_BN_IMPLEMENTATIONS

from ..engine.global_batch import auto_scale_lr_cfg

__all__ = ['apply_train_options', 'check_sync_bn']


def apply_train_options(cfg: Config, args: argparse.Namespace) -> None:
    """Write the :func:`ssd_plugin_cli.options.add_train_options` arguments into ``cfg``.

    Raises:
        ValueError: ``--auto-scale-lr`` on a config without ``auto_scale_lr.base_batch_size``.
    """
    cfg.auto_scale_lr = auto_scale_lr_cfg(cfg.get('auto_scale_lr'), args.auto_scale_lr,
                                          args.config)  # fmt: skip
    if args.sync_bn is not None:
        cfg.sync_bn = args.sync_bn
    randomness = dict(cfg.get('randomness') or {})
    if args.seed is not None:
        randomness['seed'] = args.seed
    if args.deterministic:
        randomness['deterministic'] = True
    cfg.randomness = randomness


def check_sync_bn(cfg: Config) -> None:
    """Stop a run whose ``sync_bn`` cannot work, before any process waits for another.

    Raises:
        ValueError: An unknown ``sync_bn`` value, or ``sync_bn`` in a distributed run without an
            accelerator (torch's and mmcv's SyncBatchNorm compute on GPUs only).
    """
    sync_bn = cfg.get('sync_bn')
    if sync_bn is None:
        return
    if sync_bn not in SYNC_BN_IMPLEMENTATIONS:
        raise ValueError(f'sync_bn must be one of {SYNC_BN_IMPLEMENTATIONS}, got {sync_bn!r}')
    if cfg.get('launcher', 'none') != 'none' and get_device() == 'cpu':
        raise ValueError(
            f'sync_bn={sync_bn!r} (--sync-bn) needs GPUs: SyncBatchNorm cannot run on the CPU, '
            'and this distributed run has no accelerator. Train without it (BatchNorm then '
            'normalises over the images of each process).'
        )
