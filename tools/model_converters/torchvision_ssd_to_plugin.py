"""Convert torchvision's SSD300-VGG16 or SSDLite320-MobileNetV3-Large into ssd_plugin's keys.

Usage::

    python tools/model_converters/torchvision_ssd_to_plugin.py ssd300_vgg16_coco-b556d3b4.pth \\
        checkpoints/ssd300_vgg16_torchvision_coco_plugin.pth
    python tools/model_converters/torchvision_ssd_to_plugin.py \\
        ssdlite320_mobilenet_v3_large_coco-a79551df.pth \\
        checkpoints/ssdlite320_mobilenetv3-large_torchvision_coco_plugin.pth

SRC is a state dict of ``torchvision.models.detection.ssd300_vgg16`` or
``ssdlite320_mobilenet_v3_large`` (the model is recognised from its keys); DST has the keys of
``configs/ssd300_vgg16_torchvision_coco.py`` (ReducedVGG16 + SSDExtraLayers + MultiBoxHead) or
``configs/ssdlite320_mobilenetv3-large_torchvision_coco.py`` (MobileNetV3 + depthwise
SSDExtraLayers + depthwise MultiBoxHead). Tensors are copied unchanged except the class
channels (below).

SSD300-VGG16 (``backbone.`` is torchvision's ``SSDFeatureExtractorVGG``):

- ``backbone.features.{i}.*`` (VGG16's layers up to conv4_3) -> ``backbone.conv1_1`` ...
  ``conv4_3`` (``VGG16_SEQUENTIAL_INDICES``); ``backbone.extra.0.{1,3,5}.*`` (after pool4) ->
  ``backbone.conv5_{1,2,3}.*``; ``backbone.extra.0.7.{1,3}.*`` -> ``backbone.fc6/fc7.*``;
- ``backbone.scale_weight`` (conv4_3's L2 normalisation scale) -> ``neck.l2_norms.0.weight``;
- ``backbone.extra.{i}.{0,2}.*`` (i >= 1) -> ``neck.extra_layers.{i-1}.{reduce,conv}.conv.*``;
- ``head.{classification,regression}_head.module_list.{l}.*`` ->
  ``bbox_head.{cls,reg}_convs.{l}.pred.*``.

SSDLite320-MobileNetV3-Large (torchvision's ``SSDLiteFeatureExtractorMobileNet`` splits
MobileNetV3's ``features`` at the C4 block, index ``c4``, into two ``nn.Sequential``):

- ``backbone.features.0.{i}.*`` -> ``backbone.features.{i}.*`` for ``i < c4``;
  ``backbone.features.0.{c4}.*`` (the C4 block's expansion layer) ->
  ``backbone.features.{c4}.block.0.*``; ``backbone.features.1.0.{j}.*`` (the rest of that
  block) -> ``backbone.features.{c4}.block.{j}.*``; ``backbone.features.1.{m}.*`` (m >= 1) ->
  ``backbone.features.{c4 + m}.*``;
- ``backbone.extra.{i}.{0,1,2}.{0,1}.*`` (1x1, depthwise 3x3, 1x1; each conv + BN) ->
  ``neck.extra_layers.{i}.reduce.{conv,bn}.*``,
  ``neck.extra_layers.{i}.conv.{depthwise_conv,pointwise_conv}.{conv,bn}.*``;
- ``head.*_head.module_list.{l}.0.{0,1}.*`` -> ``bbox_head.{cls,reg}_convs.{l}.depthwise.
  {conv,bn}.*``; ``head.*_head.module_list.{l}.1.*`` -> ``bbox_head.{cls,reg}_convs.{l}.pred.*``.

Class channels: torchvision's background is class 0 of its ``K`` outputs per default box,
ssd_plugin's is the last, so each default box's class block is rotated: torchvision channel
``c >= 1`` becomes channel ``c - 1`` and channel 0 becomes channel ``K - 1`` (rows of the
classification convs' weights and biases). For COCO (K = 91: background and category ids
1..90, ten of them unused "N/A" ids) plugin channel ``c - 1`` is category id ``c``; the configs
select mmdet's 80 classes among the 90 with ``class_channels``.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from ssd_plugin_cli.errors import run_tool
from ssd_plugin_cli.options import converter_parser

if TYPE_CHECKING:  # torch is imported after the arguments are parsed (a quick --help)
    from torch import Tensor

__all__ = ['detect_model', 'convert', 'main']

VGG = 'ssd300_vgg16'
SSDLITE = 'ssdlite320_mobilenet_v3_large'

# torchvision's extra.0 starts at VGG16's pool4 (index 23): conv5_x are 1, 3, 5 there.
_POOL4_INDEX = 23
_FC_NAMES = {'1': 'fc6', '3': 'fc7'}
_HEAD_KEY = re.compile(r'head\.(classification|regression)_head\.module_list\.(\d+)\.(.+)')
_BRANCH = {'classification': 'cls', 'regression': 'reg'}

_Rename = Callable[[str], Optional[str]]


@functools.cache
def _vgg_names() -> Dict[int, str]:
    """VGG16's ``features`` index -> ReducedVGG16 layer name (``VGG16_SEQUENTIAL_INDICES``)."""
    from ssd_plugin.models.backbones.reduced_vgg16 import VGG16_SEQUENTIAL_INDICES

    return {index: name for name, index in VGG16_SEQUENTIAL_INDICES.items()}


