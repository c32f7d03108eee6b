"""train_options: --sync-bn converts every BatchNorm, or stops where SyncBN cannot run."""

import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.model import convert_sync_batchnorm
from mmengine.registry import init_default_scope
from torch import nn

from ssd_plugin.cli.train_options import check_sync_bn

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
# the shipped configs whose networks hold BatchNorm (the VGG16 ones hold none)
BN_CONFIGS = (
    'ssd_demo_shapes.py',
    'ssdlite_mobilenetv2_8xb24-600e_coco.py',
    'ssdlite320_mobilenetv3-large_torchvision_coco.py',
    'ssd300_r50_8xb8-120e_coco.py',
    'ssd300_r18_fpn_8xb8-120e_coco.py',
)


@pytest.mark.parametrize('name', BN_CONFIGS)
def test_sync_bn_converts_every_batchnorm(name):
    """What mmengine's runner does with ``sync_bn`` in a distributed run, on each BN model."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    cfg.model.backbone.pop('init_cfg', None)  # no pretrained weights to fetch
    model = MODELS.build(cfg.model)
    before = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert len(before) >= 10
    state = {k: v.clone() for k, v in model.state_dict().items()}
    converted = convert_sync_batchnorm(model, 'torch')
    after = dict(converted.named_modules())
    assert all(isinstance(after[n], nn.SyncBatchNorm) for n in before)
    assert not any(type(m) is nn.BatchNorm2d for m in after.values())  # none left plain
    for name_, module in before.items():  # the layer's settings and state carry over
        assert (after[name_].eps, after[name_].momentum) == (module.eps, module.momentum)
    for key, value in converted.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_sync_bn_without_an_accelerator_stops_before_the_run(monkeypatch):
    monkeypatch.setattr('ssd_plugin.cli.train_options.get_device', lambda: 'cpu')
    with pytest.raises(ValueError, match=r"sync_bn='torch' \(--sync-bn\) needs GPUs"):
        check_sync_bn(Config(dict(sync_bn='torch', launcher='pytorch')))
    check_sync_bn(Config(dict(sync_bn='torch', launcher='none')))  # one process: mmengine reverts
    check_sync_bn(Config(dict(launcher='pytorch')))  # not asked for
    monkeypatch.setattr('ssd_plugin.cli.train_options.get_device', lambda: 'cuda')
    check_sync_bn(Config(dict(sync_bn='mmcv', launcher='slurm')))
    with pytest.raises(ValueError, match="sync_bn must be one of .* got 'apex'"):
        check_sync_bn(Config(dict(sync_bn='apex', launcher='slurm')))
