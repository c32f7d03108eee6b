"""Caffe layer parameters -> the plain layer dicts of a :class:`~.caffe_net.CaffeNet` config."""

from typing import Dict, List, Sequence, Tuple

from .head_spec import f32
from .proto import CaffeFormatError

__all__ = ['conv_options', 'layer_dicts']


def _hw(values: Sequence[int], h: int, w: int, default: int, what: str, name: str) -> List[int]:
    """Caffe's ``kernel_size``/``stride``/``pad`` (repeated, or ``_h``/``_w``) as ``[h, w]``."""
    if h or w:
        if values:
            raise CaffeFormatError(f'layer {name!r}: give {what} or {what}_h/{what}_w, not both')
        return [int(h), int(w)]
    values = list(values)
    if len(values) > 2:
        raise CaffeFormatError(f'layer {name!r}: {what} {values}: 2-D layers only')
    if not values:
        return [default, default]
    return [int(values[0]), int(values[-1])]


def conv_options(layer, channels: int) -> dict:
    """The ``nn.Conv2d`` options of a ``Convolution`` layer reading ``channels`` channels."""
    p = layer.convolution_param
    name = layer.name
    if p.axis != 1:
        raise CaffeFormatError(f'Convolution {name!r}: axis {p.axis} (only 1 is supported)')
    if not p.HasField('num_output'):
        raise CaffeFormatError(f'Convolution {name!r}: num_output missing')
    kernel = _hw(p.kernel_size, p.kernel_h, p.kernel_w, 0, 'kernel', name)
    if min(kernel) <= 0:
        raise CaffeFormatError(f'Convolution {name!r}: kernel_size missing')
    groups = int(p.group)
    if channels and channels % groups or p.num_output % groups:
        raise CaffeFormatError(
            f'Convolution {name!r}: group {groups} does not divide {channels} input / '
            f'{p.num_output} output channels'
        )
    dilation = list(p.dilation) or [1]
    return dict(
        in_channels=channels,
        out_channels=int(p.num_output),
        kernel_size=kernel,
        stride=_hw(p.stride, p.stride_h, p.stride_w, 1, 'stride', name),
        padding=_hw(p.pad, p.pad_h, p.pad_w, 0, 'pad', name),
        dilation=[int(dilation[0]), int(dilation[-1])],
        groups=groups,
        bias=bool(p.bias_term),
    )


def _convolution(layer, channels: int) -> Tuple[dict, int]:
    return conv_options(layer, channels), int(layer.convolution_param.num_output)


def _pooling(layer, channels: int) -> Tuple[dict, int]:
    p = layer.pooling_param
    pool = p.DESCRIPTOR.fields_by_name['pool'].enum_type.values_by_number[p.pool].name
    if pool not in ('MAX', 'AVE'):
        raise CaffeFormatError(f'Pooling {layer.name!r}: method {pool} (MAX or AVE only)')
    kernel = [p.kernel_h, p.kernel_w] if p.kernel_h or p.kernel_w else [p.kernel_size] * 2
    if not p.global_pooling and min(kernel) <= 0:
        raise CaffeFormatError(f'Pooling {layer.name!r}: kernel_size missing')
    spec = dict(
        pool=pool,
        global_pooling=bool(p.global_pooling),
        kernel_size=[int(k) for k in kernel],
        stride=[int(p.stride_h), int(p.stride_w)] if p.stride_h or p.stride_w else [p.stride] * 2,
        padding=[int(p.pad_h), int(p.pad_w)] if p.pad_h or p.pad_w else [p.pad] * 2,
    )
    return spec, channels


def _eltwise(layer, channels: int) -> Tuple[dict, int]:
    p = layer.eltwise_param
    op = p.DESCRIPTOR.fields_by_name['operation'].enum_type.values_by_number[p.operation].name
    coeff = [f32(c) for c in p.coeff]
    if coeff and (op != 'SUM' or len(coeff) != len(layer.bottom)):
        raise CaffeFormatError(
            f'Eltwise {layer.name!r}: coeff needs operation SUM and one value per bottom'
        )
    return dict(operation=op, coeff=coeff), channels


def _scale(layer, channels: int) -> Tuple[dict, int]:
    p = layer.scale_param
    if len(layer.bottom) != 1 or p.axis != 1 or p.num_axes != 1:
        raise CaffeFormatError(
            f'Scale {layer.name!r}: only one bottom scaled per channel (axis 1, num_axes 1)'
        )
    return dict(channels=channels, bias=bool(p.bias_term)), channels


def _normalize(layer, channels: int) -> Tuple[dict, int]:
    p = layer.norm_param
    spec = dict(
        channels=channels,
        eps=f32(p.eps),
        across_spatial=bool(p.across_spatial),
        channel_shared=bool(p.channel_shared),
    )
    return spec, channels


def _relu(layer, channels: int) -> Tuple[dict, int]:
    return dict(negative_slope=f32(layer.relu_param.negative_slope)), channels


def _batch_norm(layer, channels: int) -> Tuple[dict, int]:
    if layer.batch_norm_param.HasField('use_global_stats') and not (
        layer.batch_norm_param.use_global_stats
    ):
        raise CaffeFormatError(
            f'BatchNorm {layer.name!r}: use_global_stats false normalises with the batch '
            'statistics at test time; deploy nets use the stored ones'
        )
    return dict(channels=channels, eps=f32(layer.batch_norm_param.eps)), channels


def _same(layer, channels: int) -> Tuple[dict, int]:
    return {}, channels


_CONVERTERS = {
    'Convolution': _convolution,
    'Pooling': _pooling,
    'Eltwise': _eltwise,
    'Scale': _scale,
    'Normalize': _normalize,
    'ReLU': _relu,
    'BatchNorm': _batch_norm,
    'Dropout': _same,
    'Split': _same,
}


def layer_dicts(
    layers: Sequence[object], input_blob: str, input_channels: int
) -> Tuple[List[dict], Dict[str, int]]:
    """The :class:`CaffeNet` layer dicts of ``layers`` and the channels of every blob.

    Raises:
        CaffeFormatError: An option the plugin cannot express, naming the layer.
    """
    channels = {input_blob: input_channels}
    out = []
    for layer in layers:
        ins = [channels[b] for b in layer.bottom]
        if layer.type == 'Concat':
            if layer.concat_param.axis != 1 or layer.concat_param.concat_dim != 1:
                raise CaffeFormatError(f'Concat {layer.name!r}: only axis 1 (channels)')
            options, out_channels = {}, sum(ins)
        else:
            if layer.type not in ('Eltwise',) and len(ins) != 1:
                raise CaffeFormatError(f'layer {layer.name!r}: one bottom expected')
            if layer.type == 'Eltwise' and len(set(ins)) != 1:
                raise CaffeFormatError(f'Eltwise {layer.name!r}: bottoms of {ins} channels')
            if layer.type == 'Split' and len(layer.top) < 1:
                raise CaffeFormatError(f'Split {layer.name!r}: no top')
            if layer.type != 'Split' and len(layer.top) != 1:
                raise CaffeFormatError(f'layer {layer.name!r}: one top expected')
            options, out_channels = _CONVERTERS[layer.type](layer, ins[0])
        out.append(
            dict(
                name=layer.name,
                type=layer.type,
                bottom=list(layer.bottom),
                top=list(layer.top),
                **options,
            )
        )
        for top in layer.top:
            channels[top] = out_channels
    return out, channels
