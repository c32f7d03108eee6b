"""A Caffe SSD deploy net split into input, backbone layers, per-level heads and DetectionOutput.

SSD's deploy nets end the same way (weiliu89's ``ssd_pascal.py`` writes them): per level an
``mbox_loc`` and an ``mbox_conf`` convolution and a ``PriorBox`` on the same feature map, each
``Permute(0, 2, 3, 1)`` + ``Flatten`` + ``Concat`` into ``mbox_loc``/``mbox_conf``/
``mbox_priorbox``, the confidences through ``Reshape`` + ``Softmax`` + ``Flatten``, and
``DetectionOutput`` on the three. :func:`parse_net` follows ``DetectionOutput``'s bottoms back to
those layers, checks that the three concatenations list the same feature maps in the same order,
and keeps as backbone the layers the feature maps depend on.
"""

import bisect
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..caffe_net import SUPPORTED_LAYERS, module_key
from .errors import CaffeFormatError, field_error

__all__ = ['HeadLevel', 'NetSpec', 'backbone_layers', 'check_topology', 'parse_net']

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
        raise CaffeFormatError(
            f'{source}: input {name!r}: its shape (dim) needs 4 positive values, got {dims}'
        )
    return name, (int(dims[1]), int(dims[2]), int(dims[3]))


def check_topology(net, layers: Sequence[object], source: str) -> None:
    """Caffe's own rules for the layer graph, checked before anything is built.

    Layers run in file order, so a layer may read only the net's inputs and blobs that an
    earlier layer writes: this also rules out cycles. Layer names must be unique (Caffe matches
    the caffemodel's blobs by name), also after :func:`module_key` (state-dict keys).

    Raises:
        CaffeFormatError: Naming the layer and the field (``bottom`` or ``name``).
    """
    known = set(net.input)
    seen: Dict[str, str] = {}
    for layer in layers:
        if not layer.name:
            raise CaffeFormatError(f'{source}: a layer of type {layer.type!r} has no name')
        key = module_key(layer.name)
        if key in seen:
            problem = (
                'the name is used twice in the TEST phase'
                if seen[key] == layer.name
                else f'maps to the same module name {key!r} as layer {seen[key]!r}'
            )
            raise field_error(layer, 'name', problem)
        seen[key] = layer.name
        missing = [b for b in layer.bottom if b not in known]
        if missing:
            raise field_error(
                layer,
                'bottom',
                f'reads {missing}, which no earlier layer writes and which is not a net input '
                '(Caffe runs layers in file order: a cycle, a misspelt blob or a layer out of '
                'order)',
            )
        known.update(layer.top)


def parse_net(net, source: str = 'prototxt') -> NetSpec:
    """Split a deploy ``NetParameter`` into a :class:`NetSpec`.

    Raises:
        CaffeFormatError: V1 (``layers``) nets, a layer graph Caffe would refuse
            (:func:`check_topology`), nets without one ``DetectionOutput``, heads that are not
            SSD's, or a backbone layer of a type :class:`CaffeNet` does not map (naming the
            layer and its type).
    """
    if len(net.layers):
        raise CaffeFormatError(
            f"{source}: an old-format (V1, `layers {{ }}`) net; upgrade it with Caffe's "
            'tools/upgrade_net_proto_text (SSD nets always use `layer { }`)'
        )
    layers = [layer for layer in net.layer if _in_test_phase(layer)]
    check_topology(net, layers, source)
    input_blob, input_shape = _input(net, layers, source)
    outputs = [i for i, layer in enumerate(layers) if layer.type == 'DetectionOutput']
    if len(outputs) != 1:
        raise CaffeFormatError(
            f'{source}: {len(outputs)} DetectionOutput layers; an SSD deploy net has one'
        )
    det_index = outputs[0]
    locs, confs, priors = _HeadTracer(layers, source).heads(det_index)
    levels = _levels(locs, confs, priors, source)
    head_names = {layer.name for _, layer in locs + confs}
    last_head = max(i for i, _ in locs + confs)
    backbone = backbone_layers(layers[:last_head], [lv.feature for lv in levels], head_names)
    _check_features_kept(layers[:last_head], levels, locs, confs, head_names, source)
    _check_backbone(backbone, input_blob, source)
    return NetSpec(net.name, input_blob, input_shape, backbone, levels, layers[det_index])


