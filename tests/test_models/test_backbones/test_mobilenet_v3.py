import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small
from torchvision.models.detection.ssdlite import _mobilenet_extractor

from ssd_plugin.models.backbones import MobileNetV3


def _randomise_batch_norms(model: nn.Module) -> None:
    """Non-trivial BN parameters and running statistics, so the comparisons can fail."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, std=0.2)
            nn.init.normal_(module.running_mean, std=0.2)
            nn.init.uniform_(module.running_var, 0.5, 2.0)


@pytest.mark.parametrize(
    'arch, reduced_tail, builder, size, expected',
    [
        # SSDLite320: C4 = expansion of features[13] (672 ch, 20x20); C5 = 480 ch (reduced) 10x10
        ('large', True, mobilenet_v3_large, 320, ((672, 20), (480, 10))),
        ('small', False, mobilenet_v3_small, 160, ((288, 10), (576, 5))),
    ],
)
def test_outputs_equal_torchvision_ssdlite_feature_extractor(
    arch, reduced_tail, builder, size, expected
):
    torch.manual_seed(0)
    norm_layer = lambda c: nn.BatchNorm2d(c, eps=0.001, momentum=0.03)  # noqa: E731
    reference = builder(weights=None, reduced_tail=reduced_tail, norm_layer=norm_layer)
    _randomise_batch_norms(reference)
    ours = MODELS.build(dict(type='MobileNetV3', arch=arch, reduced_tail=reduced_tail))
    # The same parameters under the same keys: torchvision's features, nothing else.
    assert ours.state_dict().keys() == {
        k for k in reference.state_dict() if k.startswith('features.')
    }
    ours.load_state_dict(
        {k: v for k, v in reference.state_dict().items() if k.startswith('features.')}
    )
    extractor = _mobilenet_extractor(reference, trainable_layers=6, norm_layer=norm_layer).eval()
    ours.eval()

    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        c4, c5 = ours(x)
        ref = list(extractor(x).values())[:2]
    assert [(t.shape[1], t.shape[2]) for t in (c4, c5)] == list(expected)
    assert ours.out_channels == tuple(c for c, _ in expected)
    assert torch.equal(c4, ref[0]) and torch.equal(c5, ref[1])


def test_norm_cfg_and_default_init_are_torchvision_ssdlites():
    torch.manual_seed(0)
    model = MobileNetV3()
    model.init_weights()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.eps == 0.001 and bn.momentum == 0.03 for bn in bns)
    assert all(torch.equal(bn.weight, torch.ones_like(bn.weight)) for bn in bns)
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, nn.Conv2d)])
    assert abs(weights.std().item() - 0.03) < 0.001 and abs(weights.mean().item()) < 0.001
    # SyncBN etc. come from mmcv's norm registry
    sync = MobileNetV3(arch='small', norm_cfg=dict(type='SyncBN', eps=0.01))
    assert all(m.eps == 0.01 for m in sync.modules() if isinstance(m, nn.SyncBatchNorm)) and any(
        isinstance(m, nn.SyncBatchNorm) for m in sync.modules()
    )


def test_imagenet_checkpoint_loads_with_pretrained_init(tmp_path):
    torch.manual_seed(0)
    reference = mobilenet_v3_large(weights=None)  # ImageNet layout: full tail and classifier
    path = str(tmp_path / 'mobilenet_v3_large.pth')
    torch.save(reference.state_dict(), path)
    model = MobileNetV3(reduced_tail=False, init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key


def test_unknown_arch_is_named():
    with pytest.raises(ValueError, match="arch must be one of \\['large', 'small'\\], got 'tiny'"):
        MobileNetV3(arch='tiny')
