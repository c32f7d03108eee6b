"""A level's class and box predictors computed as one convolution at inference.

Both read the same feature map with the same kernel: one convolution with their filters stacked
reads it once (on the CPU, the input's reorder and im2col are half the cost of a small
predictor), and its output's channel slices are the two predictions, value for value up to the
convolution's summation order. Training and gradients keep the two modules as they are.
"""

from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.modules.module as global_hooks
from torch import Tensor

from ssd_plugin.models.utils import DerivedWeights, version_key

__all__ = ['merged_pair', 'run_merged']


def _hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` would run hooks (its own or global ones)."""
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or global_hooks._global_forward_hooks
        or global_hooks._global_forward_pre_hooks
    )


def merged_pair(cls_branch: nn.Module, reg_branch: nn.Module) -> Optional[Tuple[nn.Conv2d, ...]]:
    """The two predictor convs when each branch is only that conv with the same geometry and
    no forward hooks (a hooked module is called as itself, so its hooks see its output)."""
    convs = []
    for branch in (cls_branch, reg_branch):
        children = list(branch.children()) if isinstance(branch, nn.Sequential) else [branch]
        if len(children) != 1 or type(children[0]) is not nn.Conv2d:
            return None
        if any(_hooked(m) for m in {branch, children[0]}):
            return None
        convs.append(children[0])
    a, b = convs
    geometry = ('kernel_size', 'stride', 'padding', 'dilation', 'groups', 'padding_mode')
    same = all(getattr(a, name) == getattr(b, name) for name in geometry)
    if (
        not same
        or a.groups != 1
        or a.padding_mode != 'zeros'
        or (a.bias is None) != (b.bias is None)
    ):
        return None
    return a, b


def run_merged(
    feat: Tensor, cls_conv: nn.Conv2d, reg_conv: nn.Conv2d, cache: DerivedWeights, key: str
) -> Optional[Tuple[Tensor, Tensor]]:
    """``(cls_conv(feat), reg_conv(feat))`` from one convolution, or None where it must not run.

    It does not run where autograd records (the stacked weights would cut the gradient), while
    tracing (an exported graph keeps the model's own two convolutions) or under
    ``torch.compile`` (which sees the model as written). The stacked weights are
    cached in ``cache[key]`` in the input's memory format, so the convolution copies none per call.
    """
    sources = [t for conv in (cls_conv, reg_conv) for t in conv.parameters()]
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in sources):
        return None
    channels_last = (
        feat.dim() == 4
        and not feat.is_contiguous()
        and feat.is_contiguous(memory_format=torch.channels_last)
    )
    stamp = (version_key(sources), channels_last, torch.is_inference_mode_enabled())
    hit = cache.get(key)
    if hit is None or hit[0] != stamp:
        weight = torch.cat([cls_conv.weight, reg_conv.weight])
        if channels_last:
            weight = weight.contiguous(memory_format=torch.channels_last)
        bias = None if cls_conv.bias is None else torch.cat([cls_conv.bias, reg_conv.bias])
        hit = cache[key] = (stamp, weight, bias)
    out = F.conv2d(feat, hit[1], hit[2], cls_conv.stride, cls_conv.padding, cls_conv.dilation)
    split = cls_conv.out_channels
    return out[:, :split], out[:, split:]
