"""SSD's extra feature layers: decreasing-size maps for multi-scale detection (paper Sec. 2.1)."""

from collections import OrderedDict
from typing import Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmdet.registry import MODELS
from mmdet.utils import MultiConfig, OptConfigType
from mmengine.model import BaseModule
from torch import Tensor

from .l2_norm import L2Norm

__all__ = ['SSDExtraLayers']


@MODELS.register_module()
class SSDExtraLayers(BaseModule):
    """Passes a backbone's feature maps through and appends SSD's extra levels.

    The inputs (any backbone's, e.g. ReducedVGG16's conv4_3/fc7, ResNet's ``out_indices=(2, 3)``
    or MobileNetV2's ``(4, 7)``) are returned unchanged except those listed in
    ``l2_norm_levels``, which go through :class:`L2Norm` (SSD: conv4_3 only). Extra level ``i``
    then takes the previous level (the last input for ``i = 0``) through

    - ``reduce``: 1x1 ConvModule to ``out_channels[len(in_channels) + i] // 2`` channels, and
    - ``conv``: ``kernel_sizes[i]`` ConvModule (``DepthwiseSeparableConvModule`` if
      ``use_depthwise``, SSDLite) with ``strides[i]`` and ``paddings[i]`` to the full count,

    each with ``norm_cfg``/``act_cfg`` (default: bias + ReLU, as Caffe's conv6_1 ... conv9_2).
    Output side ``(S + 2 * padding - kernel) // stride + 1``: SSD300 maps 38, 19 -> 10, 5, 3, 1
    (strides (2, 2, 1, 1), paddings (1, 1, 0, 0), kernels 3); SSD512 64, 32 -> 16, 8, 4, 2, 1
    (strides (2, 2, 2, 2, 1), paddings 1, kernels (3, 3, 3, 3, 4)).

    Args:
        in_channels: Channels of each input level.
        out_channels: Channels of every output level: ``in_channels`` followed by one entry per
            extra level (as mmdet's SSDNeck).
        strides: Stride of each extra level's kxk conv.
        paddings: Padding of each extra level's kxk conv.
        kernel_sizes: Kernel of each extra level's kxk conv, or one int for all.
        l2_norm_levels: Input levels to L2-normalise; ``()`` disables L2Norm.
        l2_norm_scale: Initial L2Norm scale (paper: 20); ``None`` disables L2Norm.
        l2_norm_cfg: Further :class:`L2Norm` keys (``across_spatial``, ``channel_shared``,
            ``eps``, ``eps_under_sqrt``: Caffe's ``Normalize`` options); None: SSD's defaults.
        use_depthwise: Depthwise-separable kxk convs (SSDLite, Sandler et al. 2018).
        conv_cfg: Conv layer config of every ConvModule.
        norm_cfg: Norm layer config (SSDLite: BN); ``None``: no norm, convs have a bias.
        act_cfg: Activation config (SSDLite: ReLU6).
        init_cfg: Default: Xavier uniform on convs, zero bias (Caffe's ``xavier`` filler for
            the extra layers, and mmdet's SSDNeck), BN weights 1. L2Norm scales start at
            ``l2_norm_scale`` and no Conv2d/BN init touches them.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (512, 1024),
        out_channels: Sequence[int] = (512, 1024, 512, 256, 256, 256),
        strides: Sequence[int] = (2, 2, 1, 1),
        paddings: Sequence[int] = (1, 1, 0, 0),
        kernel_sizes: Union[int, Sequence[int]] = 3,
        l2_norm_levels: Sequence[int] = (0,),
        l2_norm_scale: Optional[float] = 20.0,
        l2_norm_cfg: OptConfigType = None,
        use_depthwise: bool = False,
        conv_cfg: OptConfigType = None,
        norm_cfg: OptConfigType = None,
        act_cfg: OptConfigType = dict(type='ReLU'),
        init_cfg: MultiConfig = [
            dict(type='Xavier', distribution='uniform', layer='Conv2d'),
            dict(type='Constant', val=1, layer='BatchNorm2d'),
        ],
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels, out_channels = tuple(in_channels), tuple(out_channels)
        num_extra = len(out_channels) - len(in_channels)
        if isinstance(kernel_sizes, int):
            kernel_sizes = (kernel_sizes,) * max(num_extra, 0)
        _check_args(in_channels, out_channels, strides, paddings, kernel_sizes, l2_norm_levels)
        if l2_norm_scale is not None and not l2_norm_scale > 0:
            raise ValueError(
                f'SSDExtraLayers: l2_norm_scale must be > 0 or None, got {l2_norm_scale!r}'
            )
        self.in_channels = in_channels
        self.out_channels = out_channels

        # A ModuleDict keyed by level keeps the state-dict keys readable: ``l2_norms.0.weight``.
        self.l2_norms = nn.ModuleDict()
        if l2_norm_scale is not None:
            for level in l2_norm_levels:
                self.l2_norms[str(level)] = L2Norm(
                    in_channels[level], l2_norm_scale, **(l2_norm_cfg or {})
                )

        kxk_conv = DepthwiseSeparableConvModule if use_depthwise else ConvModule
        layer_cfg = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        # Plain torch containers, as mmdet's SSDNeck: BaseModule.init_weights only calls the
        # init_weights of direct children, so ConvModule's own Kaiming init never overrides
        # init_cfg's Xavier (checked in the tests).
        self.extra_layers = nn.ModuleList()
        for i in range(num_extra):
            prev = out_channels[len(in_channels) - 1 + i]
            out = out_channels[len(in_channels) + i]
            reduce = ConvModule(prev, out // 2, 1, **layer_cfg)
            conv = kxk_conv(
                out // 2, out, kernel_sizes[i], stride=strides[i], padding=paddings[i], **layer_cfg
            )
            self.extra_layers.append(nn.Sequential(OrderedDict(reduce=reduce, conv=conv)))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Return the (partly L2-normalised) inputs followed by the extra levels."""
        if len(inputs) != len(self.in_channels):
            raise ValueError(
                f'SSDExtraLayers got {len(inputs)} feature maps, but in_channels='
                f'{self.in_channels} expects {len(self.in_channels)}'
            )
        outs = list(inputs)
        for level, l2_norm in self.l2_norms.items():
            outs[int(level)] = l2_norm(outs[int(level)])
        feat = outs[-1]  # as mmdet's SSDNeck: the (possibly normalised) last input
        for layer in self.extra_layers:
            feat = layer(feat)
            outs.append(feat)
        return tuple(outs)


