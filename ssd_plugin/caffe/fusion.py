"""Eval-time fusion of a :class:`~.caffe_net.CaffeNet`'s Convolution/BatchNorm/Scale/ReLU runs.

OpenCV's DNN folds a ``BatchNorm`` (and the ``Scale`` after it) into the convolution before it
and applies the ``ReLU`` in place; run as separate layers they cost a pass over the feature map
each. :func:`fusion_plan` finds such runs once, from the layer list; :func:`run_fused` computes
one with the modules' current weights, so the state dict and training (batch statistics,
trainable BatchNorm/Scale) are untouched and the fused path is only the inference schedule.
"""

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ssd_plugin.models.utils import DerivedWeights, version_key

__all__ = ['FusedRun', 'fusion_plan', 'fold_conv_bn_scale', 'run_fused']

# What may follow the head of a run, in this order, each at most once.
_TAIL = ('BatchNorm', 'Scale', 'ReLU')


class FusedRun(NamedTuple):
    """Consecutive layers computed as one: a ``Convolution`` or ``BatchNorm`` head and a tail.

    Attributes:
        keys: Module keys of the layers, in order.
        kinds: Their Caffe types.
        bottom: The head's input blobs.
        top: The blobs the run writes; all hold the run's output afterwards.
    """

    keys: Tuple[str, ...]
    kinds: Tuple[str, ...]
    bottom: List[str]
    top: List[str]


def _chain_end(layers: Sequence[dict], start: int) -> int:
    """One past the last layer that can join the run starting at ``start``."""
    kinds = [layers[start]['type']]
    end = start + 1
    while end < len(layers):
        prev, layer = layers[end - 1], layers[end]
        kind = layer['type']
        joins = (
            kind in _TAIL
            and _TAIL.index(kind) > max((_TAIL.index(k) for k in kinds if k in _TAIL), default=-1)
            and len(prev['top']) == 1
            and list(layer['bottom']) == list(prev['top'])
            and len(layer['top']) == 1
        )
        if not joins:
            break
        kinds.append(kind)
        end += 1
    return end


def _hidden(layers: Sequence[dict], start: int, end: int, out_blobs: Sequence[str]) -> bool:
    """Whether no blob value inside the run is visible outside it.

    A blob an inner layer writes is fine if the last layer writes it too (in place), or if no
    later layer reads it and it is not a network output.
    """
    last_top = set(layers[end - 1]['top'])
    read_later = {b for layer in layers[end:] for b in layer['bottom']} | set(out_blobs)
    return all(
        name in last_top or name not in read_later
        for layer in layers[start : end - 1]
        for name in layer['top']
    )


def fusion_plan(
    layers: Sequence[dict], keys: Sequence[str], out_blobs: Sequence[str]
) -> List[FusedRun]:
    """The inference schedule of a CaffeNet: its layers with fusable runs merged.

    A run is a ``Convolution`` followed by any of ``BatchNorm``, ``Scale``, ``ReLU`` (in that
    order), or a ``BatchNorm`` followed by ``Scale`` and/or ``ReLU``; each layer reads exactly
    the previous one's single top, and no intermediate value is read after the run. Every other
    layer is a run of one.

    Args:
        layers: The CaffeNet layer dicts, in execution order.
        keys: Their module keys.
        out_blobs: The network outputs (intermediate values they name are never fused away).
    """
    plan = []
    i = 0
    while i < len(layers):
        end = i + 1
        if layers[i]['type'] in ('Convolution', 'BatchNorm') and len(layers[i]['top']) == 1:
            end = _chain_end(layers, i)
            while end > i + 1 and not _hidden(layers, i, end, out_blobs):
                end -= 1
        run = layers[i:end]
        plan.append(
            FusedRun(
                keys=tuple(keys[i:end]),
                kinds=tuple(layer['type'] for layer in run),
                bottom=list(layers[i]['bottom']),
                top=list(dict.fromkeys(name for layer in run for name in layer['top'])),
            )
        )
        i = end
    return plan


def fold_conv_bn_scale(
    conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d], scale: Optional[nn.Module]
) -> Tuple[Tensor, Optional[Tensor]]:
    """The weight and bias of ``conv`` with ``bn`` (running statistics) and ``scale`` folded in.

    ``scale(bn(conv(x)))`` is ``a * conv(x) + b`` per output channel; ``a`` goes into the weight,
    ``b`` (and ``a`` times the conv's own bias) into the bias. Folded in float64 (where the
    device has it) and cast back, so the fused output differs from the layer-by-layer one by
    float32 rounding only.
    """
    if bn is None and scale is None:
        return conv.weight, conv.bias
    acc = torch.float32 if conv.weight.device.type == 'mps' else torch.float64
    weight = conv.weight.to(acc)
    a = weight.new_ones(conv.out_channels)
    b = weight.new_zeros(conv.out_channels)
    if bn is not None:
        a = torch.rsqrt(bn.running_var.to(acc) + bn.eps)
        b = -bn.running_mean.to(acc) * a
    if scale is not None:
        a = a * scale.weight.to(acc)
        b = b * scale.weight.to(acc)
        if scale.bias is not None:
            b = b + scale.bias.to(acc)
    if conv.bias is not None:
        b = b + conv.bias.to(acc) * a
    dtype = conv.weight.dtype
    return (weight * a.view(-1, 1, 1, 1)).to(dtype), b.to(dtype)


