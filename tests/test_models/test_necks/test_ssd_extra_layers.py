import math
import re
from typing import Dict

import pytest
import torch
from mmdet.registry import MODELS
from torch import Tensor

from ssd_plugin.models.backbones import ReducedVGG16
from ssd_plugin.models.backbones.reduced_vgg16 import VGG16_SEQUENTIAL_INDICES
from ssd_plugin.models.necks import SSDExtraLayers

SSD300_NECK = dict(
    in_channels=(512, 1024),
    out_channels=(512, 1024, 512, 256, 256, 256),
    strides=(2, 2, 1, 1),
    paddings=(1, 1, 0, 0),
)
SSD512_NECK = dict(
    in_channels=(512, 1024),
    out_channels=(512, 1024, 512, 256, 256, 256, 256),
    strides=(2, 2, 2, 2, 1),
    paddings=(1, 1, 1, 1, 1),
    kernel_sizes=(3, 3, 3, 3, 4),
)
# mmdet's configs/ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py neck.
SSDLITE_NECK = dict(
    in_channels=(96, 1280),
    out_channels=(96, 1280, 512, 256, 256, 128),
    strides=(2, 2, 2, 2),
    paddings=(1, 1, 1, 1),
    l2_norm_scale=None,
    use_depthwise=True,
    norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),
    act_cfg=dict(type='ReLU6'),
)


def mmdet_neck_cfg(cfg: dict) -> dict:
    """The same neck as mmdet's SSDNeck config."""
    kernels = cfg.get('kernel_sizes', 3)
    last = kernels if isinstance(kernels, int) else kernels[-1]
    out = dict(
        type='SSDNeck',
        in_channels=cfg['in_channels'],
        out_channels=cfg['out_channels'],
        level_strides=cfg['strides'],
        level_paddings=cfg['paddings'],
        l2_norm_scale=cfg.get('l2_norm_scale', 20.0),
        last_kernel_size=last,
    )
    for key in ('use_depthwise', 'norm_cfg', 'act_cfg'):
        if key in cfg:
            out[key] = cfg[key]
    return out


def mmdet_to_plugin(state_dict: Dict[str, Tensor], part: str) -> Dict[str, Tensor]:
    """mmdet SSDVGG (``part='backbone'``) / SSDNeck (``'neck'``) keys -> ours (docs/design.md)."""
    name_of = {index: name for name, index in VGG16_SEQUENTIAL_INDICES.items()}
    rules = {
        'backbone': [(r'features\.(\d+)\.(.+)', lambda m: f'{name_of[int(m[1])]}.{m[2]}')],
        'neck': [
            (r'l2_norm\.weight', lambda m: 'l2_norms.0.weight'),
            (r'extra_layers\.(\d+)\.0\.(.+)', lambda m: f'extra_layers.{m[1]}.reduce.{m[2]}'),
            (r'extra_layers\.(\d+)\.1\.(.+)', lambda m: f'extra_layers.{m[1]}.conv.{m[2]}'),
        ],
    }[part]
    out = {}
    for key, value in state_dict.items():
        matches = [(m, fn) for pattern, fn in rules if (m := re.fullmatch(pattern, key))]
        assert len(matches) == 1, f'unmapped mmdet key {key}'
        out[matches[0][1](matches[0][0])] = value
    return out


def randomise(neck: torch.nn.Module) -> None:
    """mmdet's init, then varied BN statistics, BN affine, biases and L2Norm scales."""
    neck.init_weights()  # Xavier convs with zero bias, BN weight 1, L2Norm scale 20
    with torch.no_grad():
        for key, tensor in neck.state_dict().items():
            if not tensor.is_floating_point() or key.endswith('conv.weight'):
                continue
            if key.endswith(('running_var', 'bn.weight', 'l2_norm.weight')):
                tensor.mul_(torch.rand_like(tensor) + 0.5)  # stays positive
            else:
                tensor.add_(torch.randn_like(tensor) * 0.1)


