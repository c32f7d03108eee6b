"""mmdet SSD300 / SSDLite checkpoints convert to ssd_plugin and give identical outputs and loss."""

import os
import os.path as osp
import subprocess
import sys

import mmdet
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.structures import InstanceData

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from tool_runner import load_tool  # noqa: E402  (tests/test_tools, the tools' test helpers)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
MMDET_CONFIGS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')


converter = load_tool('model_converters/mmdet_ssd_to_plugin.py')


def _mmdet_model(name: str):
    cfg = Config.fromfile(osp.join(MMDET_CONFIGS, 'ssd', f'{name}.py'))
    if cfg.model.backbone.type == 'SSDVGG':
        # No download: Kaiming, as our ReducedVGG16 default, keeps activations in range.
        cfg.model.backbone.init_cfg = dict(type='Kaiming', layer='Conv2d')
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval()


def _our_ssd300():
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'ssd300_vgg16_8xb8-120e_coco.py'))
    cfg.model.backbone.init_cfg = None
    return MODELS.build(cfg.model).eval()


@pytest.fixture(scope='module')
def ssd300_pair():
    torch.manual_seed(0)
    theirs = _mmdet_model('ssd300_coco')
    ours = _our_ssd300()
    ours.load_state_dict(converter.convert(theirs.state_dict()), strict=True)
    return theirs, ours


def test_cli_converts_mmengine_checkpoint_and_keeps_meta(ssd300_pair, tmp_path, monkeypatch):
    theirs, ours = ssd300_pair
    src, dst = str(tmp_path / 'mmdet.pth'), str(tmp_path / 'plugin.pth')
    meta = dict(epoch=24, dataset_meta=dict(classes=('a', 'b')))
    torch.save(dict(state_dict=theirs.state_dict(), meta=meta), src)
    monkeypatch.setattr(sys, 'argv', ['mmdet_ssd_to_plugin.py', src, dst])
    converter.main()

    saved = torch.load(dst, map_location='cpu')
    assert saved['meta'] == meta
    ours.load_state_dict(saved['state_dict'], strict=True)
    assert torch.equal(ours.backbone.fc6.weight, theirs.backbone.features[31].weight)
    assert torch.equal(ours.neck.l2_norms['0'].weight, theirs.neck.l2_norm.weight)
    assert torch.equal(
        ours.neck.extra_layers[3].conv.conv.weight, theirs.neck.extra_layers[3][1].conv.weight
    )
    assert torch.equal(ours.bbox_head.reg_convs[5].pred.bias, theirs.bbox_head.reg_convs[5][0].bias)


def test_cli_converts_bare_state_dict(ssd300_pair, tmp_path):
    state = ssd300_pair[0].state_dict()
    src, dst = str(tmp_path / 'bare.pth'), str(tmp_path / 'out.pth')
    torch.save(state, src)
    env = dict(os.environ, PYTHONPATH=REPO)
    script = osp.join(REPO, 'tools', 'model_converters', 'mmdet_ssd_to_plugin.py')
    subprocess.run([sys.executable, script, src, dst], check=True, env=env, cwd=REPO)
    out = torch.load(dst, map_location='cpu')
    assert 'state_dict' not in out and len(out) == len(state)
    assert torch.equal(out['backbone.conv1_1.weight'], state['backbone.features.0.weight'])


def test_outputs_equal_mmdet(ssd300_pair):
    theirs, ours = ssd300_pair
    torch.manual_seed(3)
    x = torch.randn(1, 3, 300, 300) * 60
    with torch.no_grad():
        expected, got = theirs._forward(x), ours._forward(x)
    for level_expected, level_got in zip(expected[0] + expected[1], got[0] + got[1]):
        assert level_got.shape == level_expected.shape
        assert (level_got - level_expected).abs().max() <= 1e-5
    # The outputs are not trivially small: the comparison means something.
    assert max(t.abs().max() for t in expected[0]) > 1


def _separated_gts(num_imgs: int):
    """Boxes far apart (no two ground truths compete for a default box), >= 1 per image."""
    layouts = [
        [[20.0, 30.0, 120.0, 140.0], [170.0, 160.0, 290.0, 280.0]],
        [[60.0, 60.0, 240.0, 250.0]],
        [[5.0, 5.0, 45.0, 60.0], [200.0, 20.0, 280.0, 90.0], [90.0, 180.0, 180.0, 290.0]],
    ]
    gts = []
    for i in range(num_imgs):
        boxes = torch.tensor(layouts[i % len(layouts)])
        gts.append(InstanceData(bboxes=boxes, labels=torch.arange(len(boxes)) * 7 + i))
    return gts


