"""HOOKS ``CpuThreadsHook``: keep torch's CPU threads to the cores other processes leave free."""

import os
import time
from typing import Optional

import torch
from mmdet.registry import HOOKS
from mmengine.device import get_device
from mmengine.hooks import Hook

from ..cpu_threads import CpuThreadPolicy

__all__ = ['CpuThreadsHook']


@HOOKS.register_module()
class CpuThreadsHook(Hook):
    """Re-check the free cores every ``interval_s`` and set torch's intra-op threads to them.

    See :mod:`ssd_plugin.engine.cpu_threads` for the policy. Active only on runs without an
    accelerator and without an explicit ``OMP_NUM_THREADS`` (which is respected as it is), and
    not in a deterministic run (``randomness.deterministic``, ``--deterministic``): a float sum
    split over another number of threads can round differently, so such a run keeps its count.
    The thread count in place before the run is restored after it. ``tools/train.py`` and
    ``tools/test.py`` add this hook.

    Args:
        interval_s (float): Seconds between checks, and so the span each one measures.
            Defaults to 5.
    """

    priority = 'VERY_LOW'

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self._clock = time.monotonic  # tests replace it
        self._policy: Optional[CpuThreadPolicy] = None
        self._threads_before = 0
        self._last_check = 0.0

    def before_run(self, runner) -> None:
        if os.environ.get('OMP_NUM_THREADS') or get_device() != 'cpu':
            return
        if runner.deterministic:
            runner.logger.info(f'CPU threads: {torch.get_num_threads()} throughout '
                               '(a deterministic run)')  # fmt: skip
            return
        self._threads_before = torch.get_num_threads()
        self._policy = CpuThreadPolicy()
        self._check(runner)

    def after_run(self, runner) -> None:
        if self._policy is not None:
            torch.set_num_threads(self._threads_before)
            self._policy = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._maybe_check(runner)

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._maybe_check(runner)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._maybe_check(runner)

    def _maybe_check(self, runner) -> None:
        if self._policy is not None and self._clock() - self._last_check >= self.interval_s:
            self._check(runner)

    def _check(self, runner) -> None:
        threads = self._policy.update()
        self._last_check = self._clock()
        if threads is not None:
            runner.logger.info(
                f'CPU threads: {threads} (other processes keep '
                f'{self._policy.others_busy:.1f} of {self._policy.cores} cores busy)'
            )
