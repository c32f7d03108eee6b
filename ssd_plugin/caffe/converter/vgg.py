"""weiliu89's VGG16 SSD300/512 nets onto ``ReducedVGG16`` + ``SSDExtraLayers`` + ``MultiBoxHead``.

weiliu89's ``ssd_pascal.py``/``ssd_coco.py`` build the nets from ``VGG_ILSVRC_16_layers_fc_reduced``
(layers ``conv1_1`` ... ``fc7``, the names ``ReducedVGG16`` uses), ``conv4_3_norm`` and the
extra layers ``conv6_1``/``conv6_2`` ... . Such a net converts onto the plugin's own components,
so its checkpoint loads into the shipped ``ssd300_vgg16_*``/``ssd512_vgg16_*`` configs with only
the class count and preprocessing changed. The mapping is used only if the plugin's modules
compute the same feature maps as the prototxt's layers (checked on a random input); any other
net keeps the generic :class:`~.caffe_net.CaffeNet`.
"""

import copy
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.registry import MODELS
from torch import Tensor

from ssd_plugin.models.backbones.reduced_vgg16 import VGG16_SEQUENTIAL_INDICES

from ..caffe_net import module_key

__all__ = ['to_reduced_vgg']

_VGG_CONVS = tuple(VGG16_SEQUENTIAL_INDICES)  # conv1_1 ... fc7


def _extra_convs(convs: Dict[str, dict], features: List[str]) -> Optional[List[Tuple[dict, dict]]]:
    """``(convN_1, convN_2)`` dicts of each extra level, if the features are conv6_2, conv7_2..."""
    pairs = []
    for i, feature in enumerate(features):
        reduce, conv = convs.get(f'conv{6 + i}_1'), convs.get(f'conv{6 + i}_2')
        if feature != f'conv{6 + i}_2' or reduce is None or conv is None:
            return None
        if (
            reduce['kernel_size'] != [1, 1]
            or reduce['stride'] != [1, 1]
            or reduce['padding'] != [0, 0]
        ):
            return None
        pairs.append((reduce, conv))
    return pairs


def _vgg_layout(model: dict, layers: List[dict]) -> Optional[Tuple[dict, List[Tuple[dict, dict]]]]:
    """``(conv4_3 Normalize, extra (reduce, conv) pairs)`` if the net is laid out as VGG16 SSD."""
    backbone, head = model['backbone'], model['bbox_head']
    convs = {d['name']: d for d in layers if d['type'] == 'Convolution'}
    norms = [d for d in layers if d['type'] == 'Normalize']
    features = backbone['out_blobs']
    if not set(_VGG_CONVS) <= set(convs) or len(norms) != 1 or len(features) < 3:
        return None
    norm = norms[0]
    if norm['bottom'] != ['conv4_3'] or features[:2] != [norm['top'][0], 'fc7']:
        return None
    pairs = _extra_convs(convs, features[2:])
    if pairs is None or set(head['kernel_sizes']) != {3} or set(head['paddings']) != {1}:
        return None
    if len(convs) != len(_VGG_CONVS) + 2 * len(pairs):
        return None  # other convolutions than VGG's and the extras'
    return norm, pairs


def _vgg_model(model: dict, norm: dict, pairs: List[Tuple[dict, dict]]) -> dict:
    """The model config on ReducedVGG16 + SSDExtraLayers + MultiBoxHead."""
    head = model['bbox_head']
    neck = dict(
        type='SSDExtraLayers',
        in_channels=(512, 1024),
        out_channels=tuple(head['in_channels']),
        strides=tuple(c['stride'][0] for _, c in pairs),
        paddings=tuple(c['padding'][0] for _, c in pairs),
        kernel_sizes=tuple(c['kernel_size'][0] for _, c in pairs),
        l2_norm_levels=(0,),
        l2_norm_scale=20.0,
        l2_norm_cfg=dict(
            eps=norm['eps'],
            across_spatial=norm['across_spatial'],
            channel_shared=norm['channel_shared'],
            eps_under_sqrt=True,
        ),
    )
    bbox_head = {
        k: v for k, v in head.items() if k not in ('kernel_sizes', 'paddings', 'featmap_sizes')
    }
    bbox_head['type'] = 'MultiBoxHead'
    vgg_model = copy.deepcopy(model)
    vgg_model.update(
        backbone=dict(type='ReducedVGG16', out_indices=('conv4_3', 'fc7'), init_cfg=None),
        neck=neck,
        bbox_head=bbox_head,
    )
    return vgg_model


