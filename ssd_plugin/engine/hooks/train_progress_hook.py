"""HOOKS ``TrainProgressHook``: a progress line while training whenever the log falls silent.

``LoggerHook`` logs every ``interval`` iterations: 50 iterations are seconds on a GPU but minutes
on a CPU (5.6 s per iteration of SSD300 on a laptop is almost 5 minutes of silence). This hook
logs on time instead: when nothing was logged for ``interval_s`` seconds, it writes the
iterations done, the rate and the ETA. Every record of the runner's logger (``LoggerHook``'s
lines, checkpoints, validation) restarts the wait, so on a fast machine it stays quiet.
"""

import datetime
import logging
import time
from typing import Callable, Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop

__all__ = ['TrainProgressHook']


class _LastRecordTime(logging.Filter):
    """Notes when the logger it is attached to last let a record through; drops nothing."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self.clock = clock
        self.last = clock()

    def filter(self, record: logging.LogRecord) -> bool:
        self.last = self.clock()
        return True


@HOOKS.register_module()
class TrainProgressHook(Hook):
    """Log ``Training: iteration 96/2400 (epoch 1/12, 4%), 5.6 s/iter, ETA 3:35:02, loss 4.12``.

    Logged after a training iteration when the runner's logger wrote nothing for
    ``interval_s`` seconds. The rate counts the iterations of this run (not those before a
    resume) over the time spent training (validation excluded); the ETA is the remaining
    iterations at that rate; the loss is the last iteration's (as ``LoggerHook`` records it).

    Args:
        interval_s (float): The longest silence, in seconds. Defaults to 30.
    """

    priority = 'LOW'  # after IterTimerHook and LoggerHook, which may have just logged

    def __init__(self, interval_s: float = 30.0) -> None:
        if interval_s <= 0:
            raise ValueError(f'interval_s must be > 0, got {interval_s}')
        self.interval_s = interval_s
        self._clock = time.monotonic  # tests replace it
        self._watch: Optional[_LastRecordTime] = None
        self._start = self._val_start = 0.0
        self._val_time = 0.0
        self._first_iter = 0

    def before_train(self, runner) -> None:
        self._start, self._val_time, self._first_iter = self._clock(), 0.0, runner.iter
        self._watch = _LastRecordTime(self._clock)
        runner.logger.addFilter(self._watch)

    def after_train(self, runner) -> None:
        if self._watch is not None:
            runner.logger.removeFilter(self._watch)
            self._watch = None

    def before_val_epoch(self, runner) -> None:
        self._val_start = self._clock()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._val_time += self._clock() - self._val_start

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._watch is None:
            return
        now = self._clock()
        if now - self._watch.last < self.interval_s:
            return
        done = runner.iter + 1  # the loop counts this iteration after the hooks
        total = runner.max_iters
        seconds = max(now - self._start - self._val_time, 1e-9)
        rate = (done - self._first_iter) / seconds
        speed = f'{rate:.2f} iter/s' if rate >= 1 else f'{1 / max(rate, 1e-9):.1f} s/iter'
        eta = datetime.timedelta(seconds=round((total - done) / max(rate, 1e-9)))
        epoch = ''
        if isinstance(runner.train_loop, EpochBasedTrainLoop):  # IterBased says 1 epoch
            epoch = f'epoch {runner.epoch + 1}/{runner.max_epochs}, '
        loss = ''
        if 'train/loss' in runner.message_hub.log_scalars:
            loss = f', loss {runner.message_hub.get_scalar("train/loss").current():.4g}'
        runner.logger.info(
            f'Training: iteration {done}/{total} ({epoch}{100 * done / max(total, 1):.0f}%), '
            f'{speed}, ETA {eta}{loss}'
        )
