"""MultiBoxHead: structure, batched loss edge cases, and inference equal to mmdet's."""

import copy
import math
import os.path as osp
from types import SimpleNamespace

import mmdet
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config, ConfigDict
from mmengine.structures import InstanceData

MMDET_SSD300 = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', 'ssd', 'ssd300_coco.py')
SSD300_SIZES = [38, 19, 10, 5, 3, 1]
SSD300_K = [4, 6, 6, 6, 4, 4]
TEST_CFG = dict(
    score_thr=0.01, nms_pre=400, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0,
    max_per_img=200,
)  # fmt: skip


def _head(**kwargs):
    cfg = dict(type='MultiBoxHead', test_cfg=TEST_CFG)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _realistic_outputs(num_imgs, num_classes=80, num_objects=300, seed=0):
    """Logits where most default boxes are confidently background and a few are objects."""
    gen = torch.Generator().manual_seed(seed)
    cls_scores, bbox_preds = [], []
    for k, s in zip(SSD300_K, SSD300_SIZES):
        logits = torch.randn(num_imgs, s, s, k, num_classes + 1, generator=gen)
        logits[..., num_classes] += 8  # background
        cls_scores.append(logits)
        bbox_preds.append(torch.randn(num_imgs, k * 4, s, s, generator=gen) * 0.5)
    flat = torch.cat([c.reshape(num_imgs, -1, num_classes + 1) for c in cls_scores], 1)
    objects = torch.randint(flat.shape[1], (num_imgs, num_objects), generator=gen)
    labels = torch.randint(num_classes, (num_imgs, num_objects), generator=gen)
    rows = torch.arange(num_imgs)[:, None]
    flat[rows, objects, labels] += 10 + 3 * torch.rand(num_imgs, num_objects, generator=gen)
    cls_out, start = [], 0
    for c in cls_scores:
        n = c[0].numel() // (num_classes + 1)
        level = flat[:, start : start + n].reshape(c.shape)
        cls_out.append(level.flatten(3).permute(0, 3, 1, 2).contiguous())
        start += n
    return cls_out, bbox_preds


def test_structure_and_levels():
    head = _head(num_classes=20)
    assert [c.pred.out_channels for c in head.cls_convs] == [k * 21 for k in SSD300_K]
    assert [c.pred.out_channels for c in head.reg_convs] == [k * 4 for k in SSD300_K]
    assert all(c.pred.kernel_size == (3, 3) and c.pred.padding == (1, 1) for c in head.cls_convs)
    lite = _head(
        in_channels=(96, 1280, 512, 256, 256, 128), use_depthwise=True,
        norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU6'),
    )  # fmt: skip
    level = lite.reg_convs[1]
    assert level.depthwise.conv.groups == 1280 and level.pred.kernel_size == (1, 1)
    assert isinstance(level.depthwise.activate, torch.nn.ReLU6)
    with pytest.raises(ValueError, match=r'in_channels=\(512, 1024\) has 2 levels.*6'):
        _head(in_channels=(512, 1024))
    with pytest.raises(ValueError, match='got 5 feature maps'):
        head([torch.zeros(1, c, 1, 1) for c in (512, 1024, 512, 256, 256)])


def test_predict_equals_mmdet_with_comparable_settings():
    """Same outputs through mmdet's SSDHead (made to run) and ours: identical detections."""
    mmdet_cfg = Config.fromfile(MMDET_SSD300).model
    comparable = dict(TEST_CFG, nms_pre=100000)  # mmdet's nms_pre is per level: disable both
    theirs = MODELS.build(dict(mmdet_cfg.bbox_head, test_cfg=ConfigDict(comparable)))
    theirs.loss_cls = SimpleNamespace()  # mmdet 3.3 SSDHead lacks it (issue #11063)
    ours = _head(test_cfg=dict(comparable, nms_pre=-1))
    cls_scores, bbox_preds = _realistic_outputs(2)
    metas = [
        dict(img_shape=(300, 300), scale_factor=(0.5, 0.75)),
        dict(img_shape=(300, 300), scale_factor=(1.5, 2.0)),
    ]
    expected = theirs.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas, rescale=True)
    got = ours.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas, rescale=True)
    for exp, res in zip(expected, got):
        assert len(res) == len(exp) > 50
        order = exp.scores.argsort(descending=True, stable=True)
        assert torch.allclose(res.scores, exp.scores[order], atol=1e-6)
        assert torch.equal(res.labels, exp.labels[order])
        assert torch.allclose(res.bboxes, exp.bboxes[order], atol=1e-3)


