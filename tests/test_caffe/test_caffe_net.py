"""CaffeNet layers against Caffe's formulas (numpy), and its construction errors."""

import numpy as np
import pytest
import torch
from caffe_reference import caffe_pool

from ssd_plugin.caffe.caffe_net import CaffeNet, module_key

RNG = np.random.default_rng(0)


def _net(layers, out):
    return CaffeNet(layers, out, 'data', init_cfg=None).eval()


def _run(net, x):
    with torch.no_grad():
        return [o.numpy() for o in net(torch.from_numpy(x))]


def test_eltwise_prod_max_leaky_relu_and_concat():
    x = RNG.normal(size=(2, 4, 5, 5)).astype(np.float32)
    layers = [
        dict(name='relu', type='ReLU', bottom=['data'], top=['r'], negative_slope=0.1),
        dict(name='prod', type='Eltwise', bottom=['data', 'r'], top=['p'], operation='PROD'),
        dict(name='max', type='Eltwise', bottom=['data', 'r', 'p'], top=['m'], operation='MAX'),
        dict(name='split', type='Split', bottom=['m'], top=['m1', 'm2']),
        dict(name='cat', type='Concat', bottom=['m1', 'p', 'm2'], top=['c']),
    ]
    r, p, m, c = _run(_net(layers, ['r', 'p', 'm', 'c']), x)
    want_r = np.where(x > 0, x, 0.1 * x)
    np.testing.assert_allclose(r, want_r, rtol=1e-6)
    np.testing.assert_allclose(p, x * want_r, rtol=1e-6)
    np.testing.assert_allclose(m, np.maximum(np.maximum(x, want_r), x * want_r), rtol=1e-6)
    np.testing.assert_allclose(c, np.concatenate([m, p, m], 1), rtol=1e-6)


@pytest.mark.parametrize('pool', ['MAX', 'AVE'])
@pytest.mark.parametrize('size, kernel, stride, pad', [(7, 3, 2, 1), (6, 2, 2, 0), (150, 3, 2, 0)])
def test_pooling_is_caffe_pooling(pool, size, kernel, stride, pad):
    """Caffe's output size (res10's 150 -> 75 with 3/2) and AVE divisor."""
    x = RNG.normal(size=(1, 2, size, size)).astype(np.float32)
    layer = dict(
        name='pool', type='Pooling', bottom=['data'], top=['y'], pool=pool,
        global_pooling=False, kernel_size=[kernel] * 2, stride=[stride] * 2, padding=[pad] * 2,
    )  # fmt: skip
    (got,) = _run(_net([layer], ['y']), x)
    np.testing.assert_allclose(got, caffe_pool(x, kernel, stride, pad, pool), rtol=1e-5, atol=1e-6)


def test_global_pooling_and_shared_across_spatial_normalize():
    x = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)
    layers = [
        dict(name='g', type='Pooling', bottom=['data'], top=['g'], pool='AVE',
             global_pooling=True, kernel_size=[0, 0], stride=[1, 1], padding=[0, 0]),
        dict(name='n', type='Normalize', bottom=['data'], top=['n'], channels=3, eps=1e-10,
             across_spatial=True, channel_shared=True),
    ]  # fmt: skip
    net = _net(layers, ['g', 'n'])
    net.layers['n'].weight.data.fill_(3.0)
    g, n = _run(net, x)
    np.testing.assert_allclose(g, x.mean(axis=(2, 3), keepdims=True), rtol=1e-5)
    norm = np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2, 3), keepdims=True) + 1e-10)
    np.testing.assert_allclose(n, 3 * x / norm, rtol=1e-5)


def test_construction_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"layer 'lrn' has type 'LRN'"):
        _net([dict(name='lrn', type='LRN', bottom=['data'], top=['y'])], ['y'])
    with pytest.raises(ValueError, match=r"layer 'r' reads blobs \['nope'\]"):
        _net([dict(name='r', type='ReLU', bottom=['nope'], top=['y'])], ['y'])
    with pytest.raises(ValueError, match='two layers map to the module name'):
        relu = dict(type='ReLU', bottom=['data'], top=['y'])
        _net([dict(name='a/b', **relu), dict(name='a.b', **relu)], ['y'])
    assert module_key('conv1/dw.x') == 'conv1_dw_x'
