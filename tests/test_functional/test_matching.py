import numpy as np
import pytest
import torch
from mmdet.structures.bbox import bbox_overlaps

from ssd_plugin.functional.matching import (
    MIN_OVERLAP,
    greedy_bipartite_match,
    match_default_boxes,
    pairwise_iou,
)


def caffe_match_reference(overlaps: np.ndarray, valid: np.ndarray, thr: float) -> np.ndarray:
    """Transcription of Caffe's ``MatchBBox`` (bbox_util.cpp, PER_PREDICTION) for one image.

    Bipartite: repeatedly take the largest overlap (> 1e-6) over unmatched priors (outer loop,
    ascending) and pooled ground truths (inner loop, ascending) with a strict ``>``, so ties go to
    the lowest prior, then the lowest gt; then per prediction, the best gt if ``>= thr``.
    """
    num_gts, num_priors = overlaps.shape
    match = np.full(num_priors, -1)
    pool = [g for g in range(num_gts) if valid[g]]
    while pool:
        best = (-1, -1, -1.0)
        for i in range(num_priors):
            if match[i] != -1:
                continue
            for j in pool:
                ov = overlaps[j, i]
                if ov > MIN_OVERLAP and ov > best[2]:
                    best = (i, j, ov)
        if best[0] == -1:
            break
        match[best[0]] = best[1]
        pool.remove(best[1])
    for i in range(num_priors):
        if match[i] != -1:
            continue
        best_j, best_ov = -1, -1.0
        for j in range(num_gts):
            if valid[j] and overlaps[j, i] > MIN_OVERLAP and overlaps[j, i] > best_ov:
                best_j, best_ov = j, overlaps[j, i]
        if best_ov >= thr:
            match[i] = best_j
    return match