def test_predict_limits_sorting_threshold_and_rescale():
    head = _head()
    cls_scores, bbox_preds = _realistic_outputs(3, num_objects=2000, seed=1)
    metas = [
        dict(img_shape=(300, 300), scale_factor=(300 / 640, 300 / 480)),
        dict(img_shape=(300, 300), scale_factor=(2.0, 2.0)),
        dict(img_shape=(300, 300), scale_factor=(1.0, 1.0)),
    ]
    scaled = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas, rescale=True)
    raw = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas, rescale=False)
    assert len(scaled[0]) == 200  # 2000 objects: the cap binds
    for res, res_raw, meta in zip(scaled, raw, metas):
        assert len(res) <= 200
        assert (res.scores[:-1] >= res.scores[1:]).all() and (res.scores > 0.01).all()
        w, h = 300 / meta['scale_factor'][0], 300 / meta['scale_factor'][1]
        assert (res.bboxes >= 0).all()
        assert (res.bboxes[:, 0::2] <= w + 1e-3).all() and (res.bboxes[:, 1::2] <= h + 1e-3).all()
        scale = torch.tensor(meta['scale_factor']).repeat(2)
        assert torch.allclose(res.bboxes * scale, res_raw.bboxes, atol=1e-3)
    assert scaled[0].bboxes[:, 2].max() > 300  # really in the 640-wide original image


def _gt(boxes, labels):
    return InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        labels=torch.tensor(labels, dtype=torch.long))  # fmt: skip


def _small_head():
    return _head(num_classes=3, in_channels=(8,) * 6)


def _features(num_imgs):
    return [torch.randn(num_imgs, 8, s, s, requires_grad=True) for s in SSD300_SIZES]


def test_degenerate_ground_truths_give_finite_loss():
    torch.manual_seed(0)
    head = _small_head()
    feats = _features(2)
    gts = [
        # zero width, a normal box, off the image, inverted
        _gt([[50, 50, 50, 120], [10, 10, 80, 90], [400, 400, 500, 500], [90, 90, 60, 60]],
            [0, 1, 2, 0]),
        # off the image (negative), a point, NaN
        _gt([[-50, -50, -10, -10], [30, 30, 30, 30], [float('nan'), 0, 10, 10]], [1, 2, 0]),
    ]  # fmt: skip
    losses = head.loss_by_feat(*head(feats), gts, [dict(img_shape=(300, 300))] * 2)
    total = losses['loss_cls'] + losses['loss_bbox']
    assert torch.isfinite(total) and total > 0
    total.backward()
    assert all(torch.isfinite(f.grad).all() for f in feats)


def test_empty_ground_truths_give_zero_loss_with_graph():
    torch.manual_seed(0)
    head = _small_head()
    feats = _features(2)
    gts = [_gt([], []), _gt([], [])]
    losses = head.loss_by_feat(*head(feats), gts, [dict(img_shape=(300, 300))] * 2)
    assert losses['loss_cls'] == 0 and losses['loss_bbox'] == 0
    (losses['loss_cls'] + losses['loss_bbox']).backward()
    assert all(f.grad is not None and not f.grad.any() for f in feats)


def test_empty_image_in_batch_adds_nothing():
    """An image without ground truths contributes no loss (paper's N counts positives)."""
    torch.manual_seed(1)
    head = _small_head()
    feats = [f.detach() for f in _features(2)]
    gt = _gt([[40, 60, 200, 220]], [2])
    metas = [dict(img_shape=(300, 300))]
    alone = head.loss_by_feat(*head([f[:1] for f in feats]), [gt], metas)
    both = head.loss_by_feat(*head(feats), [gt, _gt([], [])], metas * 2)
    for key in alone:
        assert torch.allclose(alone[key], both[key])


