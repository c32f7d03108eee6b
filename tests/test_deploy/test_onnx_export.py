"""ONNX export of a MultiBoxHead detector, checked with onnxruntime against PyTorch.

The detector is tiny (ResNet-18 at 8 base channels + SSDExtraLayers + MultiBoxHead, 128 px, 372
default boxes, 3 classes). After the Xavier init its class logits are standardised (each channel
to mean 0 and std 2 over the test images, by rescaling the last conv), so the class probabilities
spread over (0, 1) instead of sitting near 1/4 for one dominant class: the detections are then
many, of every class, with distinct scores, and NMS suppresses a good share of the candidates, so
the comparison with ``model.predict`` exercises the threshold, the per-class cap, NMS and the
per-image top-k.
"""

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict

from ssd_plugin.deploy import ONNXDetector, export_onnx

SIZE = 128
TINY_SSD = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
    ),  # fmt: skip
    backbone=dict(type='ResNet', depth=18, base_channels=8, out_indices=(2, 3), init_cfg=None),
    neck=dict(
        type='SSDExtraLayers',
        in_channels=(32, 64),
        out_channels=(32, 64, 32, 32),
        strides=(2, 2),
        paddings=(1, 1),
    ),  # fmt: skip  (maps 8, 4, 2, 1)
    bbox_head=dict(
        type='MultiBoxHead',
        num_classes=3,
        in_channels=(32, 64, 32, 32),
        prior_generator=dict(
            type='DefaultBoxGenerator',
            input_size=SIZE,
            strides=(16, 32, 64, 128),
            ratios=([2], [2, 3], [2], [2]),
            scale_mode='paper',
            scale_range=(0.2, 0.9),
        ),
    ),  # fmt: skip
    test_cfg=dict(
        nms_pre=50,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.45),
        min_bbox_size=0,
        max_per_img=30,
    ),  # fmt: skip
)


def tiny_ssd(**test_cfg) -> torch.nn.Module:
    """The tiny detector, seeded, with confident and varied class scores (see the docstring)."""
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(TINY_SSD))  # the head's test_cfg is updated below
    model.init_weights()
    # standardise every class logit channel to mean 0, std 2 over the test images
    with torch.no_grad():
        feats = model.extract_feat(model.data_preprocessor(dict(inputs=list(images(4))))['inputs'])
        for conv, feat in zip(model.bbox_head.cls_convs, feats):
            logits = conv(feat)
            mean, scale = logits.mean((0, 2, 3)), 2 / logits.std((0, 2, 3))
            conv.pred.bias.sub_(mean).mul_(scale)
            conv.pred.weight.mul_(scale[:, None, None, None])
    model.bbox_head.test_cfg.update(test_cfg)
    return model.eval()


def images(num: int) -> torch.Tensor:
    """``num`` BGR 0-255 float images: blocky random colours (structure at every scale)."""
    gen = torch.Generator().manual_seed(1)
    small = torch.rand(num, 3, 8, 8, generator=gen) * 255
    return torch.nn.functional.interpolate(small, size=(SIZE, SIZE), mode='bilinear')


def run_onnx(path, img: torch.Tensor):
    sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return sess.run(None, {'input': img.numpy()})


def predict(model, img: torch.Tensor):
    """``model.predict`` through its data preprocessor, boxes in input pixels."""
    samples = [
        DetDataSample(
            metainfo=dict(
                img_shape=(SIZE, SIZE),
                ori_shape=(SIZE, SIZE),
                scale_factor=(1.0, 1.0),
                pad_shape=(SIZE, SIZE),
            )
        )  # fmt: skip
        for _ in range(len(img))
    ]
    data = model.data_preprocessor(dict(inputs=list(img), data_samples=samples), False)
    with torch.no_grad():
        samples = model.predict(data['inputs'], data['data_samples'], rescale=False)
    return [s.pred_instances for s in samples]


