"""OPTIM_WRAPPERS ``LossScaleOptimWrapper``: a dynamic loss scaler on any device, no autocast.

mmengine's ``AmpOptimWrapper`` does two things: it scales the loss (``GradScaler``) and it
autocasts the whole ``train_step``, loss included; it also asserts a GPU. With ``--amp`` the
plugin autocasts the network only (``MixedPrecisionHook``), so this wrapper keeps the first part:
``AmpOptimWrapper``'s scaled backward, unscale-before-clip, skipped steps on overflow and the
scaler's state in checkpoints, with ``torch.amp.GradScaler`` on the parameters' device (CUDA, or
the CPU in tests), and an optimizer context without autocast.
"""

from typing import Union

import torch
from mmdet.registry import OPTIM_WRAPPERS
from mmengine.optim import AmpOptimWrapper, OptimWrapper

__all__ = ['LossScaleOptimWrapper']


@OPTIM_WRAPPERS.register_module()
class LossScaleOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper``'s loss scaling without its autocast and GPU assertion.

    Args:
        loss_scale (str | float | dict): ``'dynamic'`` (``GradScaler``'s defaults), a fixed
            scale, or ``GradScaler`` keyword arguments. Defaults to ``'dynamic'``.
        **kwargs: ``OptimWrapper``'s arguments (``optimizer``, ``clip_grad``, ...).
    """

    def __init__(self, loss_scale: Union[str, float, dict] = 'dynamic', **kwargs) -> None:
        OptimWrapper.__init__(self, **kwargs)  # AmpOptimWrapper.__init__ asserts a GPU
        device = self.optimizer.param_groups[0]['params'][0].device.type
        self._scale_update_param = None
        if loss_scale == 'dynamic':
            self.loss_scaler = torch.amp.GradScaler(device)
        elif isinstance(loss_scale, float):
            self._scale_update_param = loss_scale
            self.loss_scaler = torch.amp.GradScaler(device, init_scale=loss_scale)
        elif isinstance(loss_scale, dict):
            self.loss_scaler = torch.amp.GradScaler(device, **loss_scale)
        else:
            raise TypeError(f"optim_wrapper.loss_scale must be 'dynamic', a float or a dict, "
                            f'got {loss_scale!r}')  # fmt: skip
        self.cast_dtype = None

    # no autocast here: MixedPrecisionHook puts it around the network, not the loss
    optim_context = OptimWrapper.optim_context
