"""Convert an mmdet 3.x SSD / SSDLite checkpoint into ssd_plugin's key layout.

Usage::

    python tools/model_converters/mmdet_ssd_to_plugin.py ssd300_coco_20210803_015428-d231a06e.pth \\
        checkpoints/ssd300_coco_plugin.pth

SRC is an mmengine checkpoint (``state_dict`` inside, ``meta`` kept) or a bare state dict of
mmdet's ``SSDVGG`` (or any other backbone, e.g. SSDLite's ``MobileNetV2``) + ``SSDNeck`` +
``SSDHead``; DST is saved the same way with the keys of ``ReducedVGG16`` + ``SSDExtraLayers`` +
``MultiBoxHead``. Tensors are copied unchanged (same channel order, background last):

- ``backbone.features.{i}.*`` -> ``backbone.{conv1_1..fc7}.*`` (``VGG16_SEQUENTIAL_INDICES``);
  other backbone keys (SSDLite's MobileNetV2) stay as they are;
- ``neck.l2_norm.weight`` -> ``neck.l2_norms.0.weight``;
- ``neck.extra_layers.{i}.0.*`` / ``.1.*`` -> ``neck.extra_layers.{i}.reduce.*`` / ``.conv.*``;
- ``bbox_head.{cls,reg}_convs.{l}.0.*`` -> ``bbox_head.{cls,reg}_convs.{l}.pred.*``; for
  SSDLite's depthwise head ``.{l}.0.*`` -> ``.{l}.depthwise.*`` and ``.{l}.1.*`` -> ``.{l}.pred.*``.

Checkpoints from mmdet < 2.14 use older SSD keys: upgrade them first with mmdet's
``tools/model_converters/upgrade_ssd_version.py``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Dict, List

from ssd_plugin_cli.errors import run_tool
from ssd_plugin_cli.options import converter_parser

if TYPE_CHECKING:  # torch is imported after the arguments are parsed (a quick --help)
    from torch import Tensor

__all__ = ['convert', 'main']

_VGG_KEY = re.compile(r'backbone\.features\.(\d+)\.(weight|bias)')
_EXTRA_KEY = re.compile(r'neck\.extra_layers\.(\d+)\.([01])\.(.+)')
_HEAD_KEY = re.compile(r'bbox_head\.(cls|reg)_convs\.(\d+)\.([01])\.(.+)')


def _vgg_names() -> Dict[int, str]:
    """VGG16's ``features`` index -> ReducedVGG16 layer name (``VGG16_SEQUENTIAL_INDICES``)."""
    from ssd_plugin.models.backbones.reduced_vgg16 import VGG16_SEQUENTIAL_INDICES

    return {index: name for name, index in VGG16_SEQUENTIAL_INDICES.items()}


def _missing_keys(state_dict: Dict[str, Tensor], depthwise: bool) -> List[str]:
    """Keys (or key prefixes ending in '.') an SSD checkpoint of this shape needs but lacks."""
    required = []
    if any(_VGG_KEY.fullmatch(k) for k in state_dict):
        required += [
            f'backbone.features.{i}.{p}' for i in sorted(_vgg_names()) for p in ('weight', 'bias')
        ]
    extra_levels = {int(m.group(1)) for m in map(_EXTRA_KEY.fullmatch, state_dict) if m}
    for i in range(max(extra_levels, default=-1) + 1):
        required += [f'neck.extra_layers.{i}.0.conv.weight', f'neck.extra_layers.{i}.1.']
    head_levels = {int(m.group(2)) for m in map(_HEAD_KEY.fullmatch, state_dict) if m}
    pred = 1 if depthwise else 0
    for level in range(max(head_levels, default=-1) + 1):
        for branch in ('cls', 'reg'):
            required += [f'bbox_head.{branch}_convs.{level}.{pred}.{p}' for p in ('weight', 'bias')]
            if depthwise:
                required.append(f'bbox_head.{branch}_convs.{level}.0.conv.weight')
    if not head_levels:
        required.append('bbox_head.cls_convs.0.0.weight')
    prefixes = {k[: i + 1] for k in state_dict for i, char in enumerate(k) if char == '.'}
    return [k for k in required if k not in state_dict and k not in prefixes]


def convert(state_dict: Dict[str, Tensor], source: str = 'the state dict') -> Dict[str, Tensor]:
    """Rename an mmdet SSD/SSDLite state dict to ssd_plugin's keys (tensors shared, not copied).

    Args:
        state_dict: mmdet ``SingleStageDetector`` state dict (``backbone.``/``neck.``/
            ``bbox_head.`` prefixes).
        source: Name of its file, for error messages.

    Returns:
        The renamed state dict, in the same order.

    Raises:
        KeyError: Keys that are not mmdet SSD keys, or keys an SSD checkpoint needs, naming
            them and ``source``.
    """
    depthwise = any(m and m.group(3) == '1' for m in (_HEAD_KEY.fullmatch(k) for k in state_dict))
    vgg_names = _vgg_names()
    converted, unexpected = OrderedDict(), []
    for key, value in state_dict.items():
        vgg, extra, head = (
            _VGG_KEY.fullmatch(key),
            _EXTRA_KEY.fullmatch(key),
            _HEAD_KEY.fullmatch(key),
        )
        if vgg and int(vgg.group(1)) in vgg_names:
            new_key = f'backbone.{vgg_names[int(vgg.group(1))]}.{vgg.group(2)}'
        elif key.startswith('backbone.') and not key.startswith('backbone.features.'):
            new_key = key
        elif key == 'neck.l2_norm.weight':
            new_key = 'neck.l2_norms.0.weight'
        elif extra:
            part = 'reduce' if extra.group(2) == '0' else 'conv'
            new_key = f'neck.extra_layers.{extra.group(1)}.{part}.{extra.group(3)}'
        elif head:
            branch, level, index, rest = head.groups()
            part = 'depthwise' if depthwise and index == '0' else 'pred'
            new_key = f'bbox_head.{branch}_convs.{level}.{part}.{rest}'
        else:
            unexpected.append(key)
            continue
        converted[new_key] = value
    if unexpected:
        raise KeyError(
            f'{source}: {len(unexpected)} keys are not mmdet SSDVGG/SSDNeck/SSDHead keys: '
            f'{unexpected[:20]}{" ..." if len(unexpected) > 20 else ""} (a checkpoint from '
            "mmdet < 2.14 needs mmdet's tools/model_converters/upgrade_ssd_version.py first)"
        )
    missing = _missing_keys(state_dict, depthwise)
    if missing:
        raise KeyError(f'{source}: not a complete mmdet SSD checkpoint, missing keys {missing}')
    return converted


def main(argv=None) -> None:
    args = converter_parser(
        __doc__.splitlines()[0],
        src_help='mmdet SSD checkpoint (.pth)',
        dst_help='output checkpoint for ssd_plugin configs',
    ).parse_args(argv)
    from ssd_plugin.cli.checkpoint_conversion import converter_main

    converter_main(convert, args)


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
