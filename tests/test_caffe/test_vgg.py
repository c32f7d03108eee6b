"""weiliu89's VGG16 SSD300 deploy net maps onto the shipped SSD300 config's components."""

from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

from ssd_plugin.caffe.converter.convert import build_model_cfg
from ssd_plugin.caffe.converter.graph import parse_net
from ssd_plugin.caffe.converter.proto import read_prototxt
from ssd_plugin.caffe.converter.vgg import to_reduced_vgg

ROOT = Path(__file__).parents[2]
PROTOTXT = ROOT / 'tests' / 'data' / 'caffe' / 'vgg16_ssd300_voc_deploy.prototxt'
pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


def test_vgg16_ssd300_loads_into_the_shipped_config():
    assert PROTOTXT.is_file(), f'{PROTOTXT} is tracked in git: the checkout is incomplete'
    spec = parse_net(read_prototxt(PROTOTXT), 'vgg')
    notes = []
    model_cfg, layers, *_ = build_model_cfg(spec, (104, 117, 123), None, 'bgr', 'vgg', notes)
    torch.manual_seed(0)
    generic = MODELS.build(model_cfg).eval()
    for p in generic.parameters():  # non-trivial weights everywhere (BN-free net: small scale)
        torch.nn.init.normal_(p, std=0.02)
    state = generic.state_dict()
    vgg_model, vgg_state = to_reduced_vgg(model_cfg, layers, state, notes)
    assert notes[-1].startswith('VGG16 SSD: mapped onto ReducedVGG16')
    assert vgg_model['backbone']['type'] == 'ReducedVGG16'

    # the shipped VOC config (20 classes) takes the checkpoint with strict loading
    shipped_cfg = Config.fromfile(str(ROOT / 'configs' / 'ssd300_vgg16_8xb8-240e_voc0712.py'))
    shipped = MODELS.build(shipped_cfg.model).eval()
    shipped.load_state_dict(vgg_state, strict=True)
    sizes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    head = generic.bbox_head
    torch.testing.assert_close(
        torch.cat(shipped.bbox_head.prior_generator.grid_priors(sizes, device='cpu')),
        torch.cat(head.prior_generator.grid_priors(sizes, device='cpu')),
    )
    x = torch.randn(1, 3, 300, 300) * 50
    with torch.no_grad():
        want_cls, want_reg = head(generic.backbone(x))
        got_cls, got_reg = shipped.bbox_head(shipped.neck(shipped.backbone(x)))
    for got, want in zip(got_cls + got_reg, want_cls + want_reg):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
