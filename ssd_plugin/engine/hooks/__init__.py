from .all_reduce_loss_hook import AllReduceLossHook
from .checkpoint_guard_hook import CheckpointGuardHook
from .cpu_threads_hook import CpuThreadsHook
from .eval_progress_hook import EvalProgressHook
from .mixed_precision_hook import MixedPrecisionHook
from .non_finite_loss_hook import NonFiniteLossHook
from .train_progress_hook import TrainProgressHook

__all__ = [
    'AllReduceLossHook',
    'CheckpointGuardHook',
    'CpuThreadsHook',
    'EvalProgressHook',
    'MixedPrecisionHook',
    'NonFiniteLossHook',
    'TrainProgressHook',
]
