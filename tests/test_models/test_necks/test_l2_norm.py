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
