"""CaffeNet's fused inference path (BatchNorm/Scale folded into convolutions) vs layer by layer."""

import copy

import pytest
import torch

from ssd_plugin.caffe.caffe_net import CaffeNet, Scale
from ssd_plugin.caffe.fusion import fold_conv_bn_scale, fusion_plan


def _conv(name, bottom, top, cin, cout, bias=True, kernel=3, stride=1, pad=1):
    return dict(
        name=name, type='Convolution', bottom=[bottom], top=[top], in_channels=cin,
        out_channels=cout, kernel_size=[kernel] * 2, stride=[stride] * 2, padding=[pad] * 2,
        dilation=[1, 1], groups=1, bias=bias,
    )  # fmt: skip


def _bn(name, blob, channels, top=None):
    return dict(name=name, type='BatchNorm', bottom=[blob], top=[top or blob], channels=channels,
                eps=1e-5)  # fmt: skip


def _scale(name, blob, channels, bias=True, top=None):
    return dict(name=name, type='Scale', bottom=[blob], top=[top or blob], channels=channels,
                bias=bias)  # fmt: skip


def _relu(name, blob, top=None, slope=0.0):
    return dict(name=name, type='ReLU', bottom=[blob], top=[top or blob], negative_slope=slope)


# A res10-like stem and pre-activation block, plus the cases fusion must leave alone.
LAYERS = [
    _bn('data_bn', 'data', 3, top='data_bn'),
    _scale('data_scale', 'data_bn', 3),
    _conv('conv1', 'data_bn', 'conv1', 3, 8, stride=2),
    _bn('conv1_bn', 'conv1', 8),
    _scale('conv1_scale', 'conv1', 8),
    _relu('conv1_relu', 'conv1'),
    dict(
        name='pool1',
        type='Pooling',
        bottom=['conv1'],
        top=['pool1'],
        pool='MAX',
        global_pooling=False,
        kernel_size=[3, 3],
        stride=[2, 2],
        padding=[0, 0],
    ),
    _conv('c2', 'pool1', 'c2', 8, 8, bias=False),
    _bn('c2_bn', 'c2', 8),
    _scale('c2_scale', 'c2', 8),
    _relu('c2_relu', 'c2'),
    _conv('c3', 'c2', 'c3', 8, 8, bias=False),
    dict(name='sum', type='Eltwise', bottom=['c3', 'pool1'], top=['sum'], operation='SUM'),
    _bn('pre_bn', 'sum', 8, top='pre'),
    _scale('pre_scale', 'pre', 8),
    _relu('pre_relu', 'pre'),
    # Scale without bias and a leaky ReLU writing a new blob.
    _conv('c4', 'pre', 'c4', 8, 16, kernel=1, pad=0),
    _scale('c4_scale', 'c4', 16, bias=False),
    _relu('c4_relu', 'c4', top='c4_out', slope=0.1),
    # conv5's raw output is read again below (and is an output): its BatchNorm stays separate.
    _conv('c5', 'pre', 'c5', 8, 8),
    _bn('c5_bn', 'c5', 8, top='c5_bn'),
    _relu('c5_relu', 'c5_bn'),
    dict(name='cat', type='Concat', bottom=['c5', 'c5_bn', 'c4_out'], top=['cat']),
]
OUT = ['pre', 'c4_out', 'c5', 'cat']


def _randomised(net: CaffeNet, seed: int = 0) -> CaffeNet:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=gen) * 2 + 0.1)
            elif t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen))
    return net


@pytest.fixture
def net():
    return _randomised(CaffeNet(LAYERS, OUT, init_cfg=None)).eval()


def _forward(net, x, fuse, channels_last=True):
    net.fuse, net.channels_last = fuse, channels_last
    return net(x)


