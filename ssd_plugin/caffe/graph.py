"""A Caffe SSD deploy net split into input, backbone layers, per-level heads and DetectionOutput.

SSD's deploy nets end the same way (weiliu89's ``ssd_pascal.py`` writes them): per level an
``mbox_loc`` and an ``mbox_conf`` convolution and a ``PriorBox`` on the same feature map, each
``Permute(0, 2, 3, 1)`` + ``Flatten`` + ``Concat`` into ``mbox_loc``/``mbox_conf``/
``mbox_priorbox``, the confidences through ``Reshape`` + ``Softmax`` + ``Flatten``, and
``DetectionOutput`` on the three. :func:`parse_net` follows ``DetectionOutput``'s bottoms back to
those layers, checks that the three concatenations list the same feature maps in the same order,
and keeps as backbone the layers the feature maps depend on.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .caffe_net import SUPPORTED_LAYERS
from .proto import CaffeFormatError

__all__ = ['HeadLevel', 'NetSpec', 'parse_net', 'backbone_layers']

# Layers between the head convolutions / PriorBoxes and DetectionOutput, and the data layers.
_HEAD_PLUMBING = ('Permute', 'Flatten', 'Reshape', 'Softmax', 'Concat')
_INPUT_TYPES = ('Input', 'Data', 'AnnotatedData', 'DummyData')


@dataclass
class HeadLevel:
    """One SSD level: the feature blob and the layers reading it."""

    feature: str
    loc: object  # LayerParameter of the mbox_loc convolution
    conf: object  # LayerParameter of the mbox_conf convolution
    prior_box: object  # LayerParameter of the PriorBox


@dataclass
class NetSpec:
    """What the converter needs from a deploy prototxt."""

    name: str
    input_blob: str
    input_shape: Tuple[int, int, int]  # (C, H, W)
    backbone: List[object]  # LayerParameters, execution order
    levels: List[HeadLevel]
    detection_output: object  # LayerParameter
    softmax: bool = True
    notes: List[str] = field(default_factory=list)


def _in_test_phase(layer) -> bool:
    """Caffe's NetStateRule check for the TEST phase (deploy), phases only."""
    test = 1
    if layer.include:
        return any(not r.HasField('phase') or r.phase == test for r in layer.include)
    return not any(r.HasField('phase') and r.phase == test for r in layer.exclude)


def _input(net, layers, source: str) -> Tuple[str, Tuple[int, int, int]]:
    if net.input:
        if len(net.input) != 1:
            raise CaffeFormatError(f'{source}: one network input expected, got {list(net.input)}')
        if net.input_shape:
            dims = list(net.input_shape[0].dim)
        else:
            dims = list(net.input_dim[:4])
        name = net.input[0]
    else:
        inputs = [layer for layer in layers if layer.type == 'Input']
        if len(inputs) != 1 or len(inputs[0].top) != 1 or not inputs[0].input_param.shape:
            raise CaffeFormatError(
                f'{source}: no input size: give the net one input (`input` + `input_shape`, or '
                'one `Input` layer with input_param { shape { dim: 1 dim: 3 dim: H dim: W } })'
            )
        name, dims = inputs[0].top[0], list(inputs[0].input_param.shape[0].dim)
    if len(dims) != 4 or min(dims) <= 0:
        raise CaffeFormatError(f'{source}: input {name!r} needs 4 positive dims, got {dims}')
    return name, (int(dims[1]), int(dims[2]), int(dims[3]))


