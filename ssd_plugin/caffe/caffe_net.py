"""MODELS ``CaffeNet``: a backbone built from a Caffe net's layer list, as Caffe computes it.

The converter writes the layers that compute the SSD feature maps into the config as plain
dicts (:func:`ssd_plugin.caffe.converter.backbone_spec.layer_dicts`); this module turns each
into a torch module with Caffe's arithmetic and runs them in prototxt order over named blobs.
"""

import re
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

from ssd_plugin.models.necks.l2_norm import L2Norm
from ssd_plugin.models.utils import DerivedWeights

from .fusion import fusion_plan, run_fused

__all__ = ['CaffeNet', 'SUPPORTED_LAYERS', 'module_key']


def module_key(layer_name: str) -> str:
    """The state-dict key of a layer: its name with characters other than ``[0-9A-Za-z_]`` -> _."""
    return re.sub(r'\W', '_', layer_name, flags=re.ASCII) or '_'


class Scale(nn.Module):
    """Caffe ``Scale`` over channels (axis 1, one axis): ``x * weight[c] (+ bias[c])``."""

    def __init__(self, channels: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        x = x * self.weight.view(1, -1, 1, 1)
        return x if self.bias is None else x + self.bias.view(1, -1, 1, 1)


class Eltwise(nn.Module):
    """Caffe ``Eltwise``: ``SUM`` (with per-bottom ``coeff``), ``PROD`` or ``MAX``."""

    def __init__(self, operation: str, coeff: Sequence[float] = ()) -> None:
        super().__init__()
        self.operation = operation
        self.coeff = [float(c) for c in coeff]

    def forward(self, *xs: Tensor) -> Tensor:
        if self.operation == 'SUM':
            coeff = self.coeff or [1.0] * len(xs)
            out = xs[0] * coeff[0] if coeff[0] != 1 else xs[0]
            for x, c in zip(xs[1:], coeff[1:]):
                out = out + (x * c if c != 1 else x)
            return out
        out = xs[0]
        for x in xs[1:]:
            out = out * x if self.operation == 'PROD' else torch.maximum(out, x)
        return out


class Concat(nn.Module):
    """Caffe ``Concat`` over channels."""

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, dim=1)