def expected_size(size: int, cfg: dict) -> list:
    kernels = cfg.get('kernel_sizes', 3)
    kernels = [kernels] * len(cfg['strides']) if isinstance(kernels, int) else kernels
    sizes = [size]
    for stride, padding, kernel in zip(cfg['strides'], cfg['paddings'], kernels):
        sizes.append((sizes[-1] + 2 * padding - kernel) // stride + 1)
    return sizes[1:]


def test_ssd300_backbone_and_neck_equal_mmdet():
    """Weights copied from mmdet's SSD300 SSDVGG + SSDNeck give the same six maps."""
    torch.manual_seed(0)
    mmdet_backbone = MODELS.build(
        dict(
            type='SSDVGG',
            depth=16,
            with_last_pool=False,
            ceil_mode=True,
            out_indices=(3, 4),
            out_feature_indices=(22, 34),
        )
    )
    mmdet_neck = MODELS.build(mmdet_neck_cfg(SSD300_NECK))
    mmdet_backbone.init_weights()
    mmdet_neck.init_weights()
    with torch.no_grad():
        mmdet_neck.l2_norm.weight.uniform_(5, 30)  # mmdet's weight starts uninitialised

    backbone = MODELS.build(dict(type='ReducedVGG16'))
    neck = MODELS.build(dict(type='SSDExtraLayers', **SSD300_NECK))
    backbone.load_state_dict(mmdet_to_plugin(mmdet_backbone.state_dict(), 'backbone'))
    neck.load_state_dict(mmdet_to_plugin(mmdet_neck.state_dict(), 'neck'))

    x = torch.rand(1, 3, 300, 300) * 255 - 120
    with torch.no_grad():
        ref = mmdet_neck(mmdet_backbone(x))
        outs = neck(backbone(x))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (512, 38, 38), (1024, 19, 19), (512, 10, 10), (256, 5, 5), (256, 3, 3), (256, 1, 1)
    ]  # fmt: skip
    assert len(ref) == len(outs)
    for level, (a, b) in enumerate(zip(outs, ref)):
        assert b.abs().max() > 0, level  # a test on all-zero maps could not fail
        assert (a - b).abs().max().item() <= 1e-5, level


def test_ssd512_shapes_on_reduced_vgg16():
    # Meta tensors run the real forward with PyTorch's shape rules but no arithmetic (a CPU
    # forward at 512 px takes ~10 s); the values are checked at 300 px against mmdet above.
    with torch.device('meta'):
        outs = SSDExtraLayers(**SSD512_NECK)(ReducedVGG16()(torch.empty(1, 3, 512, 512)))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (512, 64, 64), (1024, 32, 32), (512, 16, 16), (256, 8, 8), (256, 4, 4), (256, 2, 2),
        (256, 1, 1),
    ]  # fmt: skip


@pytest.mark.parametrize(
    'cfg, sizes',
    [(SSD300_NECK, (38, 19)), (SSD512_NECK, (64, 32)), (SSDLITE_NECK, (20, 10))],
    ids=['ssd300', 'ssd512', 'ssdlite'],
)
def test_neck_equals_mmdet_ssd_neck(cfg, sizes):
    """Neck only, random maps: same outputs as mmdet's SSDNeck (depthwise + BN for SSDLite)."""
    torch.manual_seed(0)
    mmdet_neck = MODELS.build(mmdet_neck_cfg(cfg))
    randomise(mmdet_neck)
    neck = SSDExtraLayers(**cfg)
    neck.load_state_dict(mmdet_to_plugin(mmdet_neck.state_dict(), 'neck'))
    feats = tuple(torch.randn(2, c, s, s) for c, s in zip(cfg['in_channels'], sizes))
    for mode in ('train', 'eval'):
        getattr(mmdet_neck, mode)()
        getattr(neck, mode)()
        with torch.no_grad():
            ref, outs = mmdet_neck(feats), neck(feats)
        assert [o.shape[2] for o in outs[2:]] == expected_size(sizes[-1], cfg)
        for a, b in zip(outs, ref):
            assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    'backbone_cfg, in_channels, size',
    [
        (dict(type='ResNet', depth=18, out_indices=(2, 3)), (256, 512), 128),
        (dict(type='ResNet', depth=50, out_indices=(2, 3)), (1024, 2048), 96),
        (dict(type='MobileNetV2', out_indices=(4, 7)), (96, 1280), 320),
    ],
    ids=['resnet18', 'resnet50', 'mobilenetv2'],
)
def test_follows_other_backbones(backbone_cfg, in_channels, size):
    torch.manual_seed(0)
    backbone = MODELS.build(backbone_cfg)
    backbone.eval()  # mmdet's ResNet.train() returns None
    cfg = dict(SSDLITE_NECK if backbone_cfg['type'] == 'MobileNetV2' else SSD300_NECK)
    cfg['in_channels'] = in_channels
    cfg['out_channels'] = in_channels + tuple(cfg['out_channels'][2:])
    if backbone_cfg['type'] == 'ResNet':
        cfg.update(strides=(2, 2, 2, 2), paddings=(1, 1, 1, 1))
    neck = SSDExtraLayers(**cfg).eval()
    with torch.no_grad():
        feats = backbone(torch.rand(1, 3, size, size))
        outs = neck(feats)
    assert outs[0].shape[2] == math.ceil(size / 16) and outs[1].shape[2] == math.ceil(size / 32)
    assert [o.shape[1] for o in outs] == list(cfg['out_channels'])
    assert [o.shape[2] for o in outs[2:]] == expected_size(outs[1].shape[2], cfg)
    if cfg.get('l2_norm_scale', 20.0) is None:
        assert outs[0] is feats[0]
    else:
        torch.testing.assert_close(outs[0].norm(dim=1), torch.full_like(outs[0][:, 0], 20.0))