def test_loss_equals_mmdet_where_matching_agrees(ssd300_pair):
    theirs, ours = ssd300_pair
    torch.manual_seed(4)
    num_imgs = 3
    cls_scores = [
        torch.randn(num_imgs, k * 81, s, s) * 3
        for k, s in zip([4, 6, 6, 6, 4, 4], [38, 19, 10, 5, 3, 1])
    ]
    bbox_preds = [torch.randn(num_imgs, c.shape[1] // 81 * 4, *c.shape[-2:]) for c in cls_scores]
    gts = _separated_gts(num_imgs)
    metas = [dict(img_shape=(300, 300), pad_shape=(300, 300), scale_factor=(1.0, 1.0))] * 3

    # Precondition: mmdet's MaxIoUAssigner and our bipartite matcher make the same matches.
    priors = torch.cat(
        theirs.bbox_head.prior_generator.grid_priors(
            [c.shape[-2:] for c in cls_scores], device='cpu'
        )
    )
    ours_priors = torch.cat(
        ours.bbox_head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores], device='cpu')
    )
    assert torch.allclose(priors, ours_priors, atol=1e-4)
    for gt in gts:
        expected = theirs.bbox_head.assigner.assign(InstanceData(priors=priors), gt)
        got = ours.bbox_head.matcher.assign(InstanceData(priors=priors), gt)
        assert torch.equal(expected.gt_inds, got.gt_inds)

    expected = theirs.bbox_head.loss_by_feat(cls_scores, bbox_preds, gts, metas)
    got = ours.bbox_head.loss_by_feat(cls_scores, bbox_preds, gts, metas)
    for key in ('loss_cls', 'loss_bbox'):
        assert torch.allclose(got[key], sum(expected[key]).squeeze(), rtol=1e-5, atol=1e-6), key


def _our_ssdlite():
    cfg = Config.fromfile(
        osp.join(MMDET_CONFIGS, 'ssd', 'ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py')
    )
    norm_cfg = dict(type='BN', eps=0.001, momentum=0.03)
    model = dict(
        type='SingleStageDetector',
        data_preprocessor=cfg.model.data_preprocessor,
        backbone=cfg.model.backbone,
        neck=dict(
            type='SSDExtraLayers',
            in_channels=(96, 1280),
            out_channels=(96, 1280, 512, 256, 256, 128),
            strides=(2, 2, 2, 2),
            paddings=(1, 1, 1, 1),
            l2_norm_levels=(),
            l2_norm_scale=None,
            use_depthwise=True,
            norm_cfg=norm_cfg,
            act_cfg=dict(type='ReLU6'),
        ),
        bbox_head=dict(
            type='MultiBoxHead',
            in_channels=(96, 1280, 512, 256, 256, 128),
            use_depthwise=True,
            norm_cfg=norm_cfg,
            act_cfg=dict(type='ReLU6'),
            prior_generator=dict(
                type='DefaultBoxGenerator',
                input_size=320,
                strides=(16, 32, 64, 107, 160, 320),
                ratios=([2, 3],) * 6,
                min_sizes=(48, 100, 150, 202, 253, 304),
                max_sizes=(100, 150, 202, 253, 304, 320),
            ),
        ),
        test_cfg=cfg.model.test_cfg,
    )
    return MODELS.build(model).eval()


def test_ssdlite_converts_and_outputs_equal():
    torch.manual_seed(5)
    theirs = _mmdet_model('ssdlite_mobilenetv2-scratch_8xb24-600e_coco')
    # Non-trivial BN statistics, so a BN mapped to the wrong layer would show.
    for module in theirs.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    ours = _our_ssdlite()
    ours.load_state_dict(converter.convert(theirs.state_dict()), strict=True)
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        expected, got = theirs._forward(x), ours._forward(x)
    for level_expected, level_got in zip(expected[0] + expected[1], got[0] + got[1]):
        assert (level_got - level_expected).abs().max() <= 1e-5


def test_unexpected_and_missing_keys_are_named(ssd300_pair):
    state = ssd300_pair[0].state_dict()
    extra = dict(state, **{'bbox_head.cls_convs.0.2.weight': torch.zeros(1)})
    with pytest.raises(KeyError, match=r'ckpt\.pth.*bbox_head\.cls_convs\.0\.2\.weight'):
        converter.convert(extra, source='ckpt.pth')
    missing = {k: v for k, v in state.items() if k != 'backbone.features.21.weight'}
    with pytest.raises(KeyError, match=r'ckpt\.pth.*backbone\.features\.21\.weight'):
        converter.convert(missing, source='ckpt.pth')
    no_level = {k: v for k, v in state.items() if not k.startswith('bbox_head.reg_convs.2.')}
    with pytest.raises(KeyError, match=r'bbox_head\.reg_convs\.2\.0\.weight'):
        converter.convert(no_level, source='ckpt.pth')
