"""One decision for all ranks: whether a condition holds on any rank of a distributed run."""

from mmengine.dist import all_reduce, get_world_size
from torch import Tensor

__all__ = ['any_rank']


def any_rank(flag: Tensor) -> bool:
    """Whether the 0-d boolean ``flag`` is true on any rank (one all-reduce when distributed).

    Hooks that stop or skip on a condition one rank sees (a non-finite loss or weight) call this
    on every rank, so that all ranks take the same branch and none waits in a collective.

    Args:
        flag (Tensor): 0-d tensor, on the device the process group communicates on (CUDA under
            NCCL).
    """
    value = flag.detach().float().reshape(())
    if get_world_size() > 1:
        all_reduce(value, op='max')
    return bool(value)