def _sources(modules: Sequence[nn.Module]) -> List[Tensor]:
    return [t for m in modules for t in list(m.parameters()) + list(m.buffers())]


def _onednn_ready(x: Tensor, conv: nn.Conv2d, relu: Optional[nn.Module]) -> bool:
    """Whether the convolution can run as oneDNN's prepacked convolution with a ReLU post-op.

    Float32 channels-last CPU input, outside autocast, a zero-padded convolution, on a PyTorch
    that has the operator (the one ``torch.compile`` emits for CPU convolutions).
    """
    return (
        x.dtype == torch.float32
        and not torch.is_autocast_enabled('cpu')
        and conv.padding_mode == 'zeros'
        and isinstance(conv.padding, tuple)
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, '_convolution_pointwise')
    )


def _cached_fold(
    key: str,
    sources: List[Tensor],
    layers: Tuple[nn.Module, Optional[nn.Module], Optional[nn.Module]],
    x: Tensor,
    cache: DerivedWeights,
    channels_last: bool,
    packed: bool,
) -> Tuple[Tensor, Tensor]:
    """The folded ``(weight, bias)`` of a run's ``(conv, bn, scale)``, cached under ``key``
    until the sources change (prepacked for oneDNN, or channels-last, as the call needs)."""
    conv = layers[0]
    version = (version_key(sources), channels_last, torch.is_inference_mode_enabled(),
               tuple(x.shape) if packed else None)  # fmt: skip
    hit = cache.get(key)
    if hit is None or hit[0] != version:
        weight, bias = fold_conv_bn_scale(*layers)
        if packed:
            weight = torch.ops.mkldnn._reorder_convolution_weight(
                weight, list(conv.padding), list(conv.stride), list(conv.dilation),
                conv.groups, list(x.shape))  # fmt: skip
        elif channels_last:
            weight = weight.contiguous(memory_format=torch.channels_last)
        hit = cache[key] = (version, weight, bias)
    return hit[1], hit[2]


def _onednn_conv(x: Tensor, weight: Tensor, bias: Tensor, conv: nn.Conv2d, relu) -> Tensor:
    """oneDNN's convolution with prepacked weights and the ReLU as its post-op, as OpenCV fuses
    it: one pass over the output instead of two."""
    attr, scalars = 'none', []
    if isinstance(relu, nn.LeakyReLU):
        attr, scalars = 'leaky_relu', [relu.negative_slope]
    elif relu is not None:
        attr = 'relu'
    return torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, list(conv.padding), list(conv.stride),
        list(conv.dilation), conv.groups, attr, scalars, '')  # fmt: skip


def run_fused(
    run: FusedRun,
    modules: Dict[str, nn.Module],
    x: Tensor,
    cache: DerivedWeights,
    channels_last: bool = False,
) -> Tensor:
    """Compute a run that starts with a ``Convolution`` or has two or more layers (eval mode).

    Args:
        run: The run, from :func:`fusion_plan`.
        modules: The CaffeNet's layer modules by key.
        x: The run's input.
        cache: Folded convolution weights by head key, reused while the sources are unchanged
            and no gradient reaches them (else the fold is part of the autograd graph).
        channels_last: Whether ``x`` is channels-last: float32 convolutions then run as
            oneDNN's with prepacked weights and the ReLU as a post-op (:func:`_onednn_ready`),
            others with weights stored channels-last; either way no weight is reordered or
            copied per call.
    """
    by_kind = {kind: modules[key] for kind, key in zip(run.kinds, run.keys)}
    bn, scale, relu = by_kind.get('BatchNorm'), by_kind.get('Scale'), by_kind.get('ReLU')
    if run.kinds[0] == 'Convolution':
        conv = by_kind['Convolution']
        sources = _sources([m for m in (conv, bn, scale) if m is not None])
        record = torch.is_grad_enabled() and any(t.requires_grad for t in sources)
        if record or torch.jit.is_tracing() or torch.compiler.is_compiling():
            # In the graph: differentiable, or folded by the exporter as constants.
            weight, bias = fold_conv_bn_scale(conv, bn, scale)
        else:
            packed = channels_last and _onednn_ready(x, conv, relu)
            weight, bias = _cached_fold(
                run.keys[0], sources, (conv, bn, scale), x, cache, channels_last, packed
            )
            if packed:
                return _onednn_conv(x, weight, bias, conv, relu)
        out = conv._conv_forward(x, weight, bias)
    else:
        gamma = beta = None
        if scale is not None:
            gamma = scale.weight
            beta = scale.bias if scale.bias is not None else torch.zeros_like(scale.weight)
        # BatchNorm then Scale is batch_norm with Scale's weight and bias: one pass.
        out = F.batch_norm(x, bn.running_mean, bn.running_var, gamma, beta, False, 0.0, bn.eps)
    if relu is None:
        return out
    # ``out`` is a fresh tensor nobody else holds: rectify in place.
    if isinstance(relu, nn.LeakyReLU):
        return F.leaky_relu_(out, relu.negative_slope)
    return out.relu_()