def detect_model(state_dict: Dict[str, Tensor], source: str = 'the state dict') -> str:
    """``'ssd300_vgg16'`` or ``'ssdlite320_mobilenet_v3_large'``, recognised from the keys.

    Raises:
        KeyError: Neither model's keys, naming ``source``.
    """
    if 'backbone.scale_weight' in state_dict and 'backbone.extra.0.7.1.weight' in state_dict:
        return VGG
    if any(k.startswith('backbone.features.1.0.') for k in state_dict) and any(
        k.startswith('head.classification_head.module_list.0.0.0.') for k in state_dict
    ):
        return SSDLITE
    raise KeyError(
        f'{source} is neither a torchvision ssd300_vgg16 state dict (backbone.scale_weight, '
        f'backbone.extra.0.7.1.weight) nor an ssdlite320_mobilenet_v3_large one '
        f'(backbone.features.1.0.*, head.classification_head.module_list.0.0.0.*); its first '
        f'keys are {list(state_dict)[:5]}'
    )


def _rename_vgg(key: str) -> Optional[str]:
    """Plugin key of an ssd300_vgg16 key (None: not an SSD300-VGG16 key)."""
    if key == 'backbone.scale_weight':
        return 'neck.l2_norms.0.weight'
    vgg_names = _vgg_names()
    m = re.fullmatch(r'backbone\.features\.(\d+)\.(weight|bias)', key)
    if m and int(m.group(1)) in vgg_names:
        return f'backbone.{vgg_names[int(m.group(1))]}.{m.group(2)}'
    m = re.fullmatch(r'backbone\.extra\.0\.(\d+)\.(weight|bias)', key)
    if m and int(m.group(1)) + _POOL4_INDEX in vgg_names:
        return f'backbone.{vgg_names[int(m.group(1)) + _POOL4_INDEX]}.{m.group(2)}'
    m = re.fullmatch(r'backbone\.extra\.0\.7\.([13])\.(weight|bias)', key)
    if m:
        return f'backbone.{_FC_NAMES[m.group(1)]}.{m.group(2)}'
    m = re.fullmatch(r'backbone\.extra\.(\d+)\.([02])\.(weight|bias)', key)
    if m and int(m.group(1)) >= 1:
        part = 'reduce' if m.group(2) == '0' else 'conv'
        return f'neck.extra_layers.{int(m.group(1)) - 1}.{part}.conv.{m.group(3)}'
    m = _HEAD_KEY.fullmatch(key)
    if m and m.group(3) in ('weight', 'bias'):
        return f'bbox_head.{_BRANCH[m.group(1)]}_convs.{m.group(2)}.pred.{m.group(3)}'
    return None


def _ssdlite_renamer(state_dict: Dict[str, Tensor]) -> _Rename:
    """The key renamer of an ssdlite320_mobilenet_v3_large state dict (C4 found in its keys)."""
    first_part = [re.match(r'backbone\.features\.0\.(\d+)\.', k) for k in state_dict]
    c4 = max(int(m.group(1)) for m in first_part if m)
    norm_part = {'0': 'conv', '1': 'bn'}
    extra_part = {'0': 'reduce', '1': 'conv.depthwise_conv', '2': 'conv.pointwise_conv'}

    def rename(key: str) -> Optional[str]:
        m = re.fullmatch(r'backbone\.features\.0\.(\d+)\.(.+)', key)
        if m:
            index, rest = int(m.group(1)), m.group(2)
            return f'backbone.features.{index}.{"block.0." if index == c4 else ""}{rest}'
        m = re.fullmatch(r'backbone\.features\.1\.(\d+)\.(.+)', key)
        if m:
            index, rest = int(m.group(1)), m.group(2)
            return f'backbone.features.{c4 + index}.{"block." if index == 0 else ""}{rest}'
        m = re.fullmatch(r'backbone\.extra\.(\d+)\.([012])\.([01])\.(.+)', key)
        if m:
            level, layer, norm, rest = m.groups()
            return f'neck.extra_layers.{level}.{extra_part[layer]}.{norm_part[norm]}.{rest}'
        m = _HEAD_KEY.fullmatch(key)
        if m:
            branch, level = _BRANCH[m.group(1)], m.group(2)
            depthwise = re.fullmatch(r'0\.([01])\.(.+)', m.group(3))
            if depthwise:
                part = f'depthwise.{norm_part[depthwise.group(1)]}.{depthwise.group(2)}'
                return f'bbox_head.{branch}_convs.{level}.{part}'
            pred = re.fullmatch(r'1\.(weight|bias)', m.group(3))
            if pred:
                return f'bbox_head.{branch}_convs.{level}.pred.{pred.group(1)}'
        return None

    return rename


