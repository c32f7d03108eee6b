"""HOOKS ``CheckpointGuardHook``: no checkpoint with non-finite weights, no silent overwrite.

A model can hold Inf weights while its loss is still finite (a huge weight decay overflows the
weights; batch norm hides their scale from the loss), so ``NonFiniteLossHook`` does not see it,
and mmengine's ``CheckpointHook`` would save the file, point ``last_checkpoint`` at it and
delete an older good file to honour ``max_keep_ckpts``. Its ``_save_checkpoint_with_step``
deletes that older file *before* ``Runner.save_checkpoint`` calls ``before_save_checkpoint``,
so checking there alone would lose it: this hook checks the model first in the (instance-level)
wrappers it puts around the save methods of every ``CheckpointHook`` of the runner, and again in
``before_save_checkpoint`` for any other caller of ``Runner.save_checkpoint``.

Those save methods are private to mmengine (0.10): :func:`private_save_api_problem` checks their
names and parameters when the run starts, and a mismatch is logged as a warning that says which
protection is lost, rather than the guard silently moving to the later check.
"""

import glob
import inspect
import os.path as osp
from typing import Callable, List, Optional

import mmengine
import torch
from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper

from ..finite_state import NonFiniteTensors, find_non_finite
from ..method_wrap import unwrap_method, wrap_method
from ..rank_agreement import any_rank

__all__ = ['CheckpointGuardHook', 'private_save_api_problem']

_TAG = 'CheckpointGuardHook'

#: mmengine's private ``CheckpointHook`` methods that delete or replace files before they save,
#: with the parameters (after ``self``) this hook reads by name. Pinned by a test; checked at
#: run time by :func:`private_save_api_problem`.
_SAVE_METHODS = {
    '_save_checkpoint_with_step': ('runner', 'step', 'meta'),
    '_save_best_checkpoint': ('runner', 'metrics'),
}


def private_save_api_problem(hook_type: type = CheckpointHook) -> Optional[str]:
    """What in ``hook_type`` differs from the private save methods this hook wraps, or None.

    Args:
        hook_type (type): ``CheckpointHook`` or a subclass.

    Returns:
        str | None: E.g. ``"CheckpointHook._save_best_checkpoint is missing"``; None when every
        method of :data:`_SAVE_METHODS` exists with those parameters.
    """
    problems = []
    for name, expected in _SAVE_METHODS.items():
        method = getattr(hook_type, name, None)
        if not callable(method):
            problems.append(f'{hook_type.__name__}.{name} is missing')
            continue
        found = tuple(inspect.signature(method).parameters)[1:]  # after self
        if found != expected:
            problems.append(
                f'{hook_type.__name__}.{name} takes ({", ".join(found)}), not '
                f'({", ".join(expected)})'
            )
    return '; '.join(problems) or None


@HOOKS.register_module()
class CheckpointGuardHook(Hook):
    """Refuse to save non-finite weights; warn when a new run will replace older checkpoints.

    Before any checkpoint is written (or an older one deleted), every floating-point weight and
    buffer of the model is checked; on a NaN or Inf the run stops with a
    :class:`FloatingPointError` naming the first such tensor and the iteration, and the files in
    the work dir, ``last_checkpoint`` included, stay as they were. Under distributed training
    the check is all-reduced, so every rank stops together.

    At the start of a run that does not resume (iteration 0), a warning lists the checkpoints the
    work dir already holds, which this run will overwrite.

    Priority ``LOWEST``: its ``before_train`` runs after ``CheckpointHook`` has resolved its
    output folder.
    """

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        for hook in _checkpoint_hooks(runner):
            problem = private_save_api_problem(type(hook))
            if problem is not None:
                # the run goes on, guarded only in before_save_checkpoint: say what is lost
                runner.logger.warning(
                    f'CheckpointGuardHook cannot guard {type(hook).__name__} of this mmengine '
                    f'({mmengine.__version__}): {problem}. Non-finite weights are now caught '
                    f'only after it may have deleted an older checkpoint (max_keep_ckpts) or the '
                    f'previous best one. Use mmengine 0.10.x, or update CheckpointGuardHook.'
                )
                continue
            for method in _SAVE_METHODS:
                if method == '_save_best_checkpoint' and not hook.save_best:
                    continue  # called after every validation, saves nothing then
                wrap_method(hook, method, lambda save, h=hook: self._guard(runner, h, save), _TAG)
        if runner.iter == 0 and is_main_process():
            self._warn_existing_checkpoints(runner)

    def after_train(self, runner) -> None:
        for hook in _checkpoint_hooks(runner):
            for method in _SAVE_METHODS:
                unwrap_method(hook, method, _TAG)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        found = find_non_finite(checkpoint.get('state_dict', {}).items())
        if found is not None:
            iteration = checkpoint.get('meta', {}).get('iter', runner.iter)
            raise FloatingPointError(_message(runner, found, iteration, 'the checkpoint'))

    def _guard(self, runner, hook: CheckpointHook, save: Callable) -> Callable:
        signature = inspect.signature(save)

        def guarded(*args, **kwargs):
            arguments = signature.bind(*args, **kwargs).arguments
            if 'step' in arguments:  # _save_checkpoint_with_step(runner, step, meta)
                iteration = arguments['meta']['iter']
                what = f'checkpoint {hook.filename_tmpl.format(arguments["step"])}'
            else:
                iteration, what = runner.iter, 'the best checkpoint'
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            found = find_non_finite(model.state_dict().items())
            flag = torch.tensor(found is not None, device=_device(model))
            if any_rank(flag):
                raise FloatingPointError(_message(runner, found, iteration, what))
            return save(*args, **kwargs)

        return guarded

    @staticmethod
    def _warn_existing_checkpoints(runner) -> None:
        folders = {hook.out_dir for hook in _checkpoint_hooks(runner)} | {runner.work_dir}
        found = sorted(
            {path for folder in folders for path in glob.glob(osp.join(folder, '*.pth'))}
        )
        last = osp.join(runner.work_dir, 'last_checkpoint')
        if osp.isfile(last):
            found.append(last)
        if not found:
            return
        shown = ', '.join(osp.basename(p) for p in found[:6]) + (', ...' if len(found) > 6 else '')
        runner.logger.warning(
            f'The work dir {runner.work_dir} already holds checkpoints of an earlier run '
            f'({shown}). This new run starts from iteration 0 and will overwrite files of the '
            f'same name and last_checkpoint; to keep them, stop it and resume that run with '
            f'--resume, or give another --work-dir.'
        )


def _checkpoint_hooks(runner) -> List[CheckpointHook]:
    return [hook for hook in runner.hooks if isinstance(hook, CheckpointHook)]


def _device(model: torch.nn.Module) -> torch.device:
    """Where a flag for the process group lives: the model's (CUDA under NCCL)."""
    tensor = next(iter(model.parameters()), None)
    return tensor.device if tensor is not None else torch.device('cpu')


def _message(runner, found: Optional[NonFiniteTensors], iteration: int, what: str) -> str:
    if found is None:
        cause = 'a weight or buffer on another rank is not finite'
    else:
        others = f' (and {found.count - 1} more tensors)' if found.count > 1 else ''
        cause = f'{found.first} holds {found.value}{others}'
    last = osp.join(runner.work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            kept = f'the last checkpoint, {f.read().strip()}, and last_checkpoint are kept'
    else:
        kept = 'no checkpoint was written'
    return (
        f'The model has non-finite weights at iteration {iteration}: {cause}. Stopped without '
        f'saving {what}; {kept}. Lower the learning rate or weight decay, or add gradient '
        f'clipping.'
    )
