"""The loss normaliser of the global batch: the paper's ``N`` counted over every process.

Under data-parallel training each process computes the loss of its share of the global batch
and DDP averages the gradients over the ``W`` processes. Dividing each share's sum ``S_r`` by its
own positive count ``N_r`` makes that average ``mean_r(grad S_r / N_r)``, which depends on how
the batch was split (one process with many positives and one with few weigh the same). Dividing
by ``N / W`` instead, ``N = sum_r N_r``, makes it ``grad (sum_r S_r) / N``: the gradient one
process computes on the whole global batch, for any split of it.
"""

from mmengine.dist import all_reduce, get_world_size
from torch import Tensor

from ssd_plugin.functional.multibox_loss import positive_normaliser

__all__ = ['global_batch_normaliser']


def global_batch_normaliser(num_pos: Tensor) -> Tensor:
    """``max(N, 1) / W`` with ``N`` the positives of all ``W`` processes' batches.

    One all-reduce (a sum of one integer, on the tensor's device: no host synchronisation on a
    GPU) when ``W > 1``; without a process group, or with one process, it is
    :func:`~ssd_plugin.functional.multibox_loss.positive_normaliser` itself (the same bits).
    Every process must call it once per step, as every process computes the loss once per step.

    Args:
        num_pos (Tensor): This process's positive count, 0-d (long).

    Returns:
        Tensor: 0-d float32 divisor of this process's loss sums.
    """
    world_size = get_world_size()
    if world_size == 1:
        return positive_normaliser(num_pos)
    total = num_pos.clone()
    all_reduce(total, op='sum')
    return positive_normaliser(total) / world_size
