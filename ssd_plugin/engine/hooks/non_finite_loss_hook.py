"""HOOKS ``NonFiniteLossHook``: stop, or skip the update, on a NaN/Inf training loss.

A NaN loss that reaches ``optimizer.step()`` turns every weight into NaN, and a hook that looks
at the loss in ``after_train_iter`` (such as mmdet's ``CheckInvalidLossHook``) sees it only after
that step. This hook checks the loss *before* the backward pass: at ``before_train`` it wraps
``update_params`` of the runner's optimizer wrapper(s), the single call through which
``train_step`` back-propagates and steps, so it works the same for ``OptimWrapper`` and
``AmpOptimWrapper`` (and each wrapper of an ``OptimWrapperDict``) without a subclass per wrapper
type.
"""

import functools
from typing import Callable, List

import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict
from torch import Tensor

from ..rank_agreement import any_rank

__all__ = ['NonFiniteLossHook']

_SKIPS_KEY = 'non_finite_loss_skips'


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

    Args:
        skip (bool): Skip the update instead of raising. Defaults to False.
        max_skips (int): Most updates skipped in one training run. Defaults to 10.
    """

    priority = 'VERY_HIGH'

    def __init__(self, skip: bool = False, max_skips: int = 10) -> None:
        if max_skips < 0:
            raise ValueError(f'max_skips must be >= 0, got {max_skips}')
        self.skip = skip
        self.max_skips = max_skips

    def before_train(self, runner) -> None:
        for wrapper in _wrappers(runner):
            if not getattr(wrapper.update_params, '_guards_non_finite_loss', False):
                wrapper.update_params = self._guard(wrapper, runner)

    def after_train(self, runner) -> None:
        for wrapper in _wrappers(runner):
            # the guard is an instance attribute: deleting it restores the class's method
            if getattr(wrapper.update_params, '_guards_non_finite_loss', False):
                del wrapper.update_params

    def _guard(self, wrapper: OptimWrapper, runner) -> Callable:
        update_params = wrapper.update_params

        @functools.wraps(update_params)
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

        guarded._guards_non_finite_loss = True
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
