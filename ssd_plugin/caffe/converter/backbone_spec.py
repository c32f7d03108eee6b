"""Caffe layer parameters -> the plain layer dicts of a :class:`~.caffe_net.CaffeNet` config."""

import math
from typing import Dict, List, Sequence, Tuple

from .errors import field_error
from .head_spec import f32

__all__ = ['conv_options', 'layer_dicts']


def _hw(layer, param: str, what: str, default: int, least: int) -> List[int]:
    """Caffe's ``kernel_size``/``stride``/``pad``/``dilation`` (repeated, or ``_h``/``_w``).

    Returns ``[h, w]``; every value must be at least ``least``.
    """
    p = getattr(layer, param)
    values = list(getattr(p, what))
    short = what.replace('_size', '')  # kernel_h, stride_h, pad_h (dilation has none)
    if what != 'dilation' and (p.HasField(f'{short}_h') or p.HasField(f'{short}_w')):
        if values:
            raise field_error(layer, f'{param}.{what}', f'give it or {short}_h/{short}_w, not both')
        hw = [int(getattr(p, f'{short}_h')), int(getattr(p, f'{short}_w'))]
        fields = [f'{param}.{short}_h', f'{param}.{short}_w']
    else:
        if len(values) > 2:
            raise field_error(layer, f'{param}.{what}', f'{values}: 2-D layers only')
        hw = [int(values[0]), int(values[-1])] if values else [default, default]
        fields = [f'{param}.{what}'] * 2
    for value, name in zip(hw, fields):
        if value < least:
            raise field_error(layer, name, f'{value}; must be at least {least}')
    return hw


def conv_options(layer, channels: int) -> dict:
    """The ``nn.Conv2d`` options of a ``Convolution`` layer reading ``channels`` channels.

    Raises:
        CaffeFormatError: A field out of its range (naming the layer and the field): a kernel,
            stride or dilation below 1, ``num_output`` or ``group`` 0, a group that does not
            divide the input and output channels.
    """
    p = layer.convolution_param
    param = 'convolution_param'
    if p.axis != 1:
        raise field_error(layer, f'{param}.axis', f'{p.axis} (only 1 is supported)')
    if not p.HasField('num_output') or p.num_output < 1:
        raise field_error(layer, f'{param}.num_output', 'missing or 0')
    kernel = _hw(layer, param, 'kernel_size', 0, 1)
    groups = int(p.group)
    if groups < 1:
        raise field_error(layer, f'{param}.group', f'{groups}; must be at least 1')
    if channels and channels % groups or p.num_output % groups:
        raise field_error(
            layer,
            f'{param}.group',
            f'{groups} does not divide the {channels} input and {p.num_output} output channels',
        )
    return dict(
        in_channels=channels,
        out_channels=int(p.num_output),
        kernel_size=kernel,
        stride=_hw(layer, param, 'stride', 1, 1),
        padding=_hw(layer, param, 'pad', 0, 0),
        dilation=_hw(layer, param, 'dilation', 1, 1),
        groups=groups,
        bias=bool(p.bias_term),
    )


def _convolution(layer, channels: int) -> Tuple[dict, int]:
    return conv_options(layer, channels), int(layer.convolution_param.num_output)


def _pool_hw(layer, what: str) -> List[int]:
    """Pooling's ``kernel``/``stride``/``pad`` as ``[h, w]`` (``_h``/``_w`` win, as in Caffe)."""
    p = layer.pooling_param
    if p.HasField(f'{what}_h') or p.HasField(f'{what}_w'):
        return [int(getattr(p, f'{what}_h')), int(getattr(p, f'{what}_w'))]
    return [int(getattr(p, 'kernel_size' if what == 'kernel' else what))] * 2


