"""Batched post-processing equals a per-image, per-class loop over ``torchvision.ops.nms``."""

import pytest
import torch
from torchvision.ops import nms

from ssd_plugin.functional import postprocess
from ssd_plugin.functional.postprocess import batched_multiclass_nms, group_rank


def _random_boxes(*shape, size=100.0, generator=None):
    xy = torch.rand(*shape, 2, generator=generator) * size
    wh = torch.rand(*shape, 2, generator=generator) * size / 3 + 1
    return torch.cat([xy, xy + wh], dim=-1)


def _reference(boxes, scores, score_thr, iou_thr, nms_pre, max_per_img):
    """Caffe's DetectionOutput as a plain loop: per image and class, torchvision NMS, top-k.

    Ties go to the lower default box, then the lower class (stable sorts over that order); the
    kernel gets decreasing keys in that order, and float64 boxes (as the batched version).
    """
    results = []
    for img_boxes, img_scores in zip(boxes, scores):
        dets = []
        for label in range(img_scores.shape[1]):
            cls_scores = img_scores[:, label]
            cand = (cls_scores > score_thr).nonzero().squeeze(1)
            cand = cand[cls_scores[cand].argsort(descending=True, stable=True)]
            if nms_pre > 0:
                cand = cand[:nms_pre]
            if iou_thr is not None and len(cand):
                key = -torch.arange(len(cand), dtype=torch.float64)
                cand = cand[nms(img_boxes[cand].double(), key, iou_thr).sort().values]
            dets += [(float(cls_scores[i]), int(i), label) for i in cand]
        dets.sort(key=lambda d: (-d[0], d[1], d[2]))
        results.append(dets[:max_per_img])
    return results


def _check(boxes, scores, score_thr=0.01, iou_thr=0.45, nms_pre=400, max_per_img=200, **kwargs):
    out_boxes, out_scores, out_labels, out_valid = batched_multiclass_nms(
        boxes, scores, score_thr, iou_thr, nms_pre, max_per_img, **kwargs
    )
    assert out_boxes.shape == (len(boxes), max_per_img, 4)
    expected = _reference(boxes, scores, score_thr, iou_thr, nms_pre, max_per_img)
    for i, dets in enumerate(expected):
        n = len(dets)
        assert out_valid[i, :n].all() and not out_valid[i, n:].any(), i
        assert out_scores[i, :n].tolist() == [d[0] for d in dets]
        assert out_labels[i, :n].tolist() == [d[2] for d in dets]
        assert torch.equal(out_boxes[i, :n], boxes[i, [d[1] for d in dets]])
        assert not out_scores[i, n:].any() and not out_boxes[i, n:].any()
    return expected


def test_group_rank_orders_by_group_then_score():
    groups = torch.tensor([1, 0, 1, 1, 0])
    scores = torch.tensor([0.2, 0.5, 0.9, 0.2, 0.7])
    order, rank = group_rank(groups, scores, num_groups=3)
    assert order.tolist() == [4, 1, 2, 0, 3]  # ties (0.2, 0.2) keep input order
    assert rank.tolist() == [0, 1, 0, 1, 2]


@pytest.mark.parametrize('nms_pre, max_per_img', [(400, 200), (5, 200), (400, 7), (-1, 50)])
def test_random_scores_equal_the_loop(nms_pre, max_per_img):
    gen = torch.Generator().manual_seed(1)
    boxes = _random_boxes(3, 300, generator=gen)
    scores = torch.rand(3, 300, 4, generator=gen) ** 3
    scores[1] *= 0.05  # image 1: almost nothing above the threshold
    _check(boxes, scores, nms_pre=nms_pre, max_per_img=max_per_img)


def test_batch_of_one_with_uniform_scores():
    """An untrained model: every score passes the threshold; the output is the first prefix's."""
    gen = torch.Generator().manual_seed(2)
    boxes = _random_boxes(1, 2000, size=300.0, generator=gen)
    scores = torch.full((1, 2000, 20), 1 / 21) + torch.rand(1, 2000, 20, generator=gen) * 1e-3
    expected = _check(boxes, scores)
    assert len(expected[0]) == 200


def test_ties_go_to_the_lower_default_box_then_class():
    gen = torch.Generator().manual_seed(3)
    boxes = _random_boxes(2, 200, generator=gen)
    boxes[:, 50:60] = boxes[:, 40:50]  # duplicated boxes with duplicated scores
    scores = (torch.rand(2, 200, 3, generator=gen) * 4).round() / 8  # 5 distinct values
    scores[:, 50:60] = scores[:, 40:50]
    for nms_pre, max_per_img in ((400, 200), (7, 200), (400, 13)):
        _check(boxes, scores, nms_pre=nms_pre, max_per_img=max_per_img)
        _check(boxes, scores, iou_thr=None, nms_pre=nms_pre, max_per_img=max_per_img)


