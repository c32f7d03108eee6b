from .all_reduce_loss_hook import AllReduceLossHook
from .checkpoint_guard_hook import CheckpointGuardHook
from .cpu_threads_hook import CpuThreadsHook
from .eval_progress_hook import EvalProgressHook
from .non_finite_loss_hook import NonFiniteLossHook

__all__ = [
    'AllReduceLossHook',
    'CheckpointGuardHook',
    'CpuThreadsHook',
    'EvalProgressHook',
    'NonFiniteLossHook',
]
