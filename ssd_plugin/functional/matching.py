"""Batched SSD matching of default boxes to ground truths (paper Sec. 2.2, "Matching strategy").

Two steps, as Caffe's ``MatchBBox`` (``bbox_util.cpp``, ``match_type=PER_PREDICTION``):

1. Bipartite: every ground truth gets the default box of highest jaccard overlap, resolved greedily
   on the global maximum (repeatedly take the largest remaining (gt, prior) overlap, match it and
   remove both). Overlaps ``<= 1e-6`` do not count, so a gt overlapping nothing gets no match.
2. Every still-unmatched default box with overlap ``>= pos_iou_thr`` takes its best ground truth.

The whole padded batch is matched at once, without a per-image Python loop.
"""

from typing import Tuple

import torch
from torch import Tensor

__all__ = ['MIN_OVERLAP', 'pairwise_iou', 'greedy_bipartite_match', 'match_default_boxes']

# Caffe stores only overlaps above this in its match map; smaller ones never match.
MIN_OVERLAP = 1e-6


def pairwise_iou(boxes: Tensor, priors: Tensor, eps: float = 1e-6) -> Tensor:
    """Jaccard overlap (paper Sec. 2.2) of every box with every default box, ``(N, P)``.

    The arithmetic of mmdet's ``bbox_overlaps(boxes, priors)`` (``mode='iou'``, union at least
    ``eps``), so the values are the same to the bit, with fewer ``(N, P)`` passes: this is the
    matcher's largest cost.

    Args:
        boxes: ``(N, 4)`` ``xyxy`` boxes.
        priors: ``(P, 4)`` ``xyxy`` default boxes.
        eps: Lower bound of the union.
    """
    inter = torch.minimum(boxes[:, None, 2], priors[:, 2])
    inter.sub_(torch.maximum(boxes[:, None, 0], priors[:, 0])).clamp_(min=0)
    height = torch.minimum(boxes[:, None, 3], priors[:, 3])
    inter.mul_(height.sub_(torch.maximum(boxes[:, None, 1], priors[:, 1])).clamp_(min=0))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    prior_area = (priors[:, 2] - priors[:, 0]) * (priors[:, 3] - priors[:, 1])
    union = (area[:, None] + prior_area).sub_(inter).clamp_(min=eps)
    return inter.div_(union)


def greedy_bipartite_match(overlaps: Tensor) -> Tensor:
    """Caffe's greedy bipartite step on a batch of overlap matrices.

    Gives exactly the result of Caffe's loop: take the largest overlap above :data:`MIN_OVERLAP`
    among the remaining ground truths and default boxes (ties: lowest prior index, then lowest gt
    index), match the pair, remove both, repeat. Instead of one pair per step it settles, per
    image and in parallel, the pairs Caffe's loop is bound to make:

    - if the remaining ground truths' best boxes are all distinct, each takes its best box (no
      pick can take another's box), which finishes the image; in the common case this is the
      first step, a single ``max``;
    - otherwise the global greedy pick, plus every ground truth whose best box no other remaining
      ground truth overlaps as much (nobody can take that box first).

    Only rows whose best box was taken are recomputed.

    Args:
        overlaps: ``(B, G, P)`` IoU of every ground truth with every default box; rows of
            ignored/padded ground truths must hold 0.

    Returns:
        ``(B, G)`` long: the default box matched to each ground truth, -1 for none.
    """
    num_imgs, num_gts, num_priors = overlaps.shape
    forced = overlaps.new_full((num_imgs, num_gts), -1, dtype=torch.long)
    if num_gts == 0 or num_priors == 0:
        return forced
    device = overlaps.device
    gt_range = torch.arange(num_gts, device=device)
    others = ~torch.eye(num_gts, dtype=torch.bool, device=device)
    best, best_idx = overlaps.max(dim=2)
    pending = torch.ones(num_imgs, num_gts, dtype=torch.bool, device=device)
    taken = torch.zeros(num_imgs, num_priors, dtype=torch.bool, device=device)
    while True:
        pending &= best > MIN_OVERLAP  # a gt overlapping no free box never matches
        same_box = best_idx[:, :, None] == best_idx[:, None, :]
        same_box &= pending[:, :, None] & pending[:, None, :] & others
        contested = pending & same_box.flatten(1).any(1, keepdim=True)
        picks = pending & ~contested
        # The global greedy pick: highest overlap, ties to the lowest prior, then the lowest gt.
        score = torch.where(contested, best, -1.0)  # a Python scalar: no host-to-device copy
        is_max = contested & (score == score.max(dim=1, keepdim=True).values)
        order = torch.where(is_max, best_idx * num_gts + gt_range, num_priors * num_gts)
        picks |= is_max & (gt_range == order.argmin(dim=1, keepdim=True))
        # Boxes no other remaining gt overlaps as much: rivals[b, h, g] = IoU(h, best box of g).
        rivals = overlaps.gather(2, best_idx[:, None, :].expand(-1, num_gts, -1))
        rivals = (rivals >= best[:, None, :]) & pending[:, :, None] & others
        picks |= contested & ~rivals.any(1)
        forced = torch.where(picks, best_idx, forced)
        pending = contested & ~picks
        if not bool(pending.any()):
            return forced
        pick_b, pick_g = picks.nonzero(as_tuple=True)
        taken[pick_b, best_idx[pick_b, pick_g]] = True
        stale_b, stale_g = (pending & taken.gather(1, best_idx)).nonzero(as_tuple=True)
        rows = overlaps[stale_b, stale_g].masked_fill(taken[stale_b], -1.0)
        best[stale_b, stale_g], best_idx[stale_b, stale_g] = rows.max(dim=1)