def test_raw_outputs_match_pytorch_dynamic_batch_and_size(tmp_path):
    model = tiny_ssd()
    path = tmp_path / 'raw.onnx'
    wrapper = export_onnx(model, str(path), (SIZE, SIZE), dynamic_size=True)
    # another batch and another (non-square) size than the example input of the export
    for img in (images(3), images(2)[..., :96, :160]):
        with torch.no_grad():
            feats = model.extract_feat(model.data_preprocessor.forward(
                dict(inputs=list(img.to(torch.uint8).float())), False)['inputs'])  # fmt: skip
            cls_ref, reg_ref = model.bbox_head.flatten_outputs(*model.bbox_head(feats))
            cls_wrap, reg_wrap = wrapper(img.to(torch.uint8).float())
        cls_onnx, reg_onnx = run_onnx(path, img.to(torch.uint8).float())
        assert cls_onnx.shape == tuple(cls_ref.shape) and cls_ref.shape[-1] == 4
        assert reg_onnx.shape == tuple(reg_ref.shape)
        # the graph's preprocessing is the data preprocessor's
        torch.testing.assert_close(cls_wrap, cls_ref, rtol=0, atol=1e-5)
        np.testing.assert_allclose(cls_onnx, cls_ref.numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(reg_onnx, reg_ref.numpy(), rtol=0, atol=1e-4)


def test_decoded_outputs_match_pytorch(tmp_path):
    model = tiny_ssd()
    path = tmp_path / 'decoded.onnx'
    wrapper = export_onnx(model, str(path), (SIZE, SIZE), decode=True)
    img = images(2)
    with torch.no_grad():
        scores_ref, boxes_ref = wrapper(img)
    scores, boxes = run_onnx(path, img)
    assert scores.shape == (2, 372, 3) and boxes.shape == (2, 372, 4)
    np.testing.assert_allclose(scores, scores_ref.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(boxes, boxes_ref.numpy(), rtol=0, atol=1e-3)
    assert boxes.min() >= 0 and boxes.max() <= SIZE  # clipped to the image


@pytest.mark.parametrize(
    'test_cfg',
    [
        dict(),  # nms_pre 50 of 372 per class, 30 per image: both caps bind
        dict(nms_pre=-1, score_thr=0.9, max_per_img=100),  # few detections: padded rows
    ],
)
@pytest.mark.parametrize('bounded', [True, False])
def test_detections_match_predict(tmp_path, test_cfg, bounded):
    model = tiny_ssd(**test_cfg)
    path = tmp_path / 'dets.onnx'
    export_onnx(model, str(path), (SIZE, SIZE), with_nms=True, classes=('a', 'b', 'c'),
                bounded=bounded)  # fmt: skip
    img = images(3)
    dets, labels = run_onnx(path, img)
    cfg = ConfigDict(model.bbox_head.test_cfg)
    assert dets.shape == (3, cfg.max_per_img, 5) and labels.shape == (3, cfg.max_per_img)
    assert labels.dtype == np.int64

    results = predict(model, img)
    # what NMS does here: it removes candidates, and changes the kept top-k of some image
    head = model.bbox_head
    with torch.no_grad():
        outs = head(model.extract_feat(model.data_preprocessor(dict(inputs=list(img)))['inputs']))
    metas = [dict(img_shape=(SIZE, SIZE))] * 3
    all_kept, all_cands = (
        head.predict_by_feat(
            *outs, batch_img_metas=metas, cfg=dict(cfg, max_per_img=10**4), with_nms=with_nms
        )  # fmt: skip
        for with_nms in (True, False)
    )
    without_nms = head.predict_by_feat(*outs, batch_img_metas=metas, with_nms=False)
    assert any(
        len(r.scores) != len(n.scores) or not torch.equal(r.scores, n.scores)
        for r, n in zip(results, without_nms)
    )
    for i, result in enumerate(results):
        num = len(result.scores)
        # non-degenerate: detections of several classes, distinct scores
        assert 3 <= num and len(set(result.labels.tolist())) >= 2
        assert len(torch.unique(result.scores)) == num
        assert len(all_kept[i].scores) < len(all_cands[i].scores)
        valid = labels[i] >= 0
        assert valid.sum() == num and valid[:num].all()  # detections first, then padding
        np.testing.assert_array_equal(labels[i, :num], result.labels.numpy())
        np.testing.assert_allclose(dets[i, :num, 4], result.scores.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(dets[i, :num, :4], result.bboxes.numpy(), rtol=0, atol=1e-3)
        assert (dets[i, num:] == 0).all()
    if test_cfg:
        assert (labels == -1).any()  # padding exercised
    else:
        assert all(len(r.scores) == cfg.max_per_img for r in results)  # top-k cap exercised


def test_dynamic_batch_with_nms_and_metadata(tmp_path):
    import onnx

    model = tiny_ssd()
    path = tmp_path / 'dets.onnx'
    export_onnx(model, str(path), (SIZE, SIZE), with_nms=True, classes=('a', 'b', 'c'))
    proto = onnx.load(str(path))
    # bounded: the first prefix stage's NMS, then If (exact?) with the wider stages inside
    assert {'NonMaxSuppression', 'If'} <= {node.op_type for node in proto.graph.node}
    props = {p.key: p.value for p in proto.metadata_props}
    assert props['classes'] == '["a", "b", "c"]' and props['input_size'] == '[128, 128]'
    assert props['postprocess'] == '"bounded"'
    img = images(4)
    dets_batch, labels_batch = run_onnx(path, img)
    dets_one, labels_one = run_onnx(path, img[2:3])
    np.testing.assert_array_equal(labels_batch[2:3], labels_one)
    np.testing.assert_allclose(dets_batch[2:3], dets_one, rtol=0, atol=1e-4)


def test_clear_errors(tmp_path):
    model = tiny_ssd()
    with pytest.raises(ValueError, match='dynamic_size needs raw outputs'):
        export_onnx(model, str(tmp_path / 'x.onnx'), (SIZE, SIZE), decode=True, dynamic_size=True)
    with pytest.raises(ValueError, match='built for'):
        ONNXDetector(model, (SIZE, SIZE), decode=True)(images(1)[..., :96, :96])
    model.bbox_head = torch.nn.Identity()
    with pytest.raises(TypeError, match='MultiBoxHead'):
        ONNXDetector(model, (SIZE, SIZE))


def test_export_and_predict_share_the_heads_decode(monkeypatch):
    """One decode: the graph and ``predict`` both take ``MultiBoxHead.decode``'s values.

    Both get the same decoded scores and boxes, and a 1 px shift of the boxes ``decode`` returns
    moves both outputs by exactly 1 px (NMS is shift-invariant) and changes nothing else.
    """
    model = tiny_ssd()
    img = images(2)
    wrapper = ONNXDetector(model, (SIZE, SIZE), with_nms=True)
    with torch.no_grad():
        dets, labels = wrapper(img)
    results = predict(model, img)
    calls = []
    decode = model.bbox_head.decode

    def shifted(*args, **kwargs):
        scores, boxes = decode(*args, **kwargs)
        calls.append((scores, boxes))
        return scores, boxes + 1.0

    monkeypatch.setattr(model.bbox_head, 'decode', shifted)
    with torch.no_grad():
        dets_moved, labels_moved = wrapper(img)
    moved = predict(model, img)
    assert len(calls) == 2  # one decode per forward, none elsewhere
    torch.testing.assert_close(calls[0], calls[1], rtol=0, atol=1e-6)  # the same values
    valid = labels >= 0
    assert valid.sum() > 0 and torch.equal(labels_moved, labels)
    torch.testing.assert_close(dets_moved[..., 4], dets[..., 4], rtol=0, atol=0)
    torch.testing.assert_close(dets_moved[valid][:, :4], dets[valid][:, :4] + 1, rtol=0, atol=1e-5)
    for before, after, i in zip(results, moved, range(2)):
        assert torch.equal(after.labels, before.labels) and len(before.scores) == valid[i].sum()
        torch.testing.assert_close(after.scores, before.scores, rtol=0, atol=0)
        torch.testing.assert_close(after.bboxes, before.bboxes + 1, rtol=0, atol=1e-5)
