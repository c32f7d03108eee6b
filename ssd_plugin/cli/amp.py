"""What the tools' ``--amp`` / ``--amp-dtype`` options write into a config.

Command-line glue only: the options are built by :func:`ssd_plugin_cli.options.add_amp_args`
(no torch, so ``--help`` answers at once); the precision choice and the network's autocast are
:mod:`ssd_plugin.engine.amp`; :class:`~ssd_plugin.engine.hooks.MixedPrecisionHook` applies them
during a run.
"""

from typing import Optional

import torch
from mmengine.config import Config

from ..engine.amp import AmpChoice, choose_amp

__all__ = ['apply_amp_cfg']

_AMP_KEYS = ('dtype', 'channels_last', 'loss_scale')


def apply_amp_cfg(cfg: Config, amp: bool = False, dtype: Optional[str] = None,
                  device: Optional[str] = None) -> Optional[AmpChoice]:  # fmt: skip
    """Apply ``--amp`` / ``--amp-dtype`` or the config's ``amp`` dict to a tool's config.

    Adds ``MixedPrecisionHook`` to ``cfg.custom_hooks`` and, where the choice needs a loss
    scaler (float16), sets ``optim_wrapper.type = 'LossScaleOptimWrapper'``. A config's
    ``AmpOptimWrapper`` (which would autocast the loss too, and asserts a GPU) becomes the
    plain or loss-scaling wrapper. Nothing changes without ``--amp`` and without ``cfg.amp``.

    Args:
        cfg (Config): Modified in place; ``cfg.amp`` is set to what was applied.
        amp (bool): ``--amp``.
        dtype (str, optional): ``--amp-dtype``; overrides ``cfg.amp.dtype``.
        device (str, optional): Default: ``'cuda'`` if available, else ``'cpu'`` (as the runner).

    Returns:
        AmpChoice | None: The choice, or None when mixed precision is off.

    Raises:
        ValueError: ``--amp-dtype`` without ``--amp`` and without ``cfg.amp``, or an unknown key
            in ``cfg.amp`` (named).
    """
    amp_cfg = cfg.get('amp')
    if amp_cfg is not None and not isinstance(amp_cfg, dict):
        raise ValueError(f'the config key amp must be a dict such as dict(dtype=\'auto\'), '
                         f'got {amp_cfg!r}')  # fmt: skip
    if not amp and amp_cfg is None:
        if dtype is not None:
            raise ValueError('--amp-dtype needs --amp (or an amp dict in the config)')
        return None
    amp_cfg = dict(amp_cfg or {})
    unknown = sorted(set(amp_cfg) - set(_AMP_KEYS))
    if unknown:
        raise ValueError(f'unknown key(s) amp.{", amp.".join(unknown)} in the config; '
                         f'amp takes {", ".join(_AMP_KEYS)}')  # fmt: skip
    if dtype is not None:
        amp_cfg['dtype'] = dtype
    amp_cfg.setdefault('dtype', 'auto')
    amp_cfg.setdefault('channels_last', True)
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    choice = choose_amp(device, amp_cfg['dtype'], amp_cfg['channels_last'])
    cfg.amp = amp_cfg

    hooks = [h for h in (cfg.get('custom_hooks') or []) if h.get('type') != 'MixedPrecisionHook']
    hooks.append(dict(type='MixedPrecisionHook', dtype=amp_cfg['dtype'],
                      channels_last=amp_cfg['channels_last']))  # fmt: skip
    cfg.custom_hooks = hooks
    wrapper = cfg.get('optim_wrapper')
    if wrapper is not None:
        if choice.loss_scale:
            wrapper['type'] = 'LossScaleOptimWrapper'
            wrapper['loss_scale'] = amp_cfg.get('loss_scale', wrapper.get('loss_scale', 'dynamic'))
            wrapper.pop('dtype', None)  # AmpOptimWrapper's: the hook autocasts, not the wrapper
        elif wrapper.get('type') in ('AmpOptimWrapper', 'LossScaleOptimWrapper'):
            wrapper['type'] = 'OptimWrapper'
            for key in ('loss_scale', 'dtype', 'use_fsdp'):
                wrapper.pop(key, None)
    return choice