def _vgg_state(
    state: Dict[str, Tensor], norm: dict, pairs: List[Tuple[dict, dict]]
) -> Optional[Dict[str, Tensor]]:
    """The state dict under the VGG modules' keys; None if a backbone weight has no place."""
    renames = {f'backbone.layers.{name}.': f'backbone.{name}.' for name in _VGG_CONVS}
    renames[f'backbone.layers.{module_key(norm["name"])}.'] = 'neck.l2_norms.0.'
    for i, (reduce, conv) in enumerate(pairs):
        renames[f'backbone.layers.{module_key(reduce["name"])}.'] = (
            f'neck.extra_layers.{i}.reduce.conv.'
        )
        renames[f'backbone.layers.{module_key(conv["name"])}.'] = (
            f'neck.extra_layers.{i}.conv.conv.'
        )
    vgg_state = {}
    for key, value in state.items():
        prefix = next((p for p in renames if key.startswith(p)), None)
        if prefix is None and key.startswith('backbone.'):
            return None  # a backbone layer with weights the VGG modules do not have
        vgg_state[renames[prefix] + key[len(prefix) :] if prefix else key] = value
    return vgg_state


def _same_features(generic, detector) -> bool:
    """Whether both compute the same feature maps on a random input of the net's size."""
    c, h, w = 3, *detector.bbox_head.prior_generator.input_size
    x = torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(0)) * 50
    with torch.no_grad():
        want = generic.backbone(x)
        got = detector.neck(detector.backbone(x))
    return len(got) == len(want) and all(
        g.shape == v.shape and torch.allclose(g, v, rtol=1e-3, atol=1e-3 * v.abs().max().item())
        for g, v in zip(got, want)
    )


def to_reduced_vgg(
    model: dict, layers: List[dict], state: Dict[str, Tensor], notes: List[str], generic=None
) -> Optional[Tuple[dict, Dict[str, Tensor]]]:
    """The plugin-component model config and state dict of a VGG16 SSD net, or None.

    Args:
        model: The generic converted model config (``CaffeNet`` + ``CaffeMultiBoxHead``).
        layers: Its ``CaffeNet`` layer dicts.
        state: Its state dict (Caffe weights).
        notes: Receives why the mapping was not used, if the net looked like VGG16 SSD.
        generic: The detector of ``model`` with ``state`` loaded, if already built.
    """
    layout = _vgg_layout(model, layers)
    if layout is None:
        return None
    vgg_model = _vgg_model(model, *layout)
    vgg_state = _vgg_state(state, *layout)
    if vgg_state is None:
        return None
    try:
        detector = MODELS.build(vgg_model).eval()
        detector.load_state_dict(vgg_state, strict=True)
    except (RuntimeError, ValueError, KeyError) as err:
        notes.append(
            f'looks like VGG16 SSD but does not map onto ReducedVGG16 ({err}); kept CaffeNet'
        )
        return None
    if generic is None:
        generic = MODELS.build(model)
        generic.load_state_dict(state, strict=True)
    if not _same_features(generic.eval(), detector):
        notes.append('looks like VGG16 SSD but computes other feature maps; kept CaffeNet')
        return None
    notes.append('VGG16 SSD: mapped onto ReducedVGG16 + SSDExtraLayers + MultiBoxHead')
    return vgg_model, vgg_state
