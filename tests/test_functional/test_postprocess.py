"""Batched post-processing equals Caffe's per-image, per-class DetectionOutput loop."""

import pytest
import torch
from torchvision.ops import nms

from ssd_plugin.functional.postprocess import (
    batched_multiclass_nms,
    group_rank,
    padded_greedy_nms,
)


def _random_boxes(*shape, size=100.0, generator=None):
    xy = torch.rand(*shape, 2, generator=generator) * size
    wh = torch.rand(*shape, 2, generator=generator) * size / 3 + 1
    return torch.cat([xy, xy + wh], dim=-1)


def _reference(boxes, scores, score_thr, iou_thr, nms_pre, max_per_img):
    """Caffe's DetectionOutput: loop over images and classes, torchvision NMS, then top-k."""
    results = []
    for img_boxes, img_scores in zip(boxes, scores):
        dets = []
        for label in range(img_scores.shape[1]):
            cls_scores = img_scores[:, label]
            keep = (cls_scores > score_thr).nonzero().squeeze(1)
            keep = keep[cls_scores[keep].argsort(descending=True)][:nms_pre]
            kept = keep[nms(img_boxes[keep], cls_scores[keep], iou_thr)]
            dets += [(float(cls_scores[i]), label, img_boxes[i]) for i in kept]
        dets.sort(key=lambda d: -d[0])
        results.append(dets[:max_per_img])
    return results


def test_group_rank_orders_by_group_then_score():
    groups = torch.tensor([1, 0, 1, 1, 0])
    scores = torch.tensor([0.2, 0.5, 0.9, 0.2, 0.7])
    order, rank = group_rank(groups, scores, num_groups=3)
    assert order.tolist() == [4, 1, 2, 0, 3]  # ties (0.2, 0.2) keep input order
    assert rank.tolist() == [0, 1, 0, 1, 2]


def test_padded_greedy_nms_equals_torchvision_per_row():
    gen = torch.Generator().manual_seed(0)
    boxes = _random_boxes(7, 40, size=60.0, generator=gen)
    lengths = torch.tensor([40, 0, 1, 17, 40, 25, 3])
    valid = torch.arange(40)[None] < lengths[:, None]
    for max_elements in (1 << 24, 2000):  # one chunk, and several chunks of rows
        keep = padded_greedy_nms(boxes, valid, iou_thr=0.45, max_elements=max_elements)
        for row in range(7):
            n = int(lengths[row])
            # Rows are sorted by descending score: decreasing scores give that order.
            expected = nms(boxes[row, :n], torch.linspace(1, 0.1, n) if n else torch.zeros(0), 0.45)
            assert keep[row].nonzero().squeeze(1).tolist() == sorted(expected.tolist())
    # Suppression chains longer than one step are resolved exactly (a kept box's victims are
    # not suppressors): boxes 0, 1, 2 overlap consecutively; greedy keeps 0 and 2.
    chain = torch.tensor([[[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]]])
    keep = padded_greedy_nms(chain, torch.ones(1, 3, dtype=torch.bool), iou_thr=0.3)
    assert keep.tolist() == [[True, False, True]]


@pytest.mark.parametrize('nms_pre, max_per_img', [(400, 200), (5, 200), (400, 7)])
def test_batched_multiclass_nms_equals_caffe_loop(nms_pre, max_per_img):
    gen = torch.Generator().manual_seed(1)
    num_imgs, num_priors, num_classes = 3, 300, 4
    boxes = _random_boxes(num_imgs, num_priors, generator=gen)
    scores = torch.rand(num_imgs, num_priors, num_classes, generator=gen) ** 3
    scores[1] *= 0.05  # image 1: almost nothing above the threshold
    out = batched_multiclass_nms(boxes, scores, 0.01, 0.45, nms_pre, max_per_img)
    out_boxes, out_scores, out_labels, out_valid = out
    assert out_boxes.shape == (num_imgs, max_per_img, 4) and out_valid.shape == (
        num_imgs,
        max_per_img,
    )
    expected = _reference(boxes, scores, 0.01, 0.45, nms_pre, max_per_img)
    for i, dets in enumerate(expected):
        n = int(out_valid[i].sum())
        assert n == len(dets) and out_valid[i, :n].all()
        assert out_scores[i, :n].tolist() == pytest.approx([d[0] for d in dets])
        assert out_labels[i, :n].tolist() == [d[1] for d in dets]
        assert torch.equal(
            out_boxes[i, :n], torch.stack([d[2] for d in dets]) if dets else out_boxes[i, :0]
        )
        assert not out_scores[i, n:].any() and not out_valid[i, n:].any()
    assert any(len(d) == max_per_img for d in expected) or max_per_img == 200


def test_nothing_above_threshold_and_no_nms():
    boxes = _random_boxes(2, 10)
    scores = torch.full((2, 10, 3), 0.005)
    out_boxes, out_scores, out_labels, out_valid = batched_multiclass_nms(
        boxes, scores, 0.01, 0.45, 400, 5
    )
    assert out_boxes.shape == (2, 5, 4) and not out_valid.any()
    scores[0, :4, 1] = torch.tensor([0.2, 0.9, 0.5, 0.3])
    boxes[0, :4] = torch.tensor([0.0, 0, 10, 10])  # identical boxes: NMS would keep one
    _, out_scores, out_labels, out_valid = batched_multiclass_nms(boxes, scores, 0.01, None, 400, 5)
    assert out_scores[0, :4].tolist() == pytest.approx([0.9, 0.5, 0.3, 0.2])
    assert out_valid.sum() == 4 and (out_labels[0, :4] == 1).all()


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r'boxes \(B, P, 4\)'):
        batched_multiclass_nms(torch.zeros(5, 4), torch.zeros(1, 5, 3), 0.01, 0.45, 400, 200)
    with pytest.raises(ValueError, match='max_per_img'):
        batched_multiclass_nms(torch.zeros(1, 5, 4), torch.zeros(1, 5, 3), 0.01, 0.45, 400, 0)