def test_resnet18_ssd_trains_a_step_and_predicts():
    """The head on another backbone: mmdet's ResNet-18 + SSDExtraLayers, 128 px inputs."""
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='SingleStageDetector',
            data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                                   std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
            backbone=dict(type='ResNet', depth=18, out_indices=(2, 3), norm_eval=False),
            neck=dict(type='SSDExtraLayers', in_channels=(256, 512),
                      out_channels=(256, 512, 256, 128), strides=(2, 2), paddings=(1, 1),
                      l2_norm_levels=()),
            bbox_head=dict(type='MultiBoxHead', num_classes=5, in_channels=(256, 512, 256, 128),
                           prior_generator=dict(type='DefaultBoxGenerator', input_size=128,
                                                strides=None, ratios=([2],) * 4,
                                                scale_range=(0.2, 0.9))),
            test_cfg=TEST_CFG,
        )
    )  # fmt: skip
    model.init_weights()
    samples = []
    for i in range(2):
        meta = dict(img_shape=(128, 128), ori_shape=(256, 192), scale_factor=(128 / 192, 0.5),
                    pad_shape=(128, 128))  # fmt: skip
        sample = DetDataSample(metainfo=meta)
        sample.gt_instances = _gt([[10, 20, 70, 90], [60, 30, 120, 110]][: i + 1], [1, 4][: i + 1])
        samples.append(sample)
    data = dict(inputs=[torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8)] * 2,
                data_samples=samples)  # fmt: skip
    data = model.data_preprocessor(data, training=True)
    losses = model(**data, mode='loss')
    total = losses['loss_cls'] + losses['loss_bbox']
    assert torch.isfinite(total) and total > 0
    total.backward()
    assert model.bbox_head.cls_convs[0].pred.weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        results = model(data['inputs'], copy.deepcopy(data['data_samples']), mode='predict')
    for res in results:
        pred = res.pred_instances
        assert len(pred) <= 200 and pred.bboxes.shape[1] == 4
        assert (pred.bboxes[:, 0::2] <= 192 + 1e-3).all() and (
            pred.bboxes[:, 1::2] <= 256 + 1e-3
        ).all()


def test_forward_takes_any_iterable_of_levels():
    """mmdet's own SSD head test passes a generator of feature maps."""
    head = _small_head()
    feats = _features(2)
    from_list = head(feats)
    from_generator = head(f for f in feats)
    for a, b in zip(from_list[0] + from_list[1], from_generator[0] + from_generator[1]):
        assert torch.equal(a, b)


def test_class_channels_report_mapped_labels_and_train_mapped_channels():
    """Four foreground channels, two reported: channel 3 is label 0, channel 1 label 1."""
    torch.manual_seed(3)
    feats = _features(2)
    full = _head(num_classes=4, in_channels=(8,) * 6, test_cfg=dict(TEST_CFG, max_per_img=30))
    mapped = _head(
        num_classes=2, num_class_channels=4, class_channels=[3, 1], in_channels=(8,) * 6,
        test_cfg=dict(TEST_CFG, max_per_img=30),
    )  # fmt: skip
    mapped.load_state_dict(full.state_dict())
    assert mapped.cls_convs[0].pred.out_channels == 4 * 5
    with torch.no_grad():  # spread the scores so every channel has detections
        for conv in full.cls_convs:
            conv.pred.weight.mul_(40)
        mapped.load_state_dict(full.state_dict())
        outputs = full(feats)
    metas = [dict(img_shape=(300, 300))] * 2
    everything = full.predict_by_feat(*outputs, batch_img_metas=metas)
    reported = mapped.predict_by_feat(*outputs, batch_img_metas=metas)
    to_label = torch.tensor([-1, 1, -1, 0])
    for exp, res in zip(everything, reported):
        keep = to_label[exp.labels] >= 0  # the same top-k, unreported channels dropped after it
        assert 0 < keep.sum() < len(exp) == 30
        assert torch.equal(res.labels, to_label[exp.labels[keep]])
        assert torch.equal(res.scores, exp.scores[keep]) and torch.equal(
            res.bboxes, exp.bboxes[keep]
        )
    gts = [_gt([[10, 10, 120, 140], [150, 60, 290, 200]], [0, 1]), _gt([[30, 40, 90, 80]], [1])]
    full_gts = [InstanceData(bboxes=g.bboxes, labels=torch.tensor([3, 1])[g.labels]) for g in gts]
    loss = mapped.loss_by_feat(*outputs, gts, metas)
    expected = full.loss_by_feat(*outputs, full_gts, metas)
    for key in ('loss_cls', 'loss_bbox'):
        torch.testing.assert_close(loss[key], expected[key])
    with pytest.raises(ValueError, match='class_channels must list 2 distinct channels in'):
        _head(num_classes=2, num_class_channels=4, class_channels=[3, 3])