def parse_net(net, source: str = 'prototxt') -> NetSpec:
    """Split a deploy ``NetParameter`` into a :class:`NetSpec`.

    Raises:
        CaffeFormatError: V1 (``layers``) nets, nets without one ``DetectionOutput``, heads that
            are not SSD's, or a backbone layer of a type :class:`CaffeNet` does not map (naming
            the layer and its type).
    """
    if len(net.layers):
        raise CaffeFormatError(
            f"{source}: an old-format (V1, `layers {{ }}`) net; upgrade it with Caffe's "
            'tools/upgrade_net_proto_text (SSD nets always use `layer { }`)'
        )
    layers = [layer for layer in net.layer if _in_test_phase(layer)]
    input_blob, input_shape = _input(net, layers, source)
    outputs = [i for i, layer in enumerate(layers) if layer.type == 'DetectionOutput']
    if len(outputs) != 1:
        raise CaffeFormatError(
            f'{source}: {len(outputs)} DetectionOutput layers; an SSD deploy net has one'
        )
    det_index = outputs[0]
    det = layers[det_index]
    if len(det.bottom) < 3:
        raise CaffeFormatError(
            f'{source}: DetectionOutput {det.name!r} needs bottoms loc, conf, priors'
        )

    def producer(blob: str, before: int) -> int:
        for j in range(before - 1, -1, -1):
            if blob in layers[j].top:
                return j
        raise CaffeFormatError(f'{source}: blob {blob!r} is produced by no layer')

    softmax_seen = []

    def trace(blob: str, before: int, wanted: str) -> List[Tuple[int, object]]:
        """The ``wanted``-type layers feeding ``blob`` through the head's plumbing, in order."""
        j = producer(blob, before)
        layer = layers[j]
        if layer.type == wanted:
            return [(j, layer)]
        if layer.type not in _HEAD_PLUMBING:
            raise CaffeFormatError(
                f'{source}: layer {layer.name!r} (type {layer.type!r}) sits between the '
                f'{wanted} layers and DetectionOutput; expected only {", ".join(_HEAD_PLUMBING)}'
            )
        _check_plumbing(layer, source)
        if layer.type == 'Softmax':
            softmax_seen.append(layer.name)
        bottoms = layer.bottom if layer.type == 'Concat' else layer.bottom[:1]
        return [hit for b in bottoms for hit in trace(b, j, wanted)]

    locs = trace(det.bottom[0], det_index, 'Convolution')
    if softmax_seen:
        raise CaffeFormatError(f'{source}: a Softmax on the location path ({softmax_seen})')
    confs = trace(det.bottom[1], det_index, 'Convolution')
    if not softmax_seen:
        raise CaffeFormatError(
            f'{source}: DetectionOutput {det.name!r} reads confidences without a Softmax; '
            'SSD deploy nets apply one (the plugin always does)'
        )
    priors = trace(det.bottom[2], det_index, 'PriorBox')
    if not (len(locs) == len(confs) == len(priors)):
        raise CaffeFormatError(
            f'{source}: {len(locs)} location, {len(confs)} confidence and {len(priors)} '
            'PriorBox inputs to DetectionOutput; they must be one per level'
        )
    levels = []
    for (_, loc), (_, conf), (_, prior) in zip(locs, confs, priors):
        feats = {loc.bottom[0], conf.bottom[0], prior.bottom[0]}
        if len(feats) != 1:
            raise CaffeFormatError(
                f'{source}: level of {loc.name!r}/{conf.name!r}/{prior.name!r} reads different '
                f'feature maps {sorted(feats)}; the three concatenations must list the levels '
                'in the same order'
            )
        levels.append(HeadLevel(loc.bottom[0], loc, conf, prior))
    head_names = {layer.name for _, layer in locs + confs}
    last_head = max(i for i, _ in locs + confs)
    backbone = backbone_layers(layers[:last_head], [lv.feature for lv in levels], head_names)
    for i, layer in enumerate(layers[:last_head]):
        for lv, (il, _), (ic, _) in zip(levels, locs, confs):
            if lv.feature in layer.top and min(il, ic) < i and layer.name not in head_names:
                raise CaffeFormatError(
                    f'{source}: layer {layer.name!r} rewrites feature map {lv.feature!r} after a '
                    'head reads it; not supported'
                )
    produced = {input_blob} | {t for layer in backbone for t in layer.top}
    for layer in backbone:
        if layer.type not in SUPPORTED_LAYERS:
            raise CaffeFormatError(
                f'{source}: layer {layer.name!r} has type {layer.type!r}, which the converter '
                f'cannot map (supported: {", ".join(SUPPORTED_LAYERS)})'
            )
        missing = [b for b in layer.bottom if b not in produced]
        if missing:
            raise CaffeFormatError(
                f'{source}: layer {layer.name!r} reads {missing}, which is neither the input '
                f'{input_blob!r} nor computed by a layer'
            )
    return NetSpec(net.name, input_blob, input_shape, backbone, levels, det)


def _check_plumbing(layer, source: str) -> None:
    if layer.type == 'Permute' and list(layer.permute_param.order) not in ([0, 2, 3, 1],):
        raise CaffeFormatError(
            f'{source}: Permute {layer.name!r} has order {list(layer.permute_param.order)}; '
            'SSD heads use 0, 2, 3, 1 (channels last)'
        )
    if layer.type == 'Flatten' and layer.flatten_param.axis != 1:
        raise CaffeFormatError(f'{source}: Flatten {layer.name!r} must flatten from axis 1')
    if layer.type == 'Concat' and layer.concat_param.axis not in (1, 2):
        raise CaffeFormatError(f'{source}: Concat {layer.name!r} on axis {layer.concat_param.axis}')
    if layer.type == 'Softmax' and layer.softmax_param.axis not in (2, -1):
        raise CaffeFormatError(
            f'{source}: Softmax {layer.name!r} on axis {layer.softmax_param.axis}; SSD takes it '
            'over the classes of each default box (axis 2 of [N, P, C])'
        )


def backbone_layers(
    layers: List[object], features: List[str], exclude: Optional[set] = None
) -> List[object]:
    """The layers (in order) that the ``features`` blobs depend on, input and data layers out."""
    exclude = exclude or set()
    needed = set(features)
    kept: Dict[int, object] = {}
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        if layer.name in exclude or layer.type in _INPUT_TYPES or not needed & set(layer.top):
            continue
        kept[i] = layer
        if not set(layer.top) & set(layer.bottom):  # not in place: its outputs start here
            needed -= set(layer.top)
        needed |= set(layer.bottom)
    return [kept[i] for i in sorted(kept)]
