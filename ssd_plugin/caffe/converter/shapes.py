"""Feature-map sizes by Caffe's arithmetic, and the memory a conversion needs, before building.

:func:`spatial_sizes` follows the ``(H, W)`` of every blob through the :class:`CaffeNet` layer
dicts as Caffe computes them (convolutions round down, pooling rounds up), refusing a window
that does not fit its input. :func:`conversion_estimate` adds up parameters and activations
from those sizes, so a net too large for the machine is refused (:func:`check_memory`) before
a tensor is allocated.
"""

import math
from typing import Dict, NamedTuple, Sequence, Tuple

from .errors import CaffeFormatError

__all__ = ['MemoryEstimate', 'check_memory', 'conversion_estimate', 'spatial_sizes']

HW = Tuple[int, int]

# float32 copies of the weights alive at once while converting: the caffemodel's message and
# its arrays, the state dict, the generic detector and (VGG16 nets) the mapped one.
WEIGHT_COPIES = 5
# the backbone is run (VGG16 nets: both versions, for the equivalence check) keeping every blob
ACTIVATION_COPIES = 2


def _layer_error(spec: dict, field: str, problem: str) -> CaffeFormatError:
    return CaffeFormatError(problem, layer=spec['name'], layer_type=spec['type'], field=field)


def _conv_hw(spec: dict, hw: HW) -> HW:
    out = []
    for size, k, s, p, d in zip(
        hw, spec['kernel_size'], spec['stride'], spec['padding'], spec['dilation']
    ):
        extent = d * (k - 1) + 1
        if extent > size + 2 * p:
            raise _layer_error(
                spec,
                'convolution_param.kernel_size' if d == 1 else 'convolution_param.dilation',
                f'the kernel spans {extent} pixels (kernel {k}, dilation {d}), more than its '
                f'{size}-pixel input padded by {p} on each side',
            )
        out.append((size + 2 * p - extent) // s + 1)
    return out[0], out[1]


def _pool_hw(spec: dict, hw: HW) -> HW:
    if spec['global_pooling']:
        return 1, 1
    out = []
    for size, k, s, p in zip(hw, spec['kernel_size'], spec['stride'], spec['padding']):
        if k > size + 2 * p:
            raise _layer_error(
                spec,
                'pooling_param.kernel_size',
                f'{k} is larger than its {size}-pixel input padded by {p} on each side',
            )
        n = -(-(size + 2 * p - k) // s) + 1  # Caffe rounds up
        if p and (n - 1) * s >= size + p:  # the last window would start in the padding
            n -= 1
        out.append(n)
    return out[0], out[1]


def spatial_sizes(layers: Sequence[dict], input_blob: str, input_hw: HW) -> Dict[str, HW]:
    """``(H, W)`` of every blob the layer dicts compute, by Caffe's arithmetic.

    Raises:
        CaffeFormatError: A convolution or pooling window larger than its padded input, or
            Concat / Eltwise bottoms of different sizes (naming the layer and the field).
    """
    sizes = {input_blob: (int(input_hw[0]), int(input_hw[1]))}
    for spec in layers:
        ins = [sizes[b] for b in spec['bottom']]
        if spec['type'] in ('Concat', 'Eltwise') and len(set(ins)) != 1:
            raise _layer_error(spec, 'bottom', f'maps of different sizes {ins}')
        if spec['type'] == 'Convolution':
            out = _conv_hw(spec, ins[0])
        elif spec['type'] == 'Pooling':
            out = _pool_hw(spec, ins[0])
        else:
            out = ins[0]
        for top in spec['top']:
            sizes[top] = out
    return sizes


class MemoryEstimate(NamedTuple):
    """What converting a net needs: parameters, activation values, bytes in all."""

    parameters: int
    activations: int
    caffemodel_bytes: int

    @property
    def bytes(self) -> int:
        """float32 weights and activations in their copies, plus the caffemodel's bytes."""
        weights = 4 * WEIGHT_COPIES * self.parameters
        return weights + 4 * ACTIVATION_COPIES * self.activations + self.caffemodel_bytes

    def describe(self) -> str:
        return (
            f'about {self.bytes / 2**30:.3g} GiB ({self.parameters:,} parameters, '
            f'{self.activations:,} activation values for one image, a '
            f'{self.caffemodel_bytes / 2**20:.3g} MiB caffemodel)'
        )


def _conv_parameters(spec: dict) -> int:
    kh, kw = spec['kernel_size']
    weight = spec['out_channels'] * (spec['in_channels'] // spec['groups']) * kh * kw
    return weight + (spec['out_channels'] if spec['bias'] else 0)


def _parameters(spec: dict) -> int:
    """Values of a layer's weights and statistics (what its caffemodel blobs hold)."""
    kind = spec['type']
    if kind == 'Convolution':
        return _conv_parameters(spec)
    if kind == 'BatchNorm':
        return 2 * spec['channels']  # mean and variance (the scale factor folds into them)
    if kind == 'Scale':
        return spec['channels'] * (2 if spec['bias'] else 1)
    if kind == 'Normalize':
        return 1 if spec['channel_shared'] else spec['channels']
    return 0


def conversion_estimate(
    layers: Sequence[dict],
    channels: Dict[str, int],
    sizes: Dict[str, HW],
    head_convs: Sequence[Tuple[dict, HW]],
    caffemodel_bytes: int,
) -> MemoryEstimate:
    """Parameters and activation values of the converted net (Python integers: no overflow).

    Args:
        layers: The backbone's layer dicts.
        channels: Channels of every blob.
        sizes: ``(H, W)`` of every blob (:func:`spatial_sizes`).
        head_convs: ``(conv_options, feature-map size)`` of every head predictor.
        caffemodel_bytes: Size of the caffemodel file.
    """
    parameters = sum(_parameters(spec) for spec in layers)
    blobs = {top for spec in layers for top in spec['top']}  # an in-place layer reuses its blob
    activations = sum(channels[b] * math.prod(sizes[b]) for b in blobs)
    for conv, hw in head_convs:
        parameters += _conv_parameters(conv)
        activations += conv['out_channels'] * math.prod(hw)
    return MemoryEstimate(parameters, activations, int(caffemodel_bytes))


def check_memory(estimate: MemoryEstimate, limit_gib: float, source: str) -> None:
    """Refuse a conversion whose estimate is above ``limit_gib``, before anything is built.

    Raises:
        CaffeFormatError: Naming the file, the estimate and the flag that raises the limit.
    """
    if estimate.bytes > limit_gib * 2**30:
        need = math.ceil(estimate.bytes / 2**30 * 1.25)
        raise CaffeFormatError(
            f'converting this net needs {estimate.describe()}, above the limit of '
            f'{limit_gib:g} GiB; if the machine has the memory, raise the limit '
            f'(max_memory_gib={need}; the converter tool: --max-memory-gib {need})',
            file=source,
        )