def test_images_without_a_score_above_the_threshold_skip_decoding():
    """Untrained outputs (nothing above mmdet's 0.02) next to images with detections."""
    cls_scores, bbox_preds = _realistic_outputs(4, num_objects=50, seed=5)
    for level in cls_scores:
        level[1].mul_(0.001)  # image 1: near-uniform softmax, every score about 1/81 < 0.02
    head = _head(test_cfg=dict(TEST_CFG, score_thr=0.02, nms_pre=1000))
    # image 3: one default box whose best score is just above the threshold, nothing else
    for level in cls_scores:
        level[3].zero_()
        level[3, 80::81] = 10.0  # background everywhere
    logits = torch.full((81,), 0.0)
    logits[80] = 10.0
    p = 0.0200001  # e^x7 / (e^10 + e^x7 + 79 e^0) = p
    logits[7] = torch.log(torch.tensor(p * (math.exp(10.0) + 79) / (1 - p), dtype=torch.float64))
    cls_scores[2][3, :81, 1, 1] = logits
    metas = [dict(img_shape=(300, 300))] * 4
    assert head.images_above(cls_scores, 0.02).tolist() == [True, False, True, True]
    got = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas)
    scores, boxes = head.decode(cls_scores, bbox_preds, metas)
    from ssd_plugin.functional.postprocess import batched_multiclass_nms

    ref = batched_multiclass_nms(boxes, scores, 0.02, 0.45, 1000, 200)
    for i, res in enumerate(got):
        n = int(ref[3][i].sum())
        assert len(res) == n and torch.equal(res.scores, ref[1][i, :n]), i
        assert torch.equal(res.bboxes, ref[0][i, :n]) and torch.equal(res.labels, ref[2][i, :n])
    assert len(got[1]) == 0 and len(got[3]) == 1 and got[3].labels.tolist() == [7]
    assert len(got[0]) == 200


def test_one_meta_for_the_batch_with_images_skipped():
    """``decode``'s single-meta form through predict_by_feat, when an image is skipped."""
    cls_scores, bbox_preds = _realistic_outputs(3, num_objects=40, seed=6)
    for level in cls_scores:
        level[1].mul_(0.001)  # image 1: nothing above 0.02, skipped before decoding
    head = _head(test_cfg=dict(TEST_CFG, score_thr=0.02))
    meta = dict(img_shape=(300, 300), scale_factor=(1.5, 2.0))
    one = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=[meta], rescale=True)
    each = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=[meta] * 3, rescale=True)
    assert [len(r) for r in one] == [len(r) for r in each] and len(one[1]) == 0
    assert len(one[0]) > 0 and len(one[2]) > 0
    for a, b in zip(one, each):
        assert torch.equal(a.bboxes, b.bboxes) and torch.equal(a.scores, b.scores)
        assert torch.equal(a.labels, b.labels)
    with pytest.raises(ValueError, match='one meta per image'):
        head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=[meta] * 2)


def test_default_test_cfg_is_what_an_empty_test_cfg_means():
    from ssd_plugin.models.dense_heads.inference_cfg import DEFAULT_TEST_CFG

    cls_scores, bbox_preds = _realistic_outputs(1, num_objects=300, seed=7)
    metas = [dict(img_shape=(300, 300))]
    nms = dict(nms=TEST_CFG['nms'])
    got = _head(test_cfg=nms).predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas)
    explicit = _head(test_cfg=dict(nms, **DEFAULT_TEST_CFG)).predict_by_feat(
        cls_scores, bbox_preds, batch_img_metas=metas
    )
    assert len(got[0]) == DEFAULT_TEST_CFG['max_per_img'] == 200
    assert torch.equal(got[0].scores, explicit[0].scores)