def _head_levels(state_dict: Dict[str, Tensor], pred: str) -> List[Tuple[str, str]]:
    """``(cls key, reg key)`` prefixes of every head level's prediction conv, in order."""
    levels = {int(m.group(2)) for m in map(_HEAD_KEY.fullmatch, state_dict) if m}
    return [
        (
            f'head.classification_head.module_list.{level}.{pred}',
            f'head.regression_head.module_list.{level}.{pred}',
        )
        for level in range(max(levels, default=-1) + 1)
    ]


def _background_last(state_dict: Dict[str, Tensor], pred: str, source: str) -> Dict[str, Tensor]:
    """Classification weights and biases with each default box's background channel moved last.

    The conv's output channel ``a * K + c`` is default box ``a``'s class ``c`` (torchvision's
    ``SSDScoringHead`` views ``(N, A * K, H, W)`` as ``(N, A, K, H, W)``); the blocks of ``K``
    rows are rotated by one, ``[1, ..., K - 1, 0]``.
    """
    rotated = {}
    levels = _head_levels(state_dict, pred)
    if not levels:
        raise KeyError(f'{source}: no head.classification_head.module_list.* keys')
    for cls_prefix, reg_prefix in levels:
        keys = [f'{p}{param}' for p in (cls_prefix, reg_prefix) for param in ('weight', 'bias')]
        missing = [k for k in keys if k not in state_dict]
        if missing:
            raise KeyError(f'{source}: incomplete torchvision SSD head, missing {missing}')
        num_boxes = state_dict[f'{reg_prefix}weight'].shape[0] // 4
        for param in ('weight', 'bias'):
            value = state_dict[f'{cls_prefix}{param}']
            blocks = value.reshape(num_boxes, -1, *value.shape[1:])
            rotated[f'{cls_prefix}{param}'] = blocks.roll(-1, dims=1).reshape(value.shape)
    return rotated


def convert(state_dict: Dict[str, Tensor], source: str = 'the state dict') -> Dict[str, Tensor]:
    """Rename a torchvision SSD state dict to ssd_plugin's keys, background moved last.

    Args:
        state_dict: ``ssd300_vgg16().state_dict()`` or
            ``ssdlite320_mobilenet_v3_large().state_dict()`` (any number of classes).
        source: Name of its file, for error messages.

    Returns:
        The converted state dict, in the source's order.

    Raises:
        KeyError: Not one of the two models, or keys that are not that model's (all named,
            with ``source``).
    """
    model = detect_model(state_dict, source)
    rename = _rename_vgg if model == VGG else _ssdlite_renamer(state_dict)
    pred = '' if model == VGG else '1.'
    values = {**state_dict, **_background_last(state_dict, pred, source)}
    converted, unexpected = OrderedDict(), []
    for key in state_dict:
        new_key = rename(key)
        if new_key is None:
            unexpected.append(key)
        else:
            converted[new_key] = values[key]
    if unexpected:
        raise KeyError(
            f'{source}: {len(unexpected)} keys are not torchvision {model} keys: '
            f'{unexpected[:20]}{" ..." if len(unexpected) > 20 else ""}'
        )
    if model == VGG:
        needed = [
            f'backbone.{name}.{p}' for name in _vgg_names().values() for p in ('weight', 'bias')
        ]
        missing = [k for k in needed if k not in converted]
        if missing:
            raise KeyError(f'{source}: incomplete torchvision {model} backbone, missing {missing}')
    return converted


def main(argv=None) -> None:
    args = converter_parser(
        __doc__.splitlines()[0],
        src_help='torchvision ssd300_vgg16 / ssdlite320_mobilenet_v3_large .pth',
        dst_help='output checkpoint for the *_torchvision_coco.py configs',
    ).parse_args(argv)
    from ssd_plugin.cli.checkpoint_conversion import converter_main

    converter_main(
        convert,
        args,
        describe=lambda state_dict, src: f'torchvision {detect_model(state_dict, src)}',
    )


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
