"""One reader of ``test_cfg``: its defaults, its checks, and the same refusal on every path."""

import pytest
import torch
from mmdet.registry import MODELS

from ssd_plugin.deploy.onnx_postprocess import PostProcess
from ssd_plugin.models.dense_heads.inference_cfg import (
    DEFAULT_TEST_CFG,
    InferenceCfg,
    read_test_cfg,
)

NMS = dict(type='nms', iou_threshold=0.45)


def test_defaults_fill_what_the_config_leaves_out():
    assert read_test_cfg({}) == InferenceCfg(
        score_thr=0.0, iou_thr=None, nms_pre=-1, max_per_img=200, min_bbox_size=-1
    )
    assert DEFAULT_TEST_CFG == dict(score_thr=0.0, nms_pre=-1, max_per_img=200, min_bbox_size=-1)
    paper = dict(score_thr=0.01, nms_pre=400, nms=NMS, min_bbox_size=0, max_per_img=200)
    assert read_test_cfg(paper) == InferenceCfg(0.01, 0.45, 400, 200, 0.0)
    assert read_test_cfg(dict(nms=dict(iou_threshold=0.5))).iou_thr == 0.5  # type: mmdet's 'nms'


BAD = [
    (None, 'needs a test_cfg'),
    (dict(score_threshold=0.5), r"keys MultiBoxHead does not read: \['score_threshold'\]"),
    (dict(score_thr=-0.1), 'score_thr must be >= 0 and < 1, got -0.1'),
    (dict(score_thr=1.0), 'score_thr must be >= 0 and < 1, got 1.0'),
    (dict(score_thr='0.5'), "score_thr must be a number, got '0.5'"),
    (dict(nms_pre=0), 'nms_pre must be >= 1, or -1 for no cap, got 0'),
    (dict(nms_pre=2.5), 'nms_pre must be an integer, got 2.5'),
    (dict(max_per_img=0), 'max_per_img must be >= 1, got 0'),
    (dict(max_per_img=True), 'max_per_img must be an integer, got True'),
    (dict(nms=dict(type='soft_nms', iou_threshold=0.5)), "only type='nms'"),
    (dict(nms=dict(type='nms')), r'nms must be dict\(type="nms", iou_threshold=...\)'),
    (dict(nms=dict(iou_threshold=1.5)), r'iou_threshold must be in \[0, 1\], got 1.5'),
    (dict(min_bbox_size=None), 'min_bbox_size must be a number, got None'),
]


@pytest.mark.parametrize('cfg, message', BAD)
def test_bad_settings_are_named(cfg, message):
    with pytest.raises(ValueError, match=message):
        read_test_cfg(cfg)


@pytest.mark.parametrize(
    'cfg, message', [(dict(c, nms=NMS), m) for c, m in BAD if c and 'nms' not in c]
)
def test_the_head_and_the_onnx_stage_refuse_the_same_settings(cfg, message):
    """Both paths read test_cfg through read_test_cfg: one message for one mistake."""
    head = MODELS.build(
        dict(type='MultiBoxHead', num_classes=3, in_channels=(8,) * 6, test_cfg=cfg)
    )
    feats = [torch.zeros(1, 8, s, s) for s in (38, 19, 10, 5, 3, 1)]
    with pytest.raises(ValueError, match=message):
        head.predict_by_feat(*head(feats), batch_img_metas=[dict(img_shape=(300, 300))])
    with pytest.raises(ValueError, match=message):
        PostProcess(cfg, head.channel_labels)


def test_onnx_needs_nms_and_the_head_can_skip_it():
    head = MODELS.build(
        dict(type='MultiBoxHead', num_classes=3, in_channels=(8,) * 6, test_cfg=dict(score_thr=0.5))
    )
    feats = [torch.zeros(1, 8, s, s) for s in (38, 19, 10, 5, 3, 1)]
    head.predict_by_feat(*head(feats), batch_img_metas=[dict(img_shape=(300, 300))])
    with pytest.raises(ValueError, match=r'test_cfg.nms=dict\(iou_threshold=...\) is needed'):
        PostProcess(dict(score_thr=0.5), head.channel_labels)
