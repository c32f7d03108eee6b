import copy
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torchvision

from ssd_plugin.models.backbones import ReducedVGG16

sys.path.insert(0, str(Path(__file__).parents[1]))
from tool_runner import load_tool  # noqa: E402  (tests/test_tools, the tools' test helpers)

tv_tool = load_tool('model_converters/torchvision_vgg16_to_reduced.py')
caffe_tool = load_tool('model_converters/caffe_vgg16_reducedfc_to_reduced.py')


def he_uniform_(model: nn.Module) -> nn.Module:
    """Fast random weights that keep activations O(1) through 13 ReLU convs (He et al.)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.uniform_(-math.sqrt(6 / fan_in), math.sqrt(6 / fan_in))
                module.bias.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.fixture(scope='module')
def torchvision_vgg16() -> nn.Module:
    # Built on the meta device and filled in place: torchvision's own init of 138M weights is slow.
    with torch.device('meta'):
        model = torchvision.models.vgg16(weights=None)
    return he_uniform_(model.to_empty(device='cpu'))


def ssd_pytorch_vgg() -> nn.Sequential:
    """The layout of ssd.pytorch's ``vgg`` ModuleList, which vgg16_reducedfc.pth is the state of.

    Stages end in floor-mode pools except pool3 (ceil, 'C' in its cfg); then pool5 3x3/1/1,
    conv6 (dilated fc6) at 31 and conv7 (fc7) at 33, ReLUs after each conv.
    """
    layers, channels = [], 3
    for stage, (width, num_convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
        for _ in range(num_convs):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            channels = width
        if stage < 4:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=stage == 2))
    layers += [
        nn.MaxPool2d(3, 1, 1),
        nn.Conv2d(512, 1024, 3, padding=6, dilation=6),
        nn.ReLU(inplace=True),
        nn.Conv2d(1024, 1024, 1),
        nn.ReLU(inplace=True),
    ]
    return he_uniform_(nn.Sequential(*layers))


@pytest.fixture(scope='module')
def converted_from_torchvision(tmp_path_factory, torchvision_vgg16) -> ReducedVGG16:
    """torchvision weights -> the CLI -> a ReducedVGG16 loaded by ``init_cfg=Pretrained``."""
    tmp = tmp_path_factory.mktemp('torchvision')
    src, dst = tmp / 'vgg16.pth', tmp / 'reduced.pth'
    torch.save(torchvision_vgg16.state_dict(), src)
    tv_tool.main([str(src), str(dst)])
    # mmengine's Pretrained init loads non-strictly: check every key is in the file.
    assert set(torch.load(dst)) == set(ReducedVGG16().state_dict())
    model = ReducedVGG16(
        out_indices=('conv5_3',), init_cfg=dict(type='Pretrained', checkpoint=str(dst))
    )
    model.init_weights()
    return model.eval()


def test_torchvision_conv_layers_reproduce_torchvision_features(
    converted_from_torchvision, torchvision_vgg16
):
    # The configs' input (RGB minus the mean, std 1) vs torchvision's (also divided by the std).
    # float64, so only the fp32 rounding of the folded weights is left between the two.
    x = torch.rand(2, 3, 32, 48, dtype=torch.float64) * 255
    x -= torch.tensor([123.675, 116.28, 103.53], dtype=torch.float64)[:, None, None]
    std = torch.tensor(tv_tool.IMAGENET_STD_RGB, dtype=torch.float64)[:, None, None]
    with torch.no_grad():
        # Sides are multiples of 16, so floor and ceil pooling agree.
        (ours,) = copy.deepcopy(converted_from_torchvision).double()(x)
        ref = copy.deepcopy(torchvision_vgg16.features[:30]).double()(x / std)  # to conv5_3 ReLU
    assert ours.shape == ref.shape == (2, 512, 2, 3)
    assert ref.abs().max() > 0.1
    assert (ours - ref).abs().max().item() <= 1e-5  # W / std is stored in fp32


def test_torchvision_fc6_fc7_hold_the_subsampled_values(
    converted_from_torchvision, torchvision_vgg16
):
    src, ours = torchvision_vgg16.state_dict(), converted_from_torchvision.state_dict()
    # Index arithmetic on the flat Linear weights: fc6 input (c, y, x) is column c*49 + y*7 + x.
    o, c, ky, kx = torch.meshgrid(
        torch.arange(1024), torch.arange(512), torch.arange(3), torch.arange(3), indexing='ij'
    )
    fc6 = src['classifier.0.weight'][4 * o, c * 49 + 3 * ky * 7 + 3 * kx]
    assert torch.equal(ours['fc6.weight'], fc6)
    rows = torch.arange(0, 4096, 4)
    assert torch.equal(ours['fc6.bias'], src['classifier.0.bias'][rows])
    fc7 = src['classifier.3.weight'][rows[:, None], rows[None, :]]
    assert torch.equal(ours['fc7.weight'], fc7[:, :, None, None])
    assert torch.equal(ours['fc7.bias'], src['classifier.3.bias'][rows])


def test_torchvision_errors_name_key_and_file(torchvision_vgg16):
    src = dict(torchvision_vgg16.state_dict())
    del src['features.28.weight']
    with pytest.raises(KeyError, match=r'my\.pth.*features\.28\.weight'):
        tv_tool.convert(src, source='my.pth')
    src = dict(torchvision_vgg16.state_dict())
    src['classifier.0.weight'] = torch.zeros(4096, 512 * 6 * 6)
    with pytest.raises(ValueError, match=r'my\.pth: classifier\.0\.weight has shape'):
        tv_tool.convert(src, source='my.pth')


def test_caffe_reducedfc_equals_the_sequential_layout(tmp_path):
    vgg = ssd_pytorch_vgg()
    assert [i for i, m in enumerate(vgg) if isinstance(m, nn.Conv2d)][-2:] == [31, 33]
    src, dst = tmp_path / 'vgg16_reducedfc.pth', tmp_path / 'reduced.pth'
    torch.save(vgg.state_dict(), src)
    caffe_tool.main([str(src), str(dst)])
    model = ReducedVGG16(init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    model.load_state_dict(caffe_tool.convert(vgg.state_dict()), strict=True)  # every key present

    x = torch.rand(1, 3, 44, 44)  # 44 -> 22 -> 11 -> 6 (ceil at pool3 in both) -> 3
    with torch.no_grad():
        conv4_3, fc7 = model.eval()(x)  # RGB, as the configs feed it
        ref_conv4_3 = vgg[:23](x.flip(1))  # Caffe's BGR; up to the ReLU after conv4_3 (21)
        ref_fc7 = vgg[23:](ref_conv4_3)
    assert conv4_3.shape == ref_conv4_3.shape == (1, 512, 6, 6)
    assert fc7.shape == ref_fc7.shape == (1, 1024, 3, 3)
    for ours, ref in ((conv4_3, ref_conv4_3), (fc7, ref_fc7)):
        assert ref.abs().max() > 0.1
        assert (ours - ref).abs().max().item() <= 1e-5


def test_caffe_errors_name_key_and_file(tmp_path):
    src = {k: v for k, v in ssd_pytorch_vgg().state_dict().items() if k != '33.bias'}
    with pytest.raises(KeyError, match=r"w\.pth.*'33\.bias'"):
        caffe_tool.convert(src, source='w.pth')
    src['33.bias'] = torch.zeros(1024)
    src['31.weight'] = torch.zeros(4096, 512, 7, 7)  # an unreduced fc6
    with pytest.raises(ValueError, match=r'w\.pth: 31\.weight \(fc6\.weight\) has shape'):
        caffe_tool.convert(src, source='w.pth')
    not_a_dict = tmp_path / 'tensor.pth'
    torch.save(torch.zeros(3), not_a_dict)
    with pytest.raises(TypeError, match='tensor.pth'):
        caffe_tool.main([str(not_a_dict), str(tmp_path / 'out.pth')])
