import math

import pytest
import torch
from mmdet.registry import MODELS

from ssd_plugin.models.backbones import ReducedVGG16
from ssd_plugin.models.backbones.reduced_vgg16 import LAYER_NAMES, VGG16_SEQUENTIAL_INDICES


@pytest.fixture(scope='module')
def vgg() -> ReducedVGG16:
    torch.manual_seed(0)
    model = ReducedVGG16()
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('height, width', [(1, 1), (7, 9), (33, 50), (64, 100)])
def test_ceil_mode_sizes(vgg, height, width):
    conv4_3, fc7 = vgg(torch.rand(1, 3, height, width))
    assert conv4_3.shape == (1, 512, math.ceil(height / 8), math.ceil(width / 8))
    assert fc7.shape == (1, 1024, math.ceil(height / 16), math.ceil(width / 16))


def test_every_layer_size_and_channels(vgg):
    # A 75 px side is odd after pool1 (38) and pool3 (10): floor mode would give 37 and 9.
    expected = {
        'conv1_2': (64, 75), 'pool1': (64, 38), 'conv2_2': (128, 38), 'pool2': (128, 19),
        'conv3_3': (256, 19), 'pool3': (256, 10), 'conv4_3': (512, 10), 'pool4': (512, 5),
        'conv5_3': (512, 5), 'pool5': (512, 5), 'fc6': (1024, 5), 'fc7': (1024, 5),
    }  # fmt: skip
    model = ReducedVGG16(out_indices=tuple(expected))
    model.load_state_dict(vgg.state_dict())
    with torch.no_grad():
        outs = model.eval()(torch.rand(1, 3, 75, 75))
    assert [(o.shape[1], o.shape[2], o.shape[3]) for o in outs] == [
        (c, s, s) for c, s in expected.values()
    ]
    assert all((o >= 0).all() for o in outs)  # every conv is followed by a ReLU


def test_fc_layers_are_the_reduced_atrous_convs(vgg):
    assert vgg.fc6.weight.shape == (1024, 512, 3, 3)
    assert vgg.fc6.dilation == (6, 6) and vgg.fc6.padding == (6, 6)
    assert vgg.fc7.weight.shape == (1024, 1024, 1, 1)
    pool5 = vgg.pool5
    assert (pool5.kernel_size, pool5.stride, pool5.padding) == (3, 1, 1)
    # fc6 reaches 6 cells away: a single spike at the centre of a 13x13 pool5 map moves fc6's
    # pre-activation at the centre and 6 cells away, but not at 3 cells.
    fc6 = torch.nn.Conv2d(1, 1, 3, padding=6, dilation=6, bias=False)
    fc6.weight.data = vgg.fc6.weight.data[:1, :1].clone()
    spike = torch.zeros(1, 1, 13, 13)
    spike[0, 0, 6, 6] = 1
    response = fc6(spike)[0, 0]
    torch.testing.assert_close(response[0, 0], vgg.fc6.weight[0, 0, 2, 2])
    torch.testing.assert_close(response[6, 12], vgg.fc6.weight[0, 0, 1, 0])
    assert response[3, 3] == 0


def test_out_indices_by_name_and_index(vgg):
    by_index = ReducedVGG16(out_indices=(LAYER_NAMES.index('conv4_3'), 19))
    by_index.load_state_dict(vgg.state_dict())
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        for a, b in zip(by_index.eval()(x), vgg(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert LAYER_NAMES[19] == 'fc7' and len(LAYER_NAMES) == 20


@pytest.mark.parametrize(
    'out_indices', [(), 'fc7', ('conv6_1',), (20,), (-1,), ('fc7', 'conv4_3'), ('fc7', 19)]
)
def test_bad_out_indices(out_indices):
    with pytest.raises(ValueError, match='out_indices'):
        ReducedVGG16(out_indices=out_indices)


def test_state_dict_keys_and_sequential_indices():
    keys = set(ReducedVGG16().state_dict())
    assert keys == {f'{n}.{p}' for n in VGG16_SEQUENTIAL_INDICES for p in ('weight', 'bias')}
    # The sequential layout is conv+ReLU pairs with one pool after each stage: indices step by
    # 2 within a stage and by 3 across a pool (pool5 at 30 sits between conv5_3 and fc6).
    indices = list(VGG16_SEQUENTIAL_INDICES.values())
    assert indices == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33]


def test_default_init_is_kaiming_normal_fan_out():
    torch.manual_seed(0)
    model = ReducedVGG16()
    model.init_weights()
    for name in VGG16_SEQUENTIAL_INDICES:
        conv = getattr(model, name)
        assert (conv.bias == 0).all()
    # He et al.: std = sqrt(2 / fan_out), fan_out = out_channels * kernel area.
    for conv in (model.fc7, model.conv5_3):
        fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)


def test_pretrained_init_cfg_loads_a_local_file(tmp_path, vgg):
    path = tmp_path / 'vgg16_reduced.pth'
    torch.save(vgg.state_dict(), path)
    model = MODELS.build(
        dict(type='ReducedVGG16', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    )
    model.init_weights()
    for key, value in vgg.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    # A detector checkpoint loads with prefix='backbone.'.
    detector = tmp_path / 'detector.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in vgg.state_dict().items()}}, detector)
    model = ReducedVGG16(
        init_cfg=dict(type='Pretrained', checkpoint=str(detector), prefix='backbone.')
    )
    model.init_weights()
    assert torch.equal(model.fc6.weight, vgg.fc6.weight)


def test_missing_pretrained_file_is_an_error_naming_the_converters(tmp_path):
    missing = tmp_path / 'absent_vgg16.pth'
    model = ReducedVGG16(init_cfg=dict(type='Pretrained', checkpoint=str(missing)))
    before = model.conv5_3.weight.clone()
    with pytest.raises(FileNotFoundError) as error:
        model.init_weights()
    message = str(error.value)
    assert f"the pretrained checkpoint '{missing}' (model.backbone.init_cfg.checkpoint)" in message
    for converter in ('torchvision_vgg16_to_reduced.py', 'caffe_vgg16_reducedfc_to_reduced.py'):
        assert f'tools/model_converters/{converter}' in message
    assert 'model.backbone.allow_scratch=True' in message
    assert torch.equal(model.conv5_3.weight, before)  # nothing initialised


def test_missing_pretrained_file_with_allow_scratch_initialises_from_scratch(tmp_path):
    missing = tmp_path / 'absent_vgg16.pth'
    model = MODELS.build(
        dict(
            type='ReducedVGG16',
            allow_scratch=True,
            init_cfg=dict(type='Pretrained', checkpoint=str(missing)),
        )
    )
    with pytest.warns(UserWarning, match='absent_vgg16.pth.*from scratch'):
        model.init_weights()
    # Kaiming normal (fan_out, ReLU gain) rather than PyTorch's default uniform init.
    expected_std = math.sqrt(2 / (model.conv5_3.out_channels * 9))
    assert abs(model.conv5_3.weight.std().item() / expected_std - 1) < 0.05
    assert torch.count_nonzero(model.conv5_3.bias) == 0


def test_backward_reaches_every_layer_up_to_the_last_output():
    torch.manual_seed(0)
    model = ReducedVGG16(out_indices=('conv1_1', 'conv4_3', 'pool5'))
    outs = model(torch.rand(1, 3, 20, 20))
    sum(o.sum() for o in outs).backward()
    for name in VGG16_SEQUENTIAL_INDICES:
        grad = getattr(model, name).weight.grad
        if name in ('fc6', 'fc7'):  # after pool5: not run
            assert grad is None
        else:
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
