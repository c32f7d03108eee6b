"""HOOKS ``NonFiniteLossHook``: stop, or skip the update, on a NaN/Inf training loss.

A NaN loss that reaches ``optimizer.step()`` turns every weight into NaN, and a hook that looks
at the loss in ``after_train_iter`` (such as mmdet's ``CheckInvalidLossHook``) sees it only after
that step. This hook checks the loss *before* the backward pass: at ``before_train`` it wraps
``update_params`` of the runner's optimizer wrapper(s), the single call through which
``train_step`` back-propagates and steps, so it works the same for ``OptimWrapper`` and
``AmpOptimWrapper`` (and each wrapper of an ``OptimWrapperDict``) without a subclass per wrapper
type.

With a loss scaler (float16 ``--amp``: ``LossScaleOptimWrapper`` or mmengine's
``AmpOptimWrapper``), an overflow is the scaler's to handle: it skips the step and lowers the
scale, and a non-finite loss then goes on to the scaler instead of stopping the run. The hook acts
only on what the scaler cannot handle: ``max_scaler_skips`` consecutive skipped steps (a network
that overflows at any scale, or a loss that is non-finite whatever the scale) raise
:class:`FloatingPointError`. Without a scaler (float32, or bf16 whose range is float32's), a
non-finite loss is never an overflow the next step fixes, so ``skip`` / ``max_skips`` apply.
"""

from typing import Callable, List

import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict
from torch import Tensor

from ..method_wrap import unwrap_method, wrap_method
from ..rank_agreement import any_rank

__all__ = ['NonFiniteLossHook']

_SKIPS_KEY = 'non_finite_loss_skips'
_SCALER_SKIPS_KEY = 'loss_scaler_consecutive_skips'
_TAG = 'NonFiniteLossHook'


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Guard every optimizer update against a non-finite training loss.

    By default a NaN or Inf loss raises :class:`FloatingPointError` naming the iteration
    (1-based, as in the training log) before any gradient is computed, so the weights saved by
    the last checkpoint stay usable. With ``skip=True`` that batch is dropped instead: no
    backward pass, no optimizer step, no change to momentum buffers or the loss scale. Each skip
    is logged as a warning and counted in the message hub's ``non_finite_loss_skips`` (saved in
    checkpoints, so the count survives ``--resume``); once the count passes ``max_skips`` the
    hook raises as if skipping were off. Under distributed training the check is all-reduced,
    so every rank skips the same iterations and no collective is left waiting.

    With a loss scaler the scaler skips overflowed steps and the hook counts consecutive skips
    (a lowered scale, or a non-finite loss) in ``loss_scaler_consecutive_skips``; more than
    ``max_scaler_skips`` in a row raise. A dynamic scaler starting at 2^16 that skipped 16 steps
    in a row scales by less than 1: lowering it further cannot help.

    Args:
        skip (bool): Skip the update instead of raising (no loss scaler). Defaults to False.
        max_skips (int): Most updates skipped in one training run (no loss scaler).
            Defaults to 10.
        max_scaler_skips (int): Most consecutive steps a loss scaler may skip. Defaults to 16.
    """

    priority = 'VERY_HIGH'

    def __init__(self, skip: bool = False, max_skips: int = 10, max_scaler_skips: int = 16) -> None:
        for name, value in (('max_skips', max_skips), ('max_scaler_skips', max_scaler_skips)):
            if value < 0:
                raise ValueError(f'{name} must be >= 0, got {value}')
        self.skip = skip
        self.max_skips = max_skips
        self.max_scaler_skips = max_scaler_skips

    def before_train(self, runner) -> None:
        for wrapper in _wrappers(runner):
            scaler = getattr(wrapper, 'loss_scaler', None)
            if scaler is not None and scaler.is_enabled():
                make = lambda update, s=scaler: self._count_scaler_skips(update, s, runner)  # noqa: E731
            else:
                make = lambda update: self._guard(update, runner)  # noqa: E731
            wrap_method(wrapper, 'update_params', make, _TAG)

    def after_train(self, runner) -> None:
        for wrapper in _wrappers(runner):
            unwrap_method(wrapper, 'update_params', _TAG)

    def _count_scaler_skips(self, update_params: Callable, scaler, runner) -> Callable:
        def counted(loss: Tensor, *args, **kwargs) -> None:
            scale = scaler.get_scale()
            finite = _all_ranks_finite(loss)
            update_params(loss, *args, **kwargs)
            # a dynamic scaler lowers its scale exactly when it skipped the step; a fixed scale
            # never moves, and then the loss tells
            if finite and scaler.get_scale() >= scale:
                runner.message_hub.update_info(_SCALER_SKIPS_KEY, 0)
                return
            skips = runner.message_hub.get_info(_SCALER_SKIPS_KEY, 0) + 1
            runner.message_hub.update_info(_SCALER_SKIPS_KEY, skips)
            if skips > self.max_scaler_skips:
                raise FloatingPointError(
                    f'The loss scaler skipped {skips} steps in a row up to iteration '
                    f'{runner.iter + 1} (loss {loss.item()}, scale now {scaler.get_scale()}): '
                    f'the network overflows at any scale (NonFiniteLossHook '
                    f'max_scaler_skips={self.max_scaler_skips}). Train in bf16 or float32, or '
                    f'lower the learning rate.'
                )

        return counted

    def _guard(self, update_params: Callable, runner) -> Callable:
        def guarded(loss: Tensor, *args, **kwargs) -> None:
            if _all_ranks_finite(loss):
                return update_params(loss, *args, **kwargs)
            iteration = runner.iter + 1
            skips = runner.message_hub.get_info(_SKIPS_KEY, 0) + 1
            where = f'iteration {iteration}'
            if not self.skip:
                raise FloatingPointError(
                    f'The training loss is {loss.item()} at {where}; stopped before the '
                    f'optimizer step. Lower the learning rate or add warm-up / gradient '
                    f'clipping, or set NonFiniteLossHook(skip=True) to drop such batches.'
                )
            if skips > self.max_skips:
                raise FloatingPointError(
                    f'The training loss is {loss.item()} at {where}, and {skips - 1} updates '
                    f'were skipped already (NonFiniteLossHook max_skips={self.max_skips}).'
                )
            runner.message_hub.update_info(_SKIPS_KEY, skips)
            runner.logger.warning(
                f'Skipped the update of {where}: the training loss is {loss.item()} '
                f'({skips} of at most {self.max_skips} skips).'
            )

        return guarded


def _wrappers(runner) -> List[OptimWrapper]:
    """The runner's optimizer wrapper, or each wrapper of an ``OptimWrapperDict``."""
    optim_wrapper = runner.optim_wrapper
    if isinstance(optim_wrapper, OptimWrapperDict):
        return list(optim_wrapper.values())
    return [optim_wrapper]


def _all_ranks_finite(loss: Tensor) -> bool:
    """Whether ``loss`` is finite on every rank (one all-reduce under distributed training)."""
    return not any_rank((~torch.isfinite(loss.detach())).any())
