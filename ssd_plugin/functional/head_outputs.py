"""The layout of the head's per-level outputs, read by the loss and by inference alike.

A level's ``(B, A * K, H, W)`` output (``A`` default boxes per location, ``K`` channels) holds
default box ``(y * W + x) * A + a`` at ``[:, a * K : (a + 1) * K, y, x]``: viewed as
``(B, A, K, H * W)`` it is read where the convolution wrote it, without the flattened
``(B, P, K)`` copy.
"""

from typing import List, Sequence

from torch import Tensor

__all__ = ['level_views']


def level_views(outputs: Sequence[Tensor], num_base_priors: Sequence[int]) -> List[Tensor]:
    """``(B, A * K, H, W)`` level outputs as ``(B, A, K, H * W)`` views (no copy)."""
    return [
        out.reshape(out.shape[0], a, out.shape[1] // a, -1)
        for out, a in zip(outputs, num_base_priors)
    ]