def match_default_boxes(
    priors: Tensor, gt_bboxes: Tensor, gt_valid: Tensor, pos_iou_thr: float = 0.5
) -> Tuple[Tensor, Tensor]:
    """Match default boxes to the ground truths of a padded batch (paper Sec. 2.2).

    Forced (bipartite) matches win over threshold matches. Invalid ground truths (``gt_valid``
    False: padding, crowd/ignored, or any box with a non-finite coordinate) never match and do not
    count in the returned overlaps; zero-area or off-image boxes overlap nothing, so they never
    match either and produce no NaN/inf.

    Args:
        priors: ``(P, 4)`` default boxes, ``xyxy``.
        gt_bboxes: ``(B, G, 4)`` ground truths, ``xyxy``, padded.
        gt_valid: ``(B, G)`` bool, False for padding and ignored boxes.
        pos_iou_thr: Jaccard overlap from which an unmatched default box becomes positive.

    Returns:
        ``(matched, max_overlaps)``: ``(B, P)`` long index of the matched ground truth (-1 for
        background) and ``(B, P)`` best IoU of each default box with the valid ground truths
        (0 where there is none).
    """
    if priors.dim() != 2 or gt_bboxes.dim() != 3 or gt_valid.shape != gt_bboxes.shape[:2]:
        raise ValueError(
            'expected priors (P, 4), gt_bboxes (B, G, 4) and gt_valid (B, G), got '
            f'{tuple(priors.shape)}, {tuple(gt_bboxes.shape)}, {tuple(gt_valid.shape)}'
        )
    num_imgs, num_gts = gt_valid.shape
    num_priors = priors.shape[0]
    matched = priors.new_full((num_imgs, num_priors), -1, dtype=torch.long)
    max_overlaps = priors.new_zeros((num_imgs, num_priors))
    if num_gts == 0 or num_priors == 0:
        return matched, max_overlaps

    # IoU only for the valid ground truths (padding is often most of a batch); the rows of
    # invalid ones stay 0, so they can never match.
    valid = gt_valid.bool() & torch.isfinite(gt_bboxes).all(dim=-1)
    overlaps = priors.new_zeros((num_imgs, num_gts, num_priors))
    valid_b, valid_g = valid.nonzero(as_tuple=True)  # one host read, shared by read and write
    overlaps[valid_b, valid_g] = pairwise_iou(gt_bboxes[valid_b, valid_g].to(priors), priors)

    max_overlaps, best_gt = overlaps.max(dim=1)
    positive = (max_overlaps >= pos_iou_thr) & (max_overlaps > MIN_OVERLAP)
    matched = torch.where(positive, best_gt, matched)

    forced = greedy_bipartite_match(overlaps)
    # Scatter forced matches into a spare column P so unmatched ground truths (-1) land nowhere.
    target = torch.where(forced >= 0, forced, num_priors)
    gt_ids = torch.arange(num_gts, device=priors.device).expand(num_imgs, -1)
    matched = torch.cat([matched, matched.new_full((num_imgs, 1), -1)], dim=1)
    matched = matched.scatter(1, target, torch.where(forced >= 0, gt_ids, -1))[:, :num_priors]
    return matched, max_overlaps