class _HeadTracer:
    """Follows DetectionOutput's bottoms back through the head's plumbing to the predictors."""

    def __init__(self, layers: Sequence[object], source: str) -> None:
        self.layers, self.source = layers, source
        self.softmax_seen: List[str] = []
        self.writers: Dict[str, List[int]] = {}  # blob -> indices of the layers writing it
        for i, layer in enumerate(layers):
            for top in layer.top:
                self.writers.setdefault(top, []).append(i)

    def producer(self, blob: str, before: int) -> int:
        """The last layer before ``before`` that writes ``blob``."""
        writers = self.writers.get(blob, [])
        k = bisect.bisect_left(writers, before)
        if k == 0:
            raise CaffeFormatError(f'{self.source}: blob {blob!r} is produced by no layer')
        return writers[k - 1]

    def trace(self, blob: str, before: int, wanted: str) -> List[Tuple[int, object]]:
        """The ``wanted``-type layers feeding ``blob`` through the head's plumbing, in order.

        Iterative (a stack, not recursion): a net of any depth is followed to the end.
        """
        found, stack, visited = [], [(blob, before)], set()
        while stack:
            blob, before = stack.pop()
            j = self.producer(blob, before)
            layer = self.layers[j]
            if j in visited:  # each predictor feeds DetectionOutput once
                raise field_error(layer, 'top', 'reaches DetectionOutput by two paths')
            visited.add(j)
            if layer.type == wanted:
                found.append((j, layer))
                continue
            if layer.type not in _HEAD_PLUMBING:
                raise CaffeFormatError(
                    f'{self.source}: layer {layer.name!r} (type {layer.type!r}) sits between the '
                    f'{wanted} layers and DetectionOutput; expected only '
                    f'{", ".join(_HEAD_PLUMBING)}'
                )
            _check_plumbing(layer, self.source)
            if layer.type == 'Softmax':
                self.softmax_seen.append(layer.name)
            bottoms = layer.bottom if layer.type == 'Concat' else layer.bottom[:1]
            stack.extend((b, j) for b in reversed(bottoms))
        return found

    def heads(self, det_index: int) -> Tuple[list, list, list]:
        """``(locs, confs, priors)``: ``(index, layer)`` per level, in DetectionOutput's order."""
        det, source = self.layers[det_index], self.source
        if len(det.bottom) < 3:
            raise field_error(det, 'bottom', 'needs three: loc, conf, priors')
        locs = self.trace(det.bottom[0], det_index, 'Convolution')
        if self.softmax_seen:
            raise CaffeFormatError(
                f'{source}: a Softmax on the location path ({self.softmax_seen})'
            )
        confs = self.trace(det.bottom[1], det_index, 'Convolution')
        if not self.softmax_seen:
            raise CaffeFormatError(
                f'{source}: DetectionOutput {det.name!r} reads confidences without a Softmax; '
                'SSD deploy nets apply one (the plugin always does)'
            )
        priors = self.trace(det.bottom[2], det_index, 'PriorBox')
        return locs, confs, priors


def _levels(locs: list, confs: list, priors: list, source: str) -> List[HeadLevel]:
    if not (len(locs) == len(confs) == len(priors)):
        raise CaffeFormatError(
            f'{source}: {len(locs)} location, {len(confs)} confidence and {len(priors)} '
            'PriorBox inputs to DetectionOutput; they must be one per level'
        )
    levels = []
    for (_, loc), (_, conf), (_, prior) in zip(locs, confs, priors):
        for layer in (loc, conf, prior):
            if not layer.bottom:
                raise field_error(layer, 'bottom', 'missing: the layer reads no feature map')
        feats = {loc.bottom[0], conf.bottom[0], prior.bottom[0]}
        if len(feats) != 1:
            raise CaffeFormatError(
                f'{source}: level of {loc.name!r}/{conf.name!r}/{prior.name!r} reads different '
                f'feature maps {sorted(feats)}; the three concatenations must list the levels '
                'in the same order'
            )
        levels.append(HeadLevel(loc.bottom[0], loc, conf, prior))
    return levels


def _check_features_kept(layers, levels, locs, confs, head_names, source: str) -> None:
    """No layer may rewrite a feature map after a head read it (the plugin reads it once)."""
    first_read = {}
    for lv, (il, _), (ic, _) in zip(levels, locs, confs):
        first_read[lv.feature] = min(il, ic, first_read.get(lv.feature, il))
    for i, layer in enumerate(layers):
        for top in layer.top:
            if top in first_read and first_read[top] < i and layer.name not in head_names:
                raise CaffeFormatError(
                    f'{source}: layer {layer.name!r} rewrites feature map {top!r} after a '
                    'head reads it; not supported'
                )


def _check_backbone(backbone: Sequence[object], input_blob: str, source: str) -> None:
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


def _check_plumbing(layer, source: str) -> None:
    if layer.type == 'Permute' and list(layer.permute_param.order) not in ([0, 2, 3, 1],):
        raise field_error(
            layer,
            'permute_param.order',
            f'{list(layer.permute_param.order)}; SSD heads use 0, 2, 3, 1 (channels last)',
        )
    if layer.type == 'Flatten' and layer.flatten_param.axis != 1:
        raise field_error(layer, 'flatten_param.axis', 'must flatten from axis 1')
    if layer.type == 'Concat' and layer.concat_param.axis not in (1, 2):
        raise field_error(layer, 'concat_param.axis', f'{layer.concat_param.axis} (1 or 2 only)')
    if layer.type == 'Softmax' and layer.softmax_param.axis not in (2, -1):
        raise field_error(
            layer,
            'softmax_param.axis',
            f'{layer.softmax_param.axis}; SSD takes it over the classes of each default box '
            '(axis 2 of [N, P, C])',
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