def test_l2_norm_levels_and_disabling():
    torch.manual_seed(0)
    feats = (torch.randn(1, 8, 6, 6), torch.randn(1, 16, 3, 3))
    base = dict(in_channels=(8, 16), out_channels=(8, 16, 8), strides=(2,), paddings=(1,))

    both = SSDExtraLayers(**base, l2_norm_levels=(0, 1), l2_norm_scale=5.0)
    assert sorted(both.state_dict()) == [
        'extra_layers.0.conv.conv.bias', 'extra_layers.0.conv.conv.weight',
        'extra_layers.0.reduce.conv.bias', 'extra_layers.0.reduce.conv.weight',
        'l2_norms.0.weight', 'l2_norms.1.weight',
    ]  # fmt: skip
    outs = both(feats)
    for out in outs[:2]:
        torch.testing.assert_close(out.norm(dim=1), torch.full_like(out[:, 0], 5.0))
    # Like mmdet's SSDNeck, the extra levels start from the (normalised) last input.
    torch.testing.assert_close(outs[2], both.extra_layers[0](outs[1]))

    for disabled in (dict(l2_norm_levels=()), dict(l2_norm_scale=None)):
        neck = SSDExtraLayers(**base, **disabled)
        assert len(neck.l2_norms) == 0
        outs = neck(feats)
        assert outs[0] is feats[0] and outs[1] is feats[1]


def test_l2_norm_cfg_reaches_the_l2_norms_and_keeps_the_keys():
    torch.manual_seed(0)
    feats = (torch.randn(2, 8, 6, 6), torch.randn(2, 16, 3, 3))
    base = dict(in_channels=(8, 16), out_channels=(8, 16, 8), strides=(2,), paddings=(1,))
    cfg = dict(across_spatial=True, channel_shared=True, eps=1e-4, eps_under_sqrt=True)
    neck = SSDExtraLayers(**base, l2_norm_levels=(0, 1), l2_norm_scale=5.0, l2_norm_cfg=cfg)
    assert [k for k in neck.state_dict() if k.startswith('l2_norms')] == [
        'l2_norms.0.weight', 'l2_norms.1.weight',
    ]  # fmt: skip
    outs = neck(feats)
    for level in (0, 1):
        l2_norm = neck.l2_norms[str(level)]
        assert l2_norm.weight.shape == (1,) and l2_norm.across_spatial and l2_norm.eps == 1e-4
        x = feats[level]
        norm = (x.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-4).sqrt()
        torch.testing.assert_close(outs[level], 5.0 * x / norm)


def test_default_init_xavier_uniform_and_l2_scale():
    torch.manual_seed(0)
    neck = SSDExtraLayers()
    neck.init_weights()
    assert torch.equal(neck.l2_norms['0'].weight.data, torch.full((512,), 20.0))
    for module in neck.modules():
        if isinstance(module, torch.nn.Conv2d):
            fan_in = module.weight[0].numel()
            fan_out = module.weight.shape[0] * module.weight[0, 0].numel()
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert module.weight.abs().max() <= bound
            assert module.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
            assert (module.bias == 0).all()


@pytest.mark.parametrize(
    'kwargs, key',
    [
        (dict(in_channels=()), 'in_channels'),
        (dict(in_channels=(512, 512)), 'in_channels'),
        (dict(strides=(2, 2, 1)), 'strides'),
        (dict(paddings=(1, 1, 0, 0, 0)), 'paddings'),
        (dict(kernel_sizes=(3, 3)), 'kernel_sizes'),
        (dict(kernel_sizes=0), 'kernel_sizes'),
        (dict(strides=(2, 0, 1, 1)), 'strides'),
        (dict(paddings=(1, -1, 0, 0)), 'paddings'),
        (dict(out_channels=(512, 1024, 512, 256, 256, 1)), 'out_channels'),
        (dict(l2_norm_levels=(2,)), 'l2_norm_levels'),
        (dict(l2_norm_levels=(0, 0)), 'l2_norm_levels'),
        (dict(l2_norm_scale=0), 'l2_norm_scale'),
    ],
)
def test_bad_arguments_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        SSDExtraLayers(**kwargs)


def test_wrong_number_of_inputs():
    neck = SSDExtraLayers(in_channels=(8,), out_channels=(8, 4), strides=(2,), paddings=(1,))
    with pytest.raises(ValueError, match='in_channels'):
        neck((torch.rand(1, 8, 4, 4), torch.rand(1, 8, 2, 2)))