def _check_args(
    in_channels: Tuple[int, ...],
    out_channels: Tuple[int, ...],
    strides: Sequence[int],
    paddings: Sequence[int],
    kernel_sizes: Sequence[int],
    l2_norm_levels: Sequence[int],
) -> None:
    """Raise a ValueError naming the offending SSDExtraLayers argument."""
    if len(in_channels) == 0:
        raise ValueError('SSDExtraLayers: in_channels must name at least one input level')
    if out_channels[: len(in_channels)] != in_channels:
        raise ValueError(
            f'SSDExtraLayers: in_channels={in_channels} must be the first {len(in_channels)} '
            f'entries of out_channels={out_channels} (out_channels lists every output level)'
        )
    num_extra = len(out_channels) - len(in_channels)
    for key, values in (
        ('strides', strides),
        ('paddings', paddings),
        ('kernel_sizes', kernel_sizes),
    ):
        if len(values) != num_extra:
            raise ValueError(
                f'SSDExtraLayers: {key}={tuple(values)} has {len(values)} entries, but '
                f'out_channels={out_channels} has {num_extra} extra levels after in_channels'
            )
    for key, values, low in (
        ('in_channels', in_channels, 1),
        ('out_channels', out_channels[len(in_channels) :], 2),
        ('strides', strides, 1),
        ('paddings', paddings, 0),
        ('kernel_sizes', kernel_sizes, 1),
    ):
        if any(not isinstance(v, int) or v < low for v in values):
            raise ValueError(
                f'SSDExtraLayers: {key} must be integers >= {low}'
                + (' (extra levels)' if key == 'out_channels' else '')
                + f', got {tuple(values)}'
            )
    if len(set(l2_norm_levels)) != len(l2_norm_levels) or any(
        not isinstance(v, int) or not 0 <= v < len(in_channels) for v in l2_norm_levels
    ):
        raise ValueError(
            f'SSDExtraLayers: l2_norm_levels={tuple(l2_norm_levels)} must be distinct input '
            f'level indices in [0, {len(in_channels)})'
        )
