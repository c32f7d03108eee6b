"""TrainProgressHook: a progress line whenever the training log was silent for interval_s.

A tiny real runner; the hook's clock is a counter that the model advances by a fixed number of
seconds per training step, so the lines and their figures are exact and nothing is timed.
"""

import os.path as osp
import re

import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner

from ssd_plugin.engine.hooks import TrainProgressHook

_POINTS = [dict(x=x) for x in torch.randn(64, 4, generator=torch.Generator().manual_seed(0))]


class _FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Steps(BaseModel):
    """Each training step (and each validation batch) takes ``seconds`` on the fake clock."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.clock, self.seconds = clock, seconds

    def forward(self, x, mode='loss'):
        self.clock.now += self.seconds
        if mode == 'loss':
            return dict(loss=(self.linear(x) - 1).abs().mean())
        return [dict(score=1.0) for _ in range(len(x))]


class _Metric(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results.extend(data_samples)

    def compute_metrics(self, results):
        return dict(score=1.0)


def _run(tmp_path, seconds, logger_interval, max_iters=20, by_epoch=False, interval_s=30.0):
    clock = _FakeClock()
    hook = TrainProgressHook(interval_s=interval_s)
    hook._clock = clock
    loader = dict(
        dataset=_POINTS[:10] if by_epoch else _POINTS * 4,  # one 'epoch' > max_iters
        sampler=dict(type='DefaultSampler' if by_epoch else 'InfiniteSampler', shuffle=False),
        batch_size=1,
        collate_fn=dict(type='default_collate'),
    )
    train_cfg = dict(by_epoch=False, max_iters=max_iters)
    extra = {}
    if by_epoch:
        train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=1)
        extra = dict(val_dataloader=dict(loader, dataset=_POINTS[:3]), val_cfg=dict(),
                     val_evaluator=[_Metric()])  # fmt: skip
    runner = Runner(
        model=_Steps(clock, seconds),
        work_dir=str(tmp_path),
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=train_cfg,
        custom_hooks=[hook],
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=logger_interval), checkpoint=None
        ),
        default_scope='mmdet',
        experiment_name=f'progress_{osp.basename(str(tmp_path))}',
        **extra,
    )
    runner.train()
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    return runner, re.findall(r'Training: .*', log)


def test_lines_after_each_silence_with_rate_and_eta(tmp_path):
    # 7 s a step, no LoggerHook line in 20 steps: silent 35 s after steps 5, 10, 15, 20
    runner, lines = _run(tmp_path, seconds=7, logger_interval=50)
    assert len(lines) == 4
    assert lines[0].startswith('Training: iteration 5/20 (25%), 7.0 s/iter, ETA 0:01:45, loss ')
    assert lines[1].startswith('Training: iteration 10/20 (50%), 7.0 s/iter, ETA 0:01:10, ')
    assert lines[3].startswith('Training: iteration 20/20 (100%), 7.0 s/iter, ETA 0:00:00, ')
    # the loss is the one LoggerHook records for that iteration
    loss = float(lines[3].rsplit('loss ', 1)[1])
    assert loss == pytest.approx(runner.message_hub.get_scalar('train/loss').current(), rel=1e-3)
    assert not any(type(f).__name__ == '_LastRecordTime' for f in runner.logger.filters)


def test_silent_while_logger_hook_logs_often_enough(tmp_path):
    # LoggerHook logs every 4 steps (28 s): never 30 s of silence
    _, lines = _run(tmp_path, seconds=7, logger_interval=4)
    assert lines == []


def test_fast_steps_give_a_rate_and_epochs_exclude_validation(tmp_path):
    # 10 steps an epoch, 2 epochs; 4 s a step and 4 s per validation batch (3 batches)
    _, lines = _run(tmp_path, seconds=4, logger_interval=50, by_epoch=True, interval_s=30)
    # steps 1-8 reach 32 s; validation (12 s) logs its results, so the wait restarts there
    assert lines[0].startswith('Training: iteration 8/20 (epoch 1/2, 40%), 4.0 s/iter, ETA 0:00:48')
    # epoch 2 resumes at 52 s: 30 s later is step 18, and 12 s of validation are not training
    expected = 'Training: iteration 18/20 (epoch 2/2, 90%), 4.0 s/iter, ETA 0:00:08'
    assert lines[1].startswith(expected) and len(lines) == 2


def test_rate_above_one_per_second(tmp_path):
    _, lines = _run(tmp_path, seconds=0.25, logger_interval=500, max_iters=130, interval_s=30)
    assert lines[0].startswith('Training: iteration 120/130 (92%), 4.00 iter/s, ETA 0:00:02')


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match='interval_s must be > 0'):
        TrainProgressHook(interval_s=0)