def _fpn_ssd300(strides=(8, 16, 32, 64, 100, 300), width=64):
    """The issue's detector: ResNet-18 C3-C5 -> mmdet's FPN (6 outputs, extra convs on the
    outputs) -> MultiBoxHead with SSD300's default boxes (``strides``). ``width=64`` is
    ResNet-18 itself (C3-C5: 128, 256, 512 channels, FPN 256); less is narrower, the same levels."""
    c3, fpn = 2 * width, 4 * width
    return MODELS.build(
        dict(
            type='SingleStageDetector',
            data_preprocessor=dict(type='DetDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1]),
            backbone=dict(type='ResNet', depth=18, base_channels=width, out_indices=(1, 2, 3)),
            neck=dict(type='FPN', in_channels=[c3, 2 * c3, 4 * c3], out_channels=fpn, num_outs=6,
                      add_extra_convs='on_output'),
            bbox_head=dict(type='MultiBoxHead', num_classes=3, in_channels=(fpn,) * 6,
                           prior_generator=dict(type='DefaultBoxGenerator', input_size=300,
                                                strides=strides, ratios=SSD300_GENERATOR_RATIOS)),
            test_cfg=TEST_CFG,
        )
    )  # fmt: skip


SSD300_GENERATOR_RATIOS = ([2], [2, 3], [2, 3], [2, 3], [2], [2])


def _fpn_batch(model, size=300):
    meta = dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=(1.0, 1.0),
                pad_shape=(size, size))  # fmt: skip
    sample = DetDataSample(metainfo=meta)
    sample.gt_instances = _gt([[30, 40, 200, 220]], [1])
    data = dict(inputs=[torch.randint(0, 255, (3, size, size), dtype=torch.uint8)],
                data_samples=[sample])  # fmt: skip
    return model.data_preprocessor(data, training=True)


def test_fpn_levels_against_ssd300_default_boxes_are_an_error_in_train_predict_and_export(
    tmp_path,
):
    """FPN's last level is 2x2 where SSD300's stride 300 lays out 1x1: loss, predict and the
    ONNX export stop at the first forward, naming the level, both sizes and the strides to set."""
    from ssd_plugin.deploy import export_onnx

    torch.manual_seed(0)
    model = _fpn_ssd300()  # the exact network
    assert model.neck.in_channels == [128, 256, 512] and model.neck.out_channels == 256
    data = _fpn_batch(model)
    feats = model.extract_feat(data['inputs'])
    assert [tuple(f.shape[-2:]) for f in feats] == [(s, s) for s in (38, 19, 10, 5, 3, 2)]
    expected = (
        r'level 5: the network gives 2x2, stride 300 expects 1x1.*'
        r'strides=\(8, 16, 32, 64, 100, 150\)'
    )
    with pytest.raises(ValueError, match=expected):
        model(**data, mode='loss')
    model.eval()
    with torch.no_grad(), pytest.raises(ValueError, match=expected):
        model(**data, mode='predict')
    for decode in (False, True):
        with pytest.raises(ValueError, match=expected):
            export_onnx(model, str(tmp_path / 'fpn.onnx'), (300, 300), decode=decode)
    assert not (tmp_path / 'fpn.onnx').exists()


def test_fpn_with_strides_from_its_levels_trains_and_predicts():
    torch.manual_seed(0)
    model = _fpn_ssd300(strides=(8, 16, 32, 64, 100, 150), width=8)
    data = _fpn_batch(model)
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['loss_cls'] + losses['loss_bbox'])
    model.eval()
    with torch.no_grad():
        (result,) = model(**data, mode='predict')
    # the last level's boxes are centred on the image: (j + 0.5) * 150 for j = 0, 1
    last = model.bbox_head.prior_generator.grid_priors([(2, 2)] * 6, device='cpu')[5]
    centres = (last[:, :2] + last[:, 2:]) / 2
    assert sorted(set(centres[:, 0].tolist())) == [75.0, 225.0]
    assert len(result.pred_instances) <= TEST_CFG['max_per_img']


def test_the_level_check_runs_once_per_input_shape(monkeypatch):
    head = _small_head()
    calls = []
    check = head.prior_generator.check_featmap_sizes
    monkeypatch.setattr(head.prior_generator, 'check_featmap_sizes',
                        lambda *args: calls.append(args) or check(*args))  # fmt: skip
    feats = _features(1)
    metas = [dict(img_shape=(300, 300))]
    gts = [_gt([[10, 10, 80, 90]], [1])]
    for _ in range(3):
        head.loss_by_feat(*head(feats), gts, metas)
        head.predict_by_feat(*head(feats), batch_img_metas=metas)
    assert len(calls) == 1
    # mmdet's padded batch shape is the network input when the metas hold it
    head.predict_by_feat(
        *head(feats), batch_img_metas=[dict(metas[0], batch_input_shape=(300, 300))]
    )
    assert len(calls) == 1
    with pytest.raises(ValueError, match='on a 600x600 input'):
        head.predict_by_feat(*head(feats), batch_img_metas=[dict(img_shape=(600, 600))])
    assert len(calls) == 2
