"""RUNNERS ``QuietRunner``: mmengine's ``Runner`` without misleading or unactionable log lines.

mmengine 0.10.7's ``Runner`` logs on every run:

- ``GPU number: N`` in its environment summary, ``N`` being the number of processes, on a run
  without CUDA too;
- ``"FileClient" will be deprecated in future ...`` and ``"HardDiskBackend" is the alias of
  "LocalBackend" ...``: its own ``CheckpointHook`` builds a ``FileClient`` for backward
  compatibility, whatever the config says.

``QuietRunner`` attaches :class:`QuietLogFilter` to its own logger (not to any other logger of the
process): the deprecation notices are dropped, and a run without CUDA reports ``processes: N``.
``tools/train.py`` and ``tools/test.py`` build it (unless the config names a ``runner_type``).
"""

import logging
import re

from mmdet.registry import RUNNERS
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from torch import cuda

__all__ = ['QuietRunner', 'QuietLogFilter']


class QuietLogFilter(logging.Filter):
    """Drops mmengine's notices about its own internals; says processes, not GPUs, on CPUs."""

    #: Starts of the messages dropped: mmengine's deprecations of what mmengine itself uses.
    DROPPED = (
        '"FileClient" will be deprecated in future',
        '"HardDiskBackend" is the alias of "LocalBackend"',
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            return True
        if record.msg.startswith(self.DROPPED):
            return False
        if 'GPU number: ' in record.msg and not cuda.is_available():
            record.msg = re.sub(r'\bGPU number: (\d+)', r'processes: \1', record.msg)
        return True


@RUNNERS.register_module()
class QuietRunner(Runner):
    """mmengine's ``Runner`` whose logger has a :class:`QuietLogFilter`; otherwise the same."""

    def build_logger(self, *args, **kwargs) -> MMLogger:
        logger = super().build_logger(*args, **kwargs)
        if not any(isinstance(f, QuietLogFilter) for f in logger.filters):
            logger.addFilter(QuietLogFilter())
        return logger