def _pooling(layer, channels: int) -> Tuple[dict, int]:
    p = layer.pooling_param
    pool = p.DESCRIPTOR.fields_by_name['pool'].enum_type.values_by_number[p.pool].name
    if pool not in ('MAX', 'AVE'):
        raise field_error(layer, 'pooling_param.pool', f'{pool} (MAX or AVE only)')
    kernel, stride, padding = (_pool_hw(layer, what) for what in ('kernel', 'stride', 'pad'))
    if not p.global_pooling:
        if min(kernel) < 1:
            raise field_error(layer, 'pooling_param.kernel_size', f'{kernel}; must be at least 1')
        if min(stride) < 1:
            raise field_error(layer, 'pooling_param.stride', f'{stride}; must be at least 1')
        # Caffe needs pad < kernel; PyTorch's pooling pads at most half the kernel
        if any(2 * pad > k for pad, k in zip(padding, kernel)):
            raise field_error(
                layer, 'pooling_param.pad', f'{padding} is more than half the kernel {kernel}'
            )
    spec = dict(
        pool=pool,
        global_pooling=bool(p.global_pooling),
        kernel_size=kernel,
        stride=stride,
        padding=padding,
    )
    return spec, channels


def _finite(layer, field: str, value: float, least: float = -math.inf) -> float:
    """``value`` as written (:func:`f32`), refused if not finite or below ``least``."""
    if not math.isfinite(value) or value < least:
        bound = '' if least == -math.inf else f' at least {least:g}'
        raise field_error(layer, field, f'{value!r}; must be a finite number{bound}')
    return f32(value)


def _eltwise(layer, channels: int) -> Tuple[dict, int]:
    p = layer.eltwise_param
    op = p.DESCRIPTOR.fields_by_name['operation'].enum_type.values_by_number[p.operation].name
    coeff = [_finite(layer, 'eltwise_param.coeff', c) for c in p.coeff]
    if coeff and (op != 'SUM' or len(coeff) != len(layer.bottom)):
        raise field_error(
            layer, 'eltwise_param.coeff', 'needs operation SUM and one value per bottom'
        )
    return dict(operation=op, coeff=coeff), channels


def _scale(layer, channels: int) -> Tuple[dict, int]:
    p = layer.scale_param
    if len(layer.bottom) != 1 or p.axis != 1 or p.num_axes != 1:
        raise field_error(
            layer, 'scale_param', 'only one bottom scaled per channel (axis 1, num_axes 1)'
        )
    return dict(channels=channels, bias=bool(p.bias_term)), channels


def _normalize(layer, channels: int) -> Tuple[dict, int]:
    p = layer.norm_param
    spec = dict(
        channels=channels,
        eps=_finite(layer, 'norm_param.eps', p.eps, 0.0),
        across_spatial=bool(p.across_spatial),
        channel_shared=bool(p.channel_shared),
    )
    return spec, channels


def _relu(layer, channels: int) -> Tuple[dict, int]:
    slope = _finite(layer, 'relu_param.negative_slope', layer.relu_param.negative_slope)
    return dict(negative_slope=slope), channels


def _batch_norm(layer, channels: int) -> Tuple[dict, int]:
    if layer.batch_norm_param.HasField('use_global_stats') and not (
        layer.batch_norm_param.use_global_stats
    ):
        raise field_error(
            layer,
            'batch_norm_param.use_global_stats',
            'false normalises with the batch statistics at test time; deploy nets use the '
            'stored ones',
        )
    eps = _finite(layer, 'batch_norm_param.eps', layer.batch_norm_param.eps, 0.0)
    return dict(channels=channels, eps=eps), channels


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
                raise field_error(layer, 'concat_param.axis', 'only axis 1 (channels)')
            options, out_channels = {}, sum(ins)
        else:
            if layer.type not in ('Eltwise',) and len(ins) != 1:
                raise field_error(layer, 'bottom', f'{len(ins)} given; one expected')
            if layer.type == 'Eltwise' and len(set(ins)) != 1:
                raise field_error(layer, 'bottom', f'bottoms of {ins} channels')
            if layer.type == 'Split' and len(layer.top) < 1:
                raise field_error(layer, 'top', 'none given')
            if layer.type != 'Split' and len(layer.top) != 1:
                raise field_error(layer, 'top', f'{len(layer.top)} given; one expected')
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
