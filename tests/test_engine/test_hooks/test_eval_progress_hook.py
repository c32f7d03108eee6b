"""EvalProgressHook: a progress line at most every interval_s seconds (fake clock)."""

from types import SimpleNamespace
from unittest import mock

import pytest

from ssd_plugin.engine.hooks import EvalProgressHook


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _runner(num_images, batch_size):
    batches = range(0, num_images, batch_size)
    loader = SimpleNamespace(sampler=range(num_images), dataset=None)
    return SimpleNamespace(logger=mock.Mock(), val_dataloader=loader, test_dataloader=loader), [
        [object()] * min(batch_size, num_images - start) for start in batches
    ]


def _run(hook, runner, batches, seconds_per_batch, phase='val'):
    clock = _Clock()
    hook._clock = clock
    getattr(hook, f'before_{phase}_epoch')(runner)
    for i, outputs in enumerate(batches):
        clock.now += seconds_per_batch
        getattr(hook, f'after_{phase}_iter')(runner, i, data_batch=None, outputs=outputs)
    return [call.args[0] for call in runner.logger.info.call_args_list]


def test_lines_every_interval_with_count_rate_and_eta():
    runner, batches = _runner(num_images=100, batch_size=8)  # 13 batches, the last of 4
    lines = _run(EvalProgressHook(interval_s=10), runner, batches, seconds_per_batch=3.0)
    # 3 s per batch of 8: lines after batches 4 (12 s), 8 (24 s), 12 (36 s); none at the end
    assert lines == [
        'Validation: 32/100 images (32%), 2.7 images/s, ETA 0:00:26',
        'Validation: 64/100 images (64%), 2.7 images/s, ETA 0:00:14',
        'Validation: 96/100 images (96%), 2.7 images/s, ETA 0:00:02',
    ]


def test_a_short_loop_prints_nothing_and_a_new_loop_starts_over():
    hook = EvalProgressHook(interval_s=10)
    runner, batches = _runner(num_images=40, batch_size=8)
    assert _run(hook, runner, batches, seconds_per_batch=1.0) == []
    runner, batches = _runner(num_images=16, batch_size=4)
    lines = _run(hook, runner, batches, seconds_per_batch=11.0, phase='test')
    assert lines == [
        'Test: 4/16 images (25%), 0.4 images/s, ETA 0:00:33',
        'Test: 8/16 images (50%), 0.4 images/s, ETA 0:00:22',
        'Test: 12/16 images (75%), 0.4 images/s, ETA 0:00:11',
    ]


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match='interval_s'):
        EvalProgressHook(interval_s=0)
