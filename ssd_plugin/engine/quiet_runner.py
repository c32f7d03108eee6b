"""RUNNERS ``QuietRunner``: mmengine's ``Runner`` without misleading or unactionable log lines.

mmengine 0.10.7's ``Runner`` logs on every run:

- ``GPU number: N`` in its environment summary, ``N`` being the number of processes, on a run
  without CUDA too;
- ``"FileClient" will be deprecated in future ...`` and ``"HardDiskBackend" is the alias of
  "LocalBackend" ...``: its own ``CheckpointHook`` builds a ``FileClient`` for backward
  compatibility, whatever the config says;
- the whole config (300-odd lines) and the table of its hooks (about 50 lines).

``QuietRunner`` attaches :class:`QuietLogFilter` to its own logger (not to any other logger of the
process): the deprecation notices are dropped, a run without CUDA reports ``processes: N``, and
the hooks table becomes a DEBUG record (shown with ``log_level='DEBUG'``). The config stays in
the log file of the work dir (and mmengine's copy, ``work_dir/<config name>``); the console
gets one line naming both (:class:`ConsoleConfigFilter` on the console handler only).
It also states every training run's global batch and learning rate in one line, in place of
mmengine's line that appears only when the lr is scaled (:mod:`ssd_plugin.engine.global_batch`),
and records them in each checkpoint's ``meta['global_batch']``; resuming a checkpoint of another
global batch warns that the optimiser's learning rate is the checkpoint's.
``tools/train.py`` and ``tools/test.py`` build it (unless the config names a ``runner_type``).
"""

import logging
import os.path as osp
import re
from typing import Dict, Optional

from mmdet.registry import RUNNERS
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner
from torch import cuda
from torch.utils.data import DataLoader

from .global_batch import GlobalBatch, describe, lr_warning, resume_warning

__all__ = ['QuietRunner', 'QuietLogFilter', 'ConsoleConfigFilter']

#: how mmengine's Runner starts the records of its config dump and its hooks table
CONFIG_DUMP = 'Config:\n'
HOOKS_TABLE = 'Hooks will be executed in the following order'


class QuietLogFilter(logging.Filter):
    """Drops mmengine's notices about its own internals; says processes, not GPUs, on CPUs."""

    #: Starts of the messages dropped: mmengine's deprecations of what mmengine itself uses.
    DROPPED = (
        '"FileClient" will be deprecated in future',
        '"HardDiskBackend" is the alias of "LocalBackend"',
        'LR is set based on batch size of',  # QuietRunner.scale_lr's line says more
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            return True
        if record.msg.startswith(self.DROPPED):
            return False
        if 'GPU number: ' in record.msg and not cuda.is_available():
            record.msg = re.sub(r'\bGPU number: (\d+)', r'processes: \1', record.msg)
        if record.msg.startswith(HOOKS_TABLE) and record.levelno == logging.INFO:
            # handlers compare the record's level with theirs after the logger's filters
            record.levelno, record.levelname = logging.DEBUG, 'DEBUG'
        return True


class ConsoleConfigFilter(logging.Filter):
    """Keeps mmengine's config dump off the console handler it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(CONFIG_DUMP))


@RUNNERS.register_module()
class QuietRunner(Runner):
    """mmengine's ``Runner`` with a :class:`QuietLogFilter` that states its global batch."""

    global_batch: Optional[GlobalBatch] = None
    #: ``meta['global_batch']`` of the checkpoint loaded last (None: none, or written without it)
    _loaded_global_batch: Optional[Dict] = None

    def build_logger(self, *args, **kwargs) -> MMLogger:
        logger = super().build_logger(*args, **kwargs)
        if not any(isinstance(f, QuietLogFilter) for f in logger.filters):
            logger.addFilter(QuietLogFilter())
        for handler in logger.handlers:
            console = not isinstance(handler, logging.FileHandler)
            if console and not any(isinstance(f, ConsoleConfigFilter) for f in handler.filters):
                handler.addFilter(ConsoleConfigFilter())
        return logger

    def dump_config(self) -> None:
        """mmengine's copy of the config in the work dir, then one line saying where it is."""
        super().dump_config()
        # the file name mmengine's dump_config gives it
        name = osp.basename(self.cfg.filename) if self.cfg.filename else f'{self.timestamp}.py'
        self.logger.info(
            f'Config: {osp.join(self.work_dir, name)} (also at the head of the log file '
            f'{self.logger.log_file})'
        )

    def scale_lr(self, optim_wrapper: OptimWrapper, auto_scale_lr: Optional[Dict] = None) -> None:
        """mmengine's scaling, then the global batch and the resulting lr in one log line."""
        super().scale_lr(optim_wrapper, auto_scale_lr)
        loader = self._train_dataloader
        per_process = loader.batch_size if isinstance(loader, DataLoader) else loader['batch_size']
        auto_scale_lr = auto_scale_lr or {}
        self.global_batch = GlobalBatch(
            processes=self.world_size,
            per_process=per_process,
            base=auto_scale_lr.get('base_batch_size'),
            scaled=bool(auto_scale_lr.get('enable', False)),
        )
        wrappers = getattr(optim_wrapper, 'values', lambda: [optim_wrapper])()
        lrs = [g['lr'] for w in wrappers for g in w.optimizer.param_groups]
        self.logger.info(describe(self.global_batch, lrs, self.seed))
        warning = lr_warning(self.global_batch)
        if warning is not None:
            self.logger.warning(warning)

    def load_checkpoint(self, filename: str, *args, **kwargs) -> Dict:
        """mmengine's loading; keeps the checkpoint's ``meta['global_batch']`` (:meth:`resume`)."""
        checkpoint = super().load_checkpoint(filename, *args, **kwargs)
        self._loaded_global_batch = (checkpoint.get('meta') or {}).get('global_batch')
        return checkpoint

    def resume(self, filename: str, *args, **kwargs) -> None:
        """mmengine's resume, then a warning if the checkpoint's global batch is not this run's."""
        self._loaded_global_batch = None
        super().resume(filename, *args, **kwargs)
        if self.global_batch is not None:
            warning = resume_warning(self._loaded_global_batch, self.global_batch, filename)
            if warning is not None:
                self.logger.warning(warning)

    def save_checkpoint(self, *args, meta: Optional[Dict] = None, **kwargs) -> None:
        """mmengine's checkpoint, its meta with the run's global batch (``global_batch``)."""
        if self.global_batch is not None:
            meta = dict(meta or {})
            meta.setdefault('global_batch', self.global_batch.meta(self.seed, self.deterministic))
        super().save_checkpoint(*args, meta=meta, **kwargs)
