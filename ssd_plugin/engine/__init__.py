from .checkpoint import load_local_checkpoint
from .hooks import *  # noqa: F401,F403
from .hooks import __all__ as _hooks_all

__all__ = ['load_local_checkpoint', *_hooks_all]
