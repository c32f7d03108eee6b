import pytest
import torch

from ssd_plugin.models.necks import L2Norm


def test_each_location_gets_unit_norm_times_the_channel_scale():
    torch.manual_seed(0)
    layer = L2Norm(8, scale=20.0)
    assert torch.equal(layer.weight.data, torch.full((8,), 20.0))
    x = torch.randn(2, 8, 5, 7) * 3
    torch.testing.assert_close(layer(x).norm(dim=1), torch.full((2, 5, 7), 20.0))

    layer.weight.data = torch.rand(8) + 0.5
    y = layer(x)
    scale = layer.weight[None, :, None, None]
    torch.testing.assert_close((y / scale).norm(dim=1), torch.ones(2, 5, 7))
    # Same direction as the input at every location: y = w * x / ||x||.
    torch.testing.assert_close(y, scale * x / x.norm(dim=1, keepdim=True))


def test_zero_location_gives_zero_and_gradients_reach_the_scale():
    layer = L2Norm(4, scale=10.0)
    x = torch.randn(1, 4, 3, 3)
    x[:, :, 1, 1] = 0
    y = layer(x)
    assert torch.isfinite(y).all() and (y[:, :, 1, 1] == 0).all()
    y.sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def test_fp16_input_is_computed_in_fp32_and_stays_finite():
    torch.manual_seed(0)
    layer = L2Norm(512, scale=20.0)
    # 512 channels of magnitude ~300: the fp16 sum of squares (~4.6e7) would overflow to inf.
    x = (torch.randn(1, 512, 4, 4) * 300).half()
    assert torch.isinf(x.pow(2).sum(dim=1)).all()
    y = layer(x)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), layer(x.float()), atol=1e-2, rtol=1e-3)
    torch.testing.assert_close(
        y.float().norm(dim=1), torch.full((1, 4, 4), 20.0), rtol=1e-3, atol=0
    )


def test_under_autocast_output_keeps_the_input_dtype():
    torch.manual_seed(0)
    layer = L2Norm(16, scale=20.0)
    conv = torch.nn.Conv2d(3, 16, 3)
    x = torch.rand(1, 3, 8, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        feat = conv(x)
        y = layer(feat)
    assert feat.dtype == y.dtype == torch.bfloat16
    # Computed in fp32 and rounded once: autocast did not lower any op inside.
    assert torch.equal(y, layer(feat.float()).to(torch.bfloat16))


def _caffe_normalize(x, scale, across_spatial, channel_shared, eps):
    """Caffe's Normalize forward written out per image: norm = sqrt(sum of squares + eps)."""
    out = torch.empty_like(x, dtype=torch.float64)
    for n in range(x.shape[0]):
        xn = x[n].double()
        if across_spatial:
            norm = ((xn * xn).sum() + eps) ** 0.5
        else:
            norm = ((xn * xn).sum(dim=0, keepdim=True) + eps) ** 0.5
        s = scale.double()[0] if channel_shared else scale.double()[:, None, None]
        out[n] = s * xn / norm
    return out


@pytest.mark.parametrize('across_spatial', [False, True])
@pytest.mark.parametrize('channel_shared', [False, True])
def test_caffe_normalize_variants_against_direct_computation(across_spatial, channel_shared):
    torch.manual_seed(0)
    layer = L2Norm(
        6,
        scale=20.0,
        across_spatial=across_spatial,
        channel_shared=channel_shared,
        eps=1e-3,
        eps_under_sqrt=True,
    )
    assert layer.weight.shape == ((1,) if channel_shared else (6,))
    assert torch.equal(layer.weight.data, torch.full(layer.weight.shape, 20.0))
    with torch.no_grad():
        layer.weight.uniform_(0.5, 30)
    x = torch.randn(3, 6, 4, 5) * 0.05  # small values: eps=1e-3 under the root matters
    x[1] = 0  # an all-zero image gives 0
    expected = _caffe_normalize(x, layer.weight.detach(), across_spatial, channel_shared, 1e-3)
    y = layer(x)
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-6)
    assert (y[1] == 0).all()
    if across_spatial:
        # One norm per image: ||y[n] / scale|| = ||x|| / sqrt(||x||^2 + eps) over C x H x W.
        sq = x.pow(2).sum(dim=(1, 2, 3))
        ratio = (
            layer.weight.detach().reshape(-1, 1, 1) if not channel_shared else layer.weight.detach()
        )
        torch.testing.assert_close(
            (y / ratio).pow(2).sum(dim=(1, 2, 3)).sqrt(), sq.sqrt() / (sq + 1e-3).sqrt()
        )
    y.sum().backward()
    assert layer.weight.grad.shape == layer.weight.shape


def test_eps_placement_default_is_mmdet_outside_the_root():
    x = torch.full((1, 2, 1, 1), 0.01)
    mmdet_style = L2Norm(2, scale=1.0, eps=1e-3)(x)
    caffe_style = L2Norm(2, scale=1.0, eps=1e-3, eps_under_sqrt=True)(x)
    norm = 2**0.5 * 0.01
    torch.testing.assert_close(mmdet_style, torch.full_like(x, 0.01 / (norm + 1e-3)))
    torch.testing.assert_close(caffe_style, torch.full_like(x, 0.01 / (norm**2 + 1e-3) ** 0.5))