@pytest.fixture
def prefix_widths(monkeypatch):
    """The candidate count of each prefix round (``_sort_candidates`` call), as they happen."""
    widths = []
    original = postprocess._sort_candidates

    def spy(img_ids, *args):
        widths.append(len(img_ids))
        return original(img_ids, *args)

    monkeypatch.setattr(postprocess, '_sort_candidates', spy)
    return widths


def test_crowded_scene_widens_the_prefix(prefix_widths):
    """Clusters of overlapping high-scoring boxes: the first prefix keeps too few boxes."""
    gen = torch.Generator().manual_seed(4)
    centres = torch.rand(2, 30, 1, 2, generator=gen) * 260 + 20
    jitter = torch.randn(2, 30, 80, 2, generator=gen)
    xy = (centres + jitter).reshape(2, 2400, 2)
    boxes = torch.cat([xy - 15, xy + 15], dim=-1)
    scores = torch.rand(2, 2400, 5, generator=gen) * 0.02
    obj_class = torch.randint(5, (2, 30), generator=gen).repeat_interleave(80, dim=1)
    scores.scatter_(2, obj_class[..., None], 0.5 + 0.5 * torch.rand(2, 2400, 1, generator=gen))
    expected = _check(boxes, scores, max_per_img=40)
    assert len(prefix_widths) > 1 and prefix_widths[1] > prefix_widths[0]  # the prefix was widened
    assert all(len(d) == 40 for d in expected)


def test_very_uneven_groups_reach_the_per_class_fallback(monkeypatch):
    """One class with 400 near-identical candidates, the others with one each."""
    fallback_rows = []
    original = postprocess._per_class_candidates

    def spy(scores, pending, *args):
        fallback_rows.append(pending.tolist())
        return original(scores, pending, *args)

    monkeypatch.setattr(postprocess, '_per_class_candidates', spy)
    gen = torch.Generator().manual_seed(5)
    boxes = _random_boxes(2, 1000, generator=gen)
    boxes[:, :400] = torch.tensor([10.0, 10, 50, 50]) + torch.rand(2, 400, 4, generator=gen)
    scores = torch.zeros(2, 1000, 6)
    scores[:, :400, 0] = torch.rand(2, 400, generator=gen) * 0.5 + 0.4
    scores[:, 400:405, 1:] = torch.eye(5) * torch.rand(2, 5, 1, generator=gen)[:, :, :1].clamp(0.1)
    _check(boxes, scores, max_per_img=3)
    assert fallback_rows == []  # three survivors: the first prefix finishes both images
    _check(boxes, scores, max_per_img=200)
    assert fallback_rows == [[0, 1]]  # 200 survivors cannot be: both images reach the fallback
    # Too few survivors for the output everywhere: every prefix widens to the fallback.
    _check(boxes, scores, max_per_img=200, nms_pre=2)
    assert fallback_rows[1:] == [[0, 1]]


def test_nothing_above_threshold():
    boxes = _random_boxes(2, 10)
    out = batched_multiclass_nms(boxes, torch.full((2, 10, 3), 0.005), 0.01, 0.45, 400, 5)
    assert out[0].shape == (2, 5, 4) and not out[3].any()
    empty = batched_multiclass_nms(boxes[:, :0], torch.zeros(2, 0, 3), 0.01, 0.45, 400, 5)
    assert not empty[3].any()


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r'boxes \(B, P, 4\)'):
        batched_multiclass_nms(torch.zeros(5, 4), torch.zeros(1, 5, 3), 0.01, 0.45, 400, 200)
    with pytest.raises(ValueError, match='max_per_img'):
        batched_multiclass_nms(torch.zeros(1, 5, 4), torch.zeros(1, 5, 3), 0.01, 0.45, 400, 0)