def test_plan_merges_only_what_stays_invisible(net):
    runs = {run.keys[0]: run.keys for run in net.fused_plan}
    assert runs['data_bn'] == ('data_bn', 'data_scale')
    assert runs['conv1'] == ('conv1', 'conv1_bn', 'conv1_scale', 'conv1_relu')
    assert runs['c2'] == ('c2', 'c2_bn', 'c2_scale', 'c2_relu')
    assert runs['c3'] == ('c3',)
    assert runs['pre_bn'] == ('pre_bn', 'pre_scale', 'pre_relu')
    assert runs['c4'] == ('c4', 'c4_scale', 'c4_relu')
    # c5's pre-BatchNorm value is read by 'cat': not folded; its BatchNorm + ReLU still are.
    assert runs['c5'] == ('c5',)
    assert runs['c5_bn'] == ('c5_bn', 'c5_relu')
    assert sum(len(keys) for keys in runs.values()) == len(LAYERS)


def test_plan_keeps_an_intermediate_output_blob():
    layers = [_conv('c', 'data', 'c', 3, 4), _bn('bn', 'c', 4, top='b'), _relu('r', 'b')]
    plan = fusion_plan(layers, ['c', 'bn', 'r'], ['c', 'b'])
    assert [run.keys for run in plan] == [('c',), ('bn', 'r')]


@pytest.mark.parametrize('channels_last', [True, False])
def test_fused_equals_layer_by_layer(net, channels_last):
    x = torch.randn(2, 3, 29, 31)
    with torch.no_grad():
        want = _forward(net, x, fuse=False)
        got = _forward(net, x, fuse=True, channels_last=channels_last)
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 * w.abs().max().item())
        assert g.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_folded_weights_are_conv_then_bn_then_scale():
    conv = torch.nn.Conv2d(3, 5, 3, bias=True).double()
    bn = torch.nn.BatchNorm2d(5, eps=1e-3, affine=False).double().eval()
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    scale = Scale(5, bias=True).double()
    torch.nn.init.normal_(scale.weight)
    torch.nn.init.normal_(scale.bias)
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        weight, bias = fold_conv_bn_scale(conv, bn, scale)
        want = bn(conv(x)) * scale.weight.view(1, -1, 1, 1) + scale.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(torch.conv2d(x, weight, bias), want)


def test_weight_changes_reach_the_fused_path(net):
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        _forward(net, x, fuse=True)  # fills the cache of folded weights
        other = _randomised(copy.deepcopy(net), seed=1)
        net.load_state_dict(other.state_dict())
        net.layers['c2_bn'].running_var.mul_(3.0)  # an in-place update, as a BN stats sync
        want = _forward(net, x, fuse=False)
        got = _forward(net, x, fuse=True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 * w.abs().max().item())


def test_gradients_and_state_dict_are_unchanged(net):
    """Frozen-BN fine-tuning in eval mode: the fold is differentiable and adds no state."""
    keys = set(CaffeNet(LAYERS, OUT, fuse=False, init_cfg=None).state_dict())
    assert set(net.state_dict()) == keys
    x = torch.randn(1, 3, 20, 20)
    grads = []
    for fuse in (False, True):
        net.zero_grad()
        sum(o.square().sum() for o in _forward(net, x, fuse=fuse)).backward()
        grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
    for name, want in grads[0].items():
        got = grads[1][name]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_training_mode_runs_layer_by_layer(net):
    net.train()
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        got = copy.deepcopy(net)(x)
        net.fuse = False
        want = net(x)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_folded_weights_are_cached_prepacked(net):
    """Folded once per weight change, stored prepacked for oneDNN (no per-call reorder)."""
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        _forward(net, x, fuse=True)
        cached = {key: hit[1] for key, hit in net._folded.items()}
        _forward(net, x, fuse=True)
    assert set(cached) == {'conv1', 'c2', 'c3', 'c4', 'c5'}
    assert all(net._folded[key][1] is weight for key, weight in cached.items())
    assert all(w.is_mkldnn for w in cached.values())
    assert copy.deepcopy(net)._folded == {}  # prepacked weights are not copied
    net.train()
    assert not net._folded
