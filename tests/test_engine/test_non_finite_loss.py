"""NonFiniteLossHook: a NaN loss stops training before the step, or is skipped and counted."""

import copy
import glob

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from ssd_plugin.engine.checkpoint import weights_only_checkpoint_loading
from ssd_plugin.engine.hooks import NonFiniteLossHook


class _Points(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, idx):
        g = torch.Generator().manual_seed(idx)
        return dict(x=torch.randn(4, generator=g))


class _NaNAt(BaseModel):
    """Linear regression whose loss is NaN at the listed 1-based iterations."""

    def __init__(self, nan_iters=(), value=float('nan')):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.nan_iters = set(nan_iters)
        self.value = value
        self.calls = 0

    def forward(self, x, mode='loss'):
        self.calls += 1
        loss = (self.linear(x) - 1).pow(2).mean()
        if self.calls in self.nan_iters:
            loss = loss * self.value
        return dict(loss=loss)


class _Snapshots(Hook):
    """Records the weights after every iteration."""

    priority = 'LOWEST'

    def __init__(self):
        self.params = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.params.append(copy.deepcopy(runner.model.state_dict()))


def _runner(tmp_path, nan_iters, hook_cfg, max_iters=6, optim_type='OptimWrapper',
            value=float('nan'), **runner_args):  # fmt: skip
    snapshots = _Snapshots()
    runner = Runner(
        model=_NaNAt(nan_iters, value),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=_Points(),
            sampler=dict(type='InfiniteSampler', shuffle=False),
            batch_size=4,
            collate_fn=dict(type='default_collate'),
        ),
        optim_wrapper=dict(type=optim_type, optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        custom_hooks=[hook_cfg, snapshots],
        default_hooks=dict(checkpoint=None, logger=dict(type='LoggerHook', interval=1)),
        default_scope='mmdet',
        experiment_name=f'nonfinite_{tmp_path.name}',
        **runner_args,
    )
    return runner, snapshots


def _log_text(tmp_path):
    (log_file,) = glob.glob(str(tmp_path / '*' / '*.log'))
    return open(log_file).read()


def test_nan_loss_stops_before_the_step_naming_the_iteration(tmp_path):
    runner, snaps = _runner(tmp_path, nan_iters=[4], hook_cfg=dict(type='NonFiniteLossHook'))
    with pytest.raises(FloatingPointError, match='nan at iteration 4;'):
        runner.train()
    assert len(snaps.params) == 3  # iterations 1-3 finished, 4 raised before its update
    # the weights are still those after iteration 3: finite and not stepped by the NaN
    assert all(torch.isfinite(p).all() for p in runner.model.state_dict().values())
    for key, value in runner.model.state_dict().items():
        torch.testing.assert_close(value, snaps.params[-1][key], rtol=0, atol=0)


def test_skip_leaves_the_weights_unchanged_and_counts(tmp_path):
    hook = dict(type='NonFiniteLossHook', skip=True, max_skips=2)
    runner, snaps = _runner(tmp_path, nan_iters=[3, 5], hook_cfg=hook)
    runner.train()
    assert len(snaps.params) == 6
    for skipped in (3, 5):  # snapshot k - 1 is taken after iteration k
        before, after = snaps.params[skipped - 2], snaps.params[skipped - 1]
        for key in before:
            torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
    # the other iterations did update, and no NaN reached the weights or SGD's momentum
    assert not torch.equal(snaps.params[3]['linear.weight'], snaps.params[2]['linear.weight'])
    assert all(torch.isfinite(p).all() for p in runner.model.state_dict().values())
    state = runner.optim_wrapper.optimizer.state.values()
    assert all(torch.isfinite(s['momentum_buffer']).all() for s in state)
    assert runner.message_hub.get_info('non_finite_loss_skips') == 2
    log = _log_text(tmp_path)
    assert 'Skipped the update of iteration 3: the training loss is nan (1 of at most 2' in log
    assert 'Skipped the update of iteration 5: the training loss is nan (2 of at most 2' in log


def test_skips_beyond_the_bound_raise(tmp_path):
    hook = dict(type='NonFiniteLossHook', skip=True, max_skips=1)
    runner, _ = _runner(tmp_path, nan_iters=[2, 4], hook_cfg=hook)
    with pytest.raises(FloatingPointError, match='iteration 4, and 1 updates were skipped'):
        runner.train()