def _boxes(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_forced_best_match_below_threshold():
    priors = _boxes([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    gts = _boxes([[[0, 0, 30, 30]]])  # IoU 1/9 with priors 0 and 1: tie -> lowest prior
    matched, max_ov = match_default_boxes(priors, gts, torch.ones(1, 1, dtype=torch.bool))
    assert matched.tolist() == [[0, -1, -1]]
    torch.testing.assert_close(max_ov, torch.tensor([[1 / 9, 1 / 9, 0.0]]))


def test_two_gts_one_box_greedy_resolution():
    # Both ground truths prefer prior A; the higher pair (gt0, A) = 1.0 wins, gt1 takes B.
    # mmdet's MaxIoUAssigner would give A to gt1 (the later one) and leave gt0 without a box.
    priors = _boxes([[0, 0, 10, 10], [2, 0, 12, 10]])
    gts = _boxes([[[0, 0, 10, 10], [0.4, 0, 10.4, 10]]])
    matched, _ = match_default_boxes(priors, gts, torch.ones(1, 2, dtype=torch.bool))
    assert matched.tolist() == [[0, 1]]


def test_forced_match_wins_over_threshold_match():
    # Prior 0's best gt is A (IoU 0.74 >= 0.5), but it is B's only good box (0.54) once A has
    # taken prior 1 (0.90): the forced match B wins.
    priors = _boxes([[0, 0, 10, 10], [2, 0, 12, 10]])
    gts = _boxes([[[1.5, 0, 11.5, 10], [-3, 0, 7, 10]]])
    matched, max_ov = match_default_boxes(priors, gts, torch.ones(1, 2, dtype=torch.bool))
    assert matched.tolist() == [[1, 0]]
    torch.testing.assert_close(max_ov, torch.tensor([[8.5 / 11.5, 9.5 / 10.5]]))


def test_threshold_matches_are_inclusive():
    priors = _boxes([[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 21], [50, 50, 60, 60]])
    gts = _boxes([[[0, 0, 10, 10]]])
    matched, _ = match_default_boxes(priors, gts, torch.ones(1, 1, dtype=torch.bool))
    # IoU 1 (forced), exactly 0.5 (positive), 10/21 < 0.5 and 0 (background).
    assert matched.tolist() == [[0, 0, -1, -1]]


def test_invalid_and_crowd_gts_never_match():
    priors = _boxes([[0, 0, 10, 10], [20, 20, 30, 30]])
    gts = _boxes([[[0, 0, 10, 10], [20, 20, 30, 30]]])
    valid = torch.tensor([[True, False]])
    matched, max_ov = match_default_boxes(priors, gts, valid)
    assert matched.tolist() == [[0, -1]]
    torch.testing.assert_close(max_ov, torch.tensor([[1.0, 0.0]]))


def test_empty_inputs():
    priors = _boxes([[0, 0, 10, 10], [20, 20, 30, 30]])
    matched, max_ov = match_default_boxes(
        priors, torch.zeros(3, 0, 4), torch.zeros(3, 0, dtype=torch.bool)
    )
    assert matched.shape == (3, 2) and (matched == -1).all() and (max_ov == 0).all()
    gts = _boxes([[[0, 0, 10, 10]], [[0, 0, 0, 0]]])
    matched, _ = match_default_boxes(priors, gts, torch.zeros(2, 1, dtype=torch.bool))
    assert (matched == -1).all()
    matched, max_ov = match_default_boxes(
        torch.zeros(0, 4), gts, torch.ones(2, 1, dtype=torch.bool)
    )
    assert matched.shape == (2, 0) and max_ov.shape == (2, 0)
    matched, _ = match_default_boxes(priors, torch.zeros(0, 1, 4), torch.zeros(0, 1, dtype=bool))
    assert matched.shape == (0, 2)


def test_degenerate_gts_give_no_match_and_no_nan():
    priors = _boxes([[0, 0, 10, 10], [20, 20, 30, 30], [-5, -5, 5, 5]])
    nan, inf = float('nan'), float('inf')
    gts = _boxes(
        [
            [
                [5, 5, 5, 5],  # zero area
                [3, 3, 3, 8],  # zero width
                [400, 400, 420, 420],  # outside the image and every prior
                [10, 10, 0, 0],  # inverted
                [nan, 0, 10, 10],
                [0, 0, inf, 10],
                [-inf, -inf, inf, inf],
                [20, 20, 30, 30],  # the one real box
            ]
        ]
    )
    valid = torch.ones(1, 8, dtype=torch.bool)
    matched, max_ov = match_default_boxes(priors, gts, valid)
    assert matched.tolist() == [[-1, 7, -1]]
    assert torch.isfinite(max_ov).all()
    torch.testing.assert_close(max_ov, torch.tensor([[0.0, 1.0, 0.0]]))


def test_mmdet_max_iou_assigner_toy_case():
    """mmdet's test_max_iou_assigner case, where its semantics and Caffe's agree."""
    priors = _boxes([[0, 0, 10, 10], [10, 10, 20, 20], [5, 5, 15, 15], [32, 32, 38, 42]])
    gts = _boxes([[[0, 0, 10, 9], [0, 10, 10, 19]]])
    matched, _ = match_default_boxes(priors, gts, torch.ones(1, 2, dtype=torch.bool))
    assert (matched + 1).tolist() == [[1, 0, 2, 0]]


def _random_case(gen, num_imgs, max_gts, num_priors):
    """Clustered, integer-quantised boxes: many gts share a best prior and overlaps tie."""
    centres = torch.randint(0, 60, (num_priors, 2), generator=gen).float()
    sizes = torch.randint(4, 30, (num_priors, 2), generator=gen).float()
    priors = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
    # Ground truths are copies of priors, slightly jittered, so several want the same prior.
    pick = torch.randint(0, num_priors, (num_imgs, max_gts), generator=gen)
    jitter = torch.randint(-3, 4, (num_imgs, max_gts, 4), generator=gen).float()
    gts = priors[pick] + jitter
    gts = torch.cat([gts[..., :2], torch.maximum(gts[..., 2:], gts[..., :2] + 1)], dim=-1)
    counts = torch.randint(0, max_gts + 1, (num_imgs,), generator=gen)
    valid = torch.arange(max_gts)[None] < counts[:, None]
    valid &= torch.rand(num_imgs, max_gts, generator=gen) > 0.1  # some crowd boxes
    return priors, gts, valid


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('num_imgs,max_gts,num_priors', [(6, 12, 60), (4, 30, 40), (8, 6, 8)])
def test_equals_caffe_greedy_reference_on_random_conflicts(seed, num_imgs, max_gts, num_priors):
    gen = torch.Generator().manual_seed(seed)
    priors, gts, valid = _random_case(gen, num_imgs, max_gts, num_priors)
    matched, max_ov = match_default_boxes(priors, gts, valid)
    overlaps = bbox_overlaps(gts, priors[None].expand(len(gts), -1, -1))
    conflicts = 0
    for b in range(len(gts)):
        ov = overlaps[b].numpy()
        ref = caffe_match_reference(ov, valid[b].numpy(), 0.5)
        assert matched[b].tolist() == ref.tolist()
        best = ov[valid[b].numpy()].argmax(1) if valid[b].any() else np.zeros(0)
        conflicts += len(best) - len(set(best.tolist()))
        expected_max = (ov * valid[b].numpy()[:, None]).max(0)
        np.testing.assert_allclose(max_ov[b].numpy(), expected_max)
    assert conflicts > 0  # the cases do exercise the greedy conflict path


def test_greedy_ties_lowest_prior_then_lowest_gt():
    # Three gts with identical overlaps on two priors.
    overlaps = torch.tensor([[[0.7, 0.7, 0.1], [0.7, 0.7, 0.1], [0.7, 0.7, 0.1]]])
    assert greedy_bipartite_match(overlaps).tolist() == [[0, 1, 2]]
    ref = caffe_match_reference(overlaps[0].numpy(), np.ones(3, bool), 0.5)
    assert ref.tolist() == [0, 1, 2]


def test_gt_overlapping_only_taken_boxes_gets_no_forced_match():
    overlaps = torch.tensor([[[0.9, 0.0], [0.8, 0.0]]])
    assert greedy_bipartite_match(overlaps).tolist() == [[0, -1]]


def test_batch_of_ssd300_size_matches_reference():
    """8732 priors, 1-20 gts per image; two images checked against Caffe's loop."""
    from ssd_plugin.models.task_modules import DefaultBoxGenerator

    gen = DefaultBoxGenerator()
    priors = torch.cat(
        gen.grid_priors([(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)], device='cpu')
    )
    g = torch.Generator().manual_seed(0)
    num_imgs, max_gts = 4, 20
    xy = torch.rand(num_imgs, max_gts, 2, generator=g) * 250
    wh = torch.rand(num_imgs, max_gts, 2, generator=g) * 120 + 4
    gts = torch.cat([xy, (xy + wh).clamp(max=300)], dim=-1)
    valid = torch.arange(max_gts)[None] < torch.tensor([1, 20, 7, 13])[:, None]
    matched, _ = match_default_boxes(priors, gts, valid)
    overlaps = bbox_overlaps(gts, priors[None].expand(num_imgs, -1, -1))
    for b in (0, 2):
        # The reference is cubic in Python: check it on the priors that matter (overlap > 0).
        keep = (overlaps[b][valid[b]] > MIN_OVERLAP).any(0)
        ref = caffe_match_reference(overlaps[b][:, keep].numpy(), valid[b].numpy(), 0.5)
        assert matched[b][keep].tolist() == ref.tolist()
        assert (matched[b][~keep] == -1).all()
    # Every valid gt got a distinct forced box.
    for b in range(num_imgs):
        hits = set(matched[b][matched[b] >= 0].tolist())
        assert hits == set(range(int(valid[b].sum())))


def test_pairwise_iou_equals_mmdet_bbox_overlaps_bitwise():
    gen = torch.Generator().manual_seed(8)
    centre, size = (
        torch.rand(2, 300, 2, generator=gen) * 300,
        torch.rand(2, 300, 2, generator=gen) * 150,
    )
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
    boxes[0, :5] = torch.tensor([3.0, 4, 3, 9])  # zero width: IoU 0 through the union's eps
    ours = pairwise_iou(boxes[0], boxes[1])
    assert torch.equal(ours, bbox_overlaps(boxes[0], boxes[1]))
    assert (ours[:5] == 0).all() and ours.max() > 0.5
