"""ParseNet-style L2 normalisation with a learned per-channel scale (paper Sec. 3, conv4_3)."""

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ['L2Norm']


class L2Norm(nn.Module):
    """``y[n, c, i, j] = weight[c] * x[n, c, i, j] / (||x[n, :, i, j]||_2 + eps)``.

    SSD normalises conv4_3 because its feature scale differs from the deeper layers' (Liu et al.
    2016, Sec. 3 "Base network", after Liu, Rabinovich & Berg 2015 "ParseNet"); each location's
    channel vector gets unit L2 norm, then a learnable per-channel scale, initialised to 20, is
    applied. As in mmdet's L2Norm the eps is added to the norm (not under the square root).

    The computation runs in float32 and is cast back to the input dtype: a float16 sum of squares
    over 512 channels overflows (512 values of magnitude 12 sum to 73728 > 65504).

    Args:
        num_channels: Channels of the normalised feature map.
        scale: Initial value of every per-channel scale.
        eps: Added to the norm so all-zero locations give 0, not NaN.
    """

    def __init__(self, num_channels: int, scale: float = 20.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.scale = float(scale)
        self.eps = eps
        self.weight = nn.Parameter(torch.full((num_channels,), self.scale))

    def forward(self, x: Tensor) -> Tensor:
        x_float = x.float()
        norm = x_float.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return (self.weight.float()[None, :, None, None] * x_float / norm).to(x.dtype)

    def extra_repr(self) -> str:
        return f'{self.weight.numel()}, scale={self.scale}, eps={self.eps}'