@pytest.mark.parametrize('optim_type', [
    'LossScaleOptimWrapper',  # a real dynamic GradScaler, here on the CPU
    pytest.param('AmpOptimWrapper', marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason='AmpOptimWrapper needs a GPU')),
])  # fmt: skip
def test_a_loss_scaler_skips_an_overflowed_step_and_the_run_goes_on(tmp_path, optim_type):
    """float16 training: an inf loss is the scaler's to skip, not a reason to stop."""
    hook = dict(type='NonFiniteLossHook')  # skip=False: would raise without a scaler
    torch.manual_seed(0)  # the model's initial weights, again for the unscaled run below
    runner, snaps = _runner(tmp_path, [2], hook, max_iters=4, optim_type=optim_type,
                            value=float('inf'))  # fmt: skip
    runner.train()
    assert len(snaps.params) == 4
    for key in snaps.params[0]:  # iteration 2 left the weights as iteration 1 did
        torch.testing.assert_close(snaps.params[1][key], snaps.params[0][key], rtol=0, atol=0)
    assert not torch.equal(snaps.params[2]['linear.weight'], snaps.params[1]['linear.weight'])
    assert runner.optim_wrapper.loss_scaler.get_scale() == 2.0**15  # halved once
    assert runner.message_hub.get_info('loss_scaler_consecutive_skips') == 0  # reset since
    assert runner.message_hub.get_info('non_finite_loss_skips') is None
    assert all(torch.isfinite(p).all() for p in runner.model.state_dict().values())
    if optim_type != 'LossScaleOptimWrapper':
        return

    # the scaled steps are float32's: the same iterations with OptimWrapper, the overflowed one
    # skipped by the hook instead. Scales are powers of two and these values far from float32's
    # limits, so scaling and unscaling round nothing: equal bits
    torch.manual_seed(0)
    plain, plain_snaps = _runner(tmp_path / 'plain', [2], dict(type='NonFiniteLossHook', skip=True),
                                 max_iters=4, value=float('inf'))  # fmt: skip
    plain.train()
    for scaled, unscaled in zip(snaps.params, plain_snaps.params):
        for key, value in unscaled.items():
            torch.testing.assert_close(scaled[key], value, rtol=0, atol=0)

    # the scale survives a resume: a fresh scaler would start again from 2 ** 16
    # after train(), runner.iter counts the finished iterations (the default meta adds one)
    runner.save_checkpoint(str(tmp_path), 'scaled.pth', by_epoch=False, meta=dict(iter=4))
    resumed, resumed_snaps = _runner(
        tmp_path / 'resumed', [], dict(type='NonFiniteLossHook'), max_iters=5,
        optim_type=optim_type, resume=True, load_from=str(tmp_path / 'scaled.pth'))  # fmt: skip
    with weights_only_checkpoint_loading():
        resumed.train()  # iteration 5: finite, below the growth interval: the scale stays
    assert len(resumed_snaps.params) == 1 and resumed.iter == 5
    assert resumed.optim_wrapper.loss_scaler.get_scale() == 2.0**15


def test_a_nan_loss_without_a_scaler_still_stops(tmp_path):
    """The same loss in float32 (plain OptimWrapper) is not an overflow: it stops the run."""
    hook = dict(type='NonFiniteLossHook')
    runner, _ = _runner(tmp_path, [2], hook, max_iters=4, value=float('inf'))
    with pytest.raises(FloatingPointError, match='inf at iteration 2;'):
        runner.train()


def test_repeated_scaler_skips_stop_the_run(tmp_path):
    hook = dict(type='NonFiniteLossHook', max_scaler_skips=2)
    runner, snaps = _runner(tmp_path, [2, 3, 4], hook, optim_type='LossScaleOptimWrapper',
                            value=float('nan'))  # fmt: skip
    with pytest.raises(FloatingPointError, match='skipped 3 steps in a row up to iteration 4'):
        runner.train()
    assert len(snaps.params) == 3
    assert all(torch.isfinite(p).all() for p in runner.model.state_dict().values())


def test_max_skips_is_checked():
    with pytest.raises(ValueError, match='max_skips'):
        NonFiniteLossHook(max_skips=-1)
    with pytest.raises(ValueError, match='max_scaler_skips must be >= 0'):
        NonFiniteLossHook(max_scaler_skips=-1)


def test_the_wrapper_is_removed_after_training(tmp_path):
    runner, _ = _runner(tmp_path, nan_iters=[], hook_cfg=dict(type='NonFiniteLossHook'),
                        max_iters=2)  # fmt: skip
    runner.train()
    assert 'update_params' not in vars(runner.optim_wrapper)
