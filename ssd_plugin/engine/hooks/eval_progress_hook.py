"""HOOKS ``EvalProgressHook``: a progress line during validation and testing every few seconds.

``LoggerHook`` logs every ``interval`` batches, which is silence for a whole validation when the
loop has fewer batches than that (or minutes of it on a CPU when it has more). This hook logs on
time instead: at most every ``interval_s`` seconds, the images done, their rate and the ETA.
"""

import datetime
import time

from mmdet.registry import HOOKS
from mmengine.dist import get_world_size
from mmengine.hooks import Hook

__all__ = ['EvalProgressHook']


@HOOKS.register_module()
class EvalProgressHook(Hook):
    """Log ``Validation: 96/208 images (46%), 3.2 images/s, ETA 0:00:35`` every ``interval_s``.

    The first line comes ``interval_s`` seconds after the loop starts, so a short loop prints
    none. Counts are this process's share under distributed evaluation (the line says so).

    Args:
        interval_s (float): Seconds between lines. Defaults to 10.
    """

    priority = 'BELOW_NORMAL'

    def __init__(self, interval_s: float = 10.0) -> None:
        if interval_s <= 0:
            raise ValueError(f'interval_s must be > 0, got {interval_s}')
        self.interval_s = interval_s
        self._clock = time.monotonic  # tests replace it
        self._start = self._last_line = 0.0
        self._done = self._total = 0

    def before_val_epoch(self, runner) -> None:
        self._begin(runner.val_dataloader)

    def before_test_epoch(self, runner) -> None:
        self._begin(runner.test_dataloader)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._advance(runner, 'Validation', outputs)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._advance(runner, 'Test', outputs)

    def _begin(self, dataloader) -> None:
        self._start = self._last_line = self._clock()
        self._done = 0
        # the sampler yields this process's share (DefaultSampler: padded to equal shares)
        sampler = getattr(dataloader, 'sampler', None)
        self._total = len(sampler) if hasattr(sampler, '__len__') else len(dataloader.dataset)

    def _advance(self, runner, phase: str, outputs) -> None:
        self._done += len(outputs) if outputs is not None else 0
        now = self._clock()
        if now - self._last_line < self.interval_s or self._done >= self._total:
            return
        self._last_line = now
        elapsed = now - self._start
        rate = self._done / max(elapsed, 1e-9)
        eta = datetime.timedelta(
            seconds=round((self._total - self._done) * elapsed / max(self._done, 1))
        )
        share = f' (this process, of {get_world_size()})' if get_world_size() > 1 else ''
        runner.logger.info(
            f'{phase}: {self._done}/{self._total} images{share} '
            f'({100 * self._done / max(self._total, 1):.0f}%), {rate:.1f} images/s, ETA {eta}'
        )