class PassThrough(nn.Module):
    """``Dropout`` at test time and ``Split``: the input unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def _conv(spec: dict) -> nn.Module:
    return nn.Conv2d(
        spec['in_channels'],
        spec['out_channels'],
        tuple(spec['kernel_size']),
        stride=tuple(spec['stride']),
        padding=tuple(spec['padding']),
        dilation=tuple(spec['dilation']),
        groups=spec['groups'],
        bias=spec['bias'],
    )


def _batch_norm(spec: dict) -> nn.Module:
    # Statistics only; gamma and beta are the following Scale layer's, as in Caffe.
    return nn.BatchNorm2d(spec['channels'], eps=spec['eps'], affine=False)


def _relu(spec: dict) -> nn.Module:
    slope = spec.get('negative_slope', 0.0)
    return nn.LeakyReLU(slope) if slope else nn.ReLU()


def _pooling(spec: dict) -> nn.Module:
    if spec['global_pooling']:
        return nn.AdaptiveMaxPool2d(1) if spec['pool'] == 'MAX' else nn.AdaptiveAvgPool2d(1)
    # Caffe rounds the output size up, minus one if the last window starts in the padding:
    # exactly PyTorch's ceil_mode. Its AVE divides by the window clipped to the padded input,
    # as count_include_pad=True does.
    args = dict(
        kernel_size=tuple(spec['kernel_size']),
        stride=tuple(spec['stride']),
        padding=tuple(spec['padding']),
        ceil_mode=True,
    )
    if spec['pool'] == 'MAX':
        return nn.MaxPool2d(**args)
    return nn.AvgPool2d(count_include_pad=True, **args)


def _normalize(spec: dict) -> nn.Module:
    return L2Norm(
        spec['channels'],
        scale=spec.get('scale', 1.0),
        eps=spec['eps'],
        across_spatial=spec['across_spatial'],
        channel_shared=spec['channel_shared'],
        eps_under_sqrt=True,  # Caffe: sqrt(sum x^2 + eps)
    )


_BUILDERS: Dict[str, Callable[[dict], nn.Module]] = {
    'Convolution': _conv,
    'BatchNorm': _batch_norm,
    'Scale': lambda spec: Scale(spec['channels'], spec['bias']),
    'ReLU': _relu,
    'Eltwise': lambda spec: Eltwise(spec['operation'], spec.get('coeff', ())),
    'Pooling': _pooling,
    'Concat': lambda spec: Concat(),
    'Dropout': lambda spec: PassThrough(),
    'Split': lambda spec: PassThrough(),
    'Normalize': _normalize,
}
SUPPORTED_LAYERS = tuple(_BUILDERS)


@MODELS.register_module()
class CaffeNet(BaseModule):
    """The layers of a Caffe net that compute the SSD feature maps, run as Caffe runs them.

    Each layer is a dict ``dict(name, type, bottom=[...], top=[...], **options)`` with
    ``type`` one of :data:`SUPPORTED_LAYERS`; the options are those the converter writes
    (:func:`ssd_plugin.caffe.converter.backbone_spec.layer_dicts`). Layers run in list order,
    reading and writing blobs by name (in-place layers overwrite their blob, as in Caffe).

    State-dict keys: ``layers.<key>.<param>`` with ``<key>`` = :func:`module_key` of the layer
    name (``conv1.weight``, ``bn1.running_mean``, ``scale1.weight``, ``conv4_3_norm.weight``).

    In eval mode (with ``fuse=True``) runs of ``Convolution``/``BatchNorm`` + ``BatchNorm``/
    ``Scale``/``ReLU`` are computed as one layer, as OpenCV's DNN does: the BatchNorm statistics
    and Scale are folded into the convolution's weights (cached until they change) and the ReLU
    is applied in place (:mod:`ssd_plugin.caffe.fusion`). The modules and state dict stay as
    they are, so training and fine-tuning see the separate, trainable layers. On the CPU that
    path also runs channels-last (``channels_last=True``): PyTorch's max pooling is vectorised
    over channels only on NHWC maps (res10's 150x150 ``conv1_pool``: ~10x faster), and float32
    convolutions run as oneDNN's with their folded weights reordered once (cached) and the ReLU
    as a post-op, as OpenCV does. The returned maps are then channels-last, with the same values
    and shapes.

    Args:
        layers: The layer dicts, in execution order.
        out_blobs: Blob names returned, one per SSD level (the head's inputs).
        input_blob: Name of the network input blob.
        fuse: Whether eval mode runs the fused layers (same outputs up to float32 rounding).
        channels_last: Whether the fused path runs channels-last on the CPU (not while
            tracing or exporting, where the memory format means nothing).
        init_cfg: Initialisation for training from scratch (converted weights replace it).
    """

    def __init__(
        self,
        layers: Sequence[dict],
        out_blobs: Sequence[str],
        input_blob: str = 'data',
        fuse: bool = True,
        channels_last: bool = True,
        init_cfg=dict(type='Kaiming', layer='Conv2d'),
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.input_blob = input_blob
        self.out_blobs = list(out_blobs)
        self.specs: List[Tuple[str, List[str], List[str]]] = []
        self.layers = nn.ModuleDict()
        known = {input_blob}
        for spec in layers:
            name, kind = spec['name'], spec['type']
            if kind not in _BUILDERS:
                raise ValueError(
                    f'CaffeNet: layer {name!r} has type {kind!r}, which is not supported '
                    f'(supported: {", ".join(SUPPORTED_LAYERS)})'
                )
            missing = [b for b in spec['bottom'] if b not in known]
            if missing:
                raise ValueError(f'CaffeNet: layer {name!r} reads blobs {missing} never computed')
            key = module_key(name)
            if key in self.layers:
                raise ValueError(f'CaffeNet: two layers map to the module name {key!r}: {name!r}')
            self.layers[key] = _BUILDERS[kind](spec)
            self.specs.append((key, list(spec['bottom']), list(spec['top'])))
            known.update(spec['top'])
        missing = [b for b in self.out_blobs if b not in known]
        if missing:
            raise ValueError(f'CaffeNet: out_blobs {missing} are computed by no layer')
        self.fuse = fuse
        self.channels_last = channels_last
        self.fused_plan = fusion_plan(layers, [key for key, _, _ in self.specs], self.out_blobs)
        self._folded = DerivedWeights()  # run_fused's cache of folded weights (not state)

    def train(self, mode: bool = True) -> 'CaffeNet':
        """Set the mode; training drops the folded weights (they are rebuilt in eval)."""
        if mode:
            self._folded.clear()
        return super().train(mode)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """The ``out_blobs`` of the net on ``x`` (N, C, H, W), layer by layer or fused."""
        blobs = {self.input_blob: x}
        if self.training or not self.fuse:
            for key, bottom, top in self.specs:
                out = self.layers[key](*[blobs[b] for b in bottom])
                for name in top:
                    blobs[name] = out
            return tuple(blobs[name] for name in self.out_blobs)
        channels_last = self.channels_last and x.device.type == 'cpu'
        channels_last = channels_last and not torch.jit.is_tracing()
        if channels_last:
            blobs[self.input_blob] = x.contiguous(memory_format=torch.channels_last)
        for run in self.fused_plan:
            inputs = [blobs[b] for b in run.bottom]
            if len(run.keys) == 1 and run.kinds[0] != 'Convolution':
                out = self.layers[run.keys[0]](*inputs)
            else:
                out = run_fused(run, self.layers, inputs[0], self._folded, channels_last)
            for name in run.top:
                blobs[name] = out
        return tuple(blobs[name] for name in self.out_blobs)