def _dominant_class_inputs(num_imgs=3, num_priors=600, num_classes=4, seed=6):
    """One class beats the others everywhere, on a few clusters of boxes: NMS keeps too few
    boxes for the output, so the prefix widens to the per-class fallback."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(num_imgs, 6, 1, 2, generator=gen) * 200 + 20
    jitter = torch.randn(num_imgs, 6, num_priors // 6, 2, generator=gen)
    xy = (centres + jitter).reshape(num_imgs, num_priors, 2)
    boxes = torch.cat([xy - 12, xy + 12], dim=-1)
    scores = 0.005 + torch.rand(num_imgs, num_priors, num_classes, generator=gen) * 0.015
    scores[:, :, 1] = 0.3 + 0.1 * torch.rand(num_imgs, num_priors, generator=gen)
    return boxes, scores


def _crowded_inputs(seed=7):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(3, 20, 1, 2, generator=gen) * 200 + 20
    xy = (centres + torch.randn(3, 20, 30, 2, generator=gen)).reshape(3, 600, 2)
    boxes = torch.cat([xy - 12, xy + 12], dim=-1)
    scores = torch.rand(3, 600, 5, generator=gen) * 0.3
    return boxes, scores


def _random_inputs(seed=8):
    gen = torch.Generator().manual_seed(seed)
    return _random_boxes(4, 500, generator=gen), torch.rand(4, 500, 6, generator=gen) ** 2


@pytest.mark.parametrize('make', [_random_inputs, _crowded_inputs, _dominant_class_inputs])
@pytest.mark.parametrize('nms_pre, max_per_img', [(400, 200), (30, 100), (-1, 300)])
def test_packed_calls_equal_unsplit_calls_and_the_loop(monkeypatch, make, nms_pre, max_per_img):
    """The CUDA branch's packing (batch_calls=True), with windows small enough for many calls."""
    boxes, scores = make()
    calls = []
    fallback = []
    original = postprocess._per_class_candidates
    monkeypatch.setattr(postprocess, '_per_class_candidates',
                        lambda *args: fallback.append(1) or original(*args))  # fmt: skip

    def counting_nms(call_boxes, key, iou_thr):
        calls.append(len(call_boxes))
        return nms(call_boxes, key, iou_thr)

    monkeypatch.setattr(postprocess, 'nms', counting_nms)
    kwargs = dict(nms_pre_per_class=nms_pre, max_per_img=max_per_img, score_thr=0.01,
                  iou_thr=0.45)  # fmt: skip
    cpu = batched_multiclass_nms(boxes, scores, batch_calls=False, **kwargs)
    unsplit = batched_multiclass_nms(boxes, scores, batch_calls=True, call_limit=10**9, **kwargs)
    largest_unsplit = max(calls)
    calls.clear()
    limit = 16
    split = batched_multiclass_nms(boxes, scores, batch_calls=True, call_limit=limit, **kwargs)
    largest_group = nms_pre if nms_pre > 0 else boxes.shape[1]
    assert len(calls) > 10 and max(calls) < limit + largest_group
    assert largest_unsplit > max(calls)
    for got in (unsplit, split):
        for a, b in zip(cpu, got):
            assert torch.equal(a, b)
    _check(boxes, scores, 0.01, 0.45, nms_pre, max_per_img, batch_calls=True, call_limit=limit)
    assert fallback or make is not _dominant_class_inputs


def test_packed_calls_take_whole_groups_by_their_start():
    groups = torch.tensor([0, 0, 0, 2, 5, 5, 5, 5, 5, 6, 9, 9])
    # windows of 4 entries: groups starting at 0, 3 -> call 0; at 4 -> 1; at 9, 10 -> 2
    assert postprocess.packed_calls(groups, 4).tolist() == [0] * 4 + [1] * 5 + [2] * 3
    assert postprocess.packed_calls(groups, 1).tolist() == [0] * 3 + [3] + [4] * 5 + [9, 10, 10]
    with pytest.raises(ValueError, match='call_limit'):
        batched_multiclass_nms(groups.new_zeros(1, 1, 4).float(), torch.ones(1, 1, 1), 0.0, 0.5,
                               -1, 1, call_limit=0)  # fmt: skip


@pytest.mark.parametrize('num_classes', [1, 3])
def test_prefix_holding_each_class_cap_needs_no_widening(prefix_widths, num_classes):
    """Few survivors, but the first prefix holds ``nms_pre`` scores of every class: one round.

    As the converted face detector (one class, every default box above 0.01, ~100 survivors):
    each class's capped candidates are its best scores, all inside the prefix.
    """
    gen = torch.Generator().manual_seed(9)
    centres = torch.rand(2, 20, 1, 2, generator=gen) * 260 + 20
    xy = (centres + torch.randn(2, 20, 100, 2, generator=gen)).reshape(2, 2000, 2)
    boxes = torch.cat([xy - 15, xy + 15], dim=-1)
    scores = torch.rand(2, 2000, num_classes, generator=gen) * 0.9 + 0.02
    expected = _check(boxes, scores, nms_pre=100, max_per_img=200)
    assert all(len(d) < 200 for d in expected)  # too few survivors to finish by the top-k
    assert len(prefix_widths) == 1  # yet the first prefix (400 default boxes) was complete
    # A cap the prefix cannot hold for every class widens as before, to the same result.
    prefix_widths.clear()
    _check(boxes, scores, nms_pre=401, max_per_img=200)
    assert len(prefix_widths) > 1
