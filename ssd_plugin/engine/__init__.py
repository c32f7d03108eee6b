from .checkpoint import load_local_checkpoint, weights_only_checkpoint_loading
from .hooks import *  # noqa: F401,F403
from .hooks import __all__ as _hooks_all
from .loss_scale_optim_wrapper import LossScaleOptimWrapper
from .quiet_runner import QuietRunner

__all__ = [
    'load_local_checkpoint',
    'LossScaleOptimWrapper',
    'weights_only_checkpoint_loading',
    'QuietRunner',
    *_hooks_all,
]
