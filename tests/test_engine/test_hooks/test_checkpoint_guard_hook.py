"""CheckpointGuardHook: weights that overflow stop the run before any checkpoint file changes."""

import glob
import inspect
import os.path as osp

import mmengine
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import CheckpointHook
from mmengine.model import BaseModel
from mmengine.runner import Runner

from ssd_plugin.engine.checkpoint import load_local_checkpoint, weights_only_checkpoint_loading
from ssd_plugin.engine.hooks.checkpoint_guard_hook import private_save_api_problem

# a list is a map-style dataset for the DataLoader
_POINTS = [dict(x=x) for x in torch.randn(64, 4, generator=torch.Generator().manual_seed(0))]


class _L1(BaseModel):
    """An L1 loss grows only linearly with the weights: finite until the weights are Inf."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.bn = nn.BatchNorm1d(1)  # not in forward: buffers (running_var) to check

    def forward(self, x, mode='loss'):
        return dict(loss=(self.linear(x) - 1).abs().mean())


def _runner(work_dir, weight_decay, max_iters=8, max_keep_ckpts=1, resume=False,
            checkpoint_type=CheckpointHook):  # fmt: skip
    """AdamW multiplies the weights by (1 - lr * weight_decay) every step."""
    torch.manual_seed(0)
    return Runner(
        model=_L1(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_POINTS,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            batch_size=4,
            collate_fn=dict(type='default_collate'),
        ),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01, weight_decay=weight_decay)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        custom_hooks=[dict(type='NonFiniteLossHook'), dict(type='CheckpointGuardHook')],
        default_hooks=dict(
            checkpoint=checkpoint_type(interval=2, by_epoch=False, max_keep_ckpts=max_keep_ckpts),
            logger=dict(type='LoggerHook', interval=1),
        ),
        resume=resume,
        default_scope='mmdet',
        experiment_name=f'guard_{osp.basename(str(work_dir))}_{weight_decay}_{resume}',
    )


def _files(work_dir):
    """The checkpoints and ``last_checkpoint`` of ``work_dir``, by name: their bytes."""
    paths = glob.glob(osp.join(work_dir, '*.pth')) + glob.glob(osp.join(work_dir, 'last_*'))
    return {osp.basename(p): open(p, 'rb').read() for p in paths}


def _log_text(runner):
    return open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()


def _all_finite(path):
    state_dict = load_local_checkpoint(path)['state_dict']
    return all(torch.isfinite(v).all() for v in state_dict.values() if v.is_floating_point())


def test_overflowing_weights_stop_before_the_save_deletes_anything(tmp_path):
    # x1e7 per step from ~0.5: finite through iteration 5 (~1e35), Inf after the 6th step,
    # while the L1 loss of iteration 6 (from the weights of step 5) is still finite
    runner = _runner(tmp_path, weight_decay=1e9)
    with pytest.raises(FloatingPointError) as info:
        runner.train()
    message = str(info.value)
    assert 'iteration 6' in message and 'linear.weight holds inf' in message
    assert 'checkpoint iter_6.pth' in message and 'iter_4.pth' in message
    assert runner.iter == 5  # stopped in the 6th iteration's after_train_iter
    files = _files(tmp_path)
    # max_keep_ckpts=1: CheckpointHook deletes iter_4.pth before it writes iter_6.pth
    assert 'iter_6.pth' not in files and 'iter_4.pth' in files
    assert files['last_checkpoint'].decode() == osp.join(str(tmp_path), 'iter_4.pth')
    assert _all_finite(str(tmp_path / 'iter_4.pth'))
    assert not any(torch.isfinite(p).all() for p in runner.model.linear.parameters())


def test_new_diverging_run_keeps_the_earlier_runs_checkpoints(tmp_path):
    good = _runner(tmp_path, weight_decay=0.01, max_iters=4, max_keep_ckpts=2)
    good.train()
    before = _files(tmp_path)
    assert {'iter_2.pth', 'iter_4.pth', 'last_checkpoint'} <= set(before)

    # x1e20 per step: Inf after the 2nd step, the first checkpoint of the new run
    diverging = _runner(tmp_path, weight_decay=1e22, max_iters=4, max_keep_ckpts=2)
    with pytest.raises(FloatingPointError, match='iteration 2: linear.weight holds inf'):
        diverging.train()
    assert _files(tmp_path) == before
    log = _log_text(diverging)
    assert (
        'already holds checkpoints of an earlier run (iter_2.pth, iter_4.pth, last_checkpoint)'
        in log
    )
    assert '--resume' in log and '--work-dir' in log


def test_resumed_run_does_not_warn_and_unwraps_after_training(tmp_path):
    _runner(tmp_path, weight_decay=0.01, max_iters=2).train()
    resumed = _runner(tmp_path, weight_decay=0.01, max_iters=4, resume=True)
    with weights_only_checkpoint_loading():
        resumed.train()
    assert 'already holds checkpoints' not in _log_text(resumed)
    (hook,) = [h for h in resumed.hooks if isinstance(h, CheckpointHook)]
    assert '_save_checkpoint_with_step' not in vars(hook)  # the class's method again
    assert _all_finite(str(tmp_path / 'iter_4.pth'))


def test_any_other_save_is_refused_too(tmp_path):
    """``Runner.save_checkpoint`` called directly: refused in ``before_save_checkpoint``."""
    runner = _runner(tmp_path, weight_decay=0.01, max_iters=1)
    runner.train()
    with torch.no_grad():
        runner.model.bn.running_var.fill_(float('nan'))
    with pytest.raises(FloatingPointError, match='iteration 1: bn.running_var holds nan'):
        runner.save_checkpoint(str(tmp_path), 'manual.pth')
    assert not (tmp_path / 'manual.pth').exists()


def test_mmengine_private_save_methods_are_as_the_guard_expects():
    """Pinned: the private CheckpointHook methods the guard wraps, and what it reads of them.

    If this fails after an mmengine upgrade, the guard logs a warning at run time and guards
    only in before_save_checkpoint: update ``_SAVE_METHODS`` and ``_guard`` to the new API.
    """
    assert private_save_api_problem(CheckpointHook) is None
    step = inspect.signature(CheckpointHook._save_checkpoint_with_step).parameters
    assert list(step) == ['self', 'runner', 'step', 'meta']
    best = inspect.signature(CheckpointHook._save_best_checkpoint).parameters
    assert list(best) == ['self', 'runner', 'metrics']
    # the order the guard exists for: the oldest file goes before Runner.save_checkpoint runs
    source = inspect.getsource(CheckpointHook._save_checkpoint_with_step)
    assert source.index('file_backend.remove') < source.index('runner.save_checkpoint(')
    assert private_save_api_problem(type('Bare', (), {})) == (
        'Bare._save_checkpoint_with_step is missing; Bare._save_best_checkpoint is missing'
    )


class _RenamedArguments(CheckpointHook):
    """What a future mmengine might do: the same method with another parameter name."""

    def _save_checkpoint_with_step(self, runner, iteration, meta):
        return super()._save_checkpoint_with_step(runner, iteration, meta)


def test_a_changed_private_api_is_reported_and_the_later_check_still_stops(tmp_path):
    runner = _runner(tmp_path, weight_decay=1e9, checkpoint_type=_RenamedArguments)
    with pytest.raises(FloatingPointError, match='iteration 6: linear.weight holds inf'):
        runner.train()
    log = _log_text(runner)
    assert (
        'CheckpointGuardHook cannot guard _RenamedArguments of this mmengine '
        f'({mmengine.__version__}): _RenamedArguments._save_checkpoint_with_step takes '
        '(runner, iteration, meta), not (runner, step, meta).'
    ) in log
    assert 'only after it may have deleted an older checkpoint' in log
    # what the warning says is lost: iter_4.pth was deleted before the save was refused
    assert not (tmp_path / 'iter_4.pth').exists() and not (tmp_path / 'iter_6.pth').exists()
