from .checkpoint import load_local_checkpoint
from .hooks import *  # noqa: F401,F403

__all__ = ['load_local_checkpoint']
