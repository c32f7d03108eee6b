"""ParseNet-style L2 normalisation, learned scale (paper Sec. 3, conv4_3; Caffe's Normalize)."""

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

    Caffe SSD's ``Normalize`` layer has the same defaults for SSD (``across_spatial: false``,
    ``channel_shared: false``) and two variants, both here: ``across_spatial`` takes one norm over
    all of ``C x H x W`` of each image, ``channel_shared`` learns one scale for all channels.
    Caffe adds its eps under the square root, ``sqrt(sum x^2 + eps)``, in both cases
    (``eps_under_sqrt=True``).

    The computation runs in float32 and is cast back to the input dtype: a float16 sum of squares
    over 512 channels overflows (512 values of magnitude 12 sum to 73728 > 65504).

    Args:
        num_channels: Channels of the normalised feature map.
        scale: Initial value of the scale(s).
        eps: Added to the norm so all-zero locations give 0, not NaN.
        across_spatial: One norm per image over ``C x H x W`` (Caffe's ``across_spatial``)
            instead of one per location.
        channel_shared: One scale, ``weight`` of shape ``(1,)``, for every channel (Caffe's
            ``channel_shared``) instead of ``(num_channels,)``.
        eps_under_sqrt: ``sqrt(sum x^2 + eps)`` as Caffe, instead of ``sqrt(sum x^2) + eps`` as
            mmdet.
    """

    def __init__(
        self,
        num_channels: int,
        scale: float = 20.0,
        eps: float = 1e-10,
        across_spatial: bool = False,
        channel_shared: bool = False,
        eps_under_sqrt: bool = False,
    ) -> None:
        super().__init__()
        self.scale = float(scale)
        self.eps = eps
        self.across_spatial = across_spatial
        self.channel_shared = channel_shared
        self.eps_under_sqrt = eps_under_sqrt
        self.weight = nn.Parameter(torch.full((1 if channel_shared else num_channels,), self.scale))

    def forward(self, x: Tensor) -> Tensor:
        x_float = x.float()
        dims = (1, 2, 3) if self.across_spatial else (1,)
        sum_sq = x_float.pow(2).sum(dim=dims, keepdim=True)
        norm = (sum_sq + self.eps).sqrt() if self.eps_under_sqrt else sum_sq.sqrt() + self.eps
        return (self.weight.float()[None, :, None, None] * x_float / norm).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f'{self.weight.numel()}, scale={self.scale}, eps={self.eps}, '
            f'across_spatial={self.across_spatial}, channel_shared={self.channel_shared}, '
            f'eps_under_sqrt={self.eps_under_sqrt}'
        )
