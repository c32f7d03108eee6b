"""Positive default boxes per ground truth and level, exactly as SSD's matcher assigns them.

:func:`~ssd_plugin.functional.matching.match_default_boxes` gives a default box to the ground
truth of its image with the highest IoU if that is ``>= pos_iou_thr``, then overrides with the
greedy bipartite (forced) matches. Running it on every image costs ``G x P`` IoUs per image
(7.5e9 for COCO at SSD300). On an unclipped grid the same result comes from far fewer:

- threshold matches need IoU ``>= pos_iou_thr``, so only the pairs of
  :func:`~ssd_plugin.analysis.grid_layout.threshold_candidates` are computed; per (image, box) the
  highest IoU wins (ties: the lower ground-truth index, as ``max``);
- when the best default boxes of an image's ground truths are all distinct, the greedy bipartite
  step gives every ground truth its best box, known from
  :func:`~ssd_plugin.analysis.coverage.best_default_box_overlaps`.

Images where two ground truths share a best box (a real greedy conflict), and non-grid default
boxes, go through the matcher itself in padded batches.
"""

from typing import Optional, Sequence, Tuple

import torch
from mmdet.structures.bbox import bbox_overlaps
from torch import Tensor

from ssd_plugin.functional.matching import MIN_OVERLAP, match_default_boxes

from .coverage import best_default_box_overlaps
from .grid_layout import grid_layouts, threshold_candidates
from .ground_truths import GroundTruths

__all__ = ['positives_per_level', 'matcher_positives']


def matcher_positives(
    priors: Tensor, gts: GroundTruths, images: Tensor, max_pairs: int = 1 << 22
) -> Tuple[Tensor, Tensor]:
    """Positives of the ground truths of ``images`` from :func:`match_default_boxes` itself.

    Images are sorted by box count (largest first) and padded into batches of at most
    ``max_pairs`` (image, ground truth, default box) triples.

    Args:
        priors: ``(P, 4)`` default boxes.
        gts: All ground truths.
        images: Image indices to match.
        max_pairs: Size bound of one padded batch.

    Returns:
        ``(gt, prior)`` index pairs of every positive default box.
    """
    by_image = torch.argsort(gts.img_index, stable=True)
    counts = torch.bincount(gts.img_index, minlength=gts.num_images)
    starts = torch.cumsum(counts, 0) - counts
    images = images[counts[images] > 0]
    images = images[torch.argsort(counts[images], descending=True, stable=True)]
    owners, matched_priors = [], []
    first = 0
    while first < len(images):
        most = int(counts[images[first]])
        batch = images[first : first + max(1, max_pairs // (most * len(priors)))]
        first += len(batch)
        slot = torch.arange(most)
        valid = slot < counts[batch, None]
        gt_ids = by_image[torch.where(valid, starts[batch, None] + slot, 0)]
        matched, _ = match_default_boxes(priors, gts.bboxes[gt_ids], valid)
        img, prior = torch.nonzero(matched >= 0, as_tuple=True)
        owners.append(gt_ids[img, matched[img, prior]])
        matched_priors.append(prior)
    empty = torch.zeros(0, dtype=torch.long)
    return torch.cat(owners or [empty]), torch.cat(matched_priors or [empty])


def _threshold_winners(
    layouts, priors: Tensor, gts: GroundTruths, gt_ids: Tensor, iou_thr: float, chunk: int
) -> Tuple[Tensor, Tensor]:
    """Per (image, default box): the ground truth of ``gt_ids`` with the highest IoU >= thr."""
    owners, boxes, ious = [], [], []
    for start in range(0, len(gt_ids), chunk):
        ids = gt_ids[start : start + chunk]
        gt, prior = threshold_candidates(layouts, gts.bboxes[ids], iou_thr)
        iou = bbox_overlaps(gts.bboxes[ids][gt], priors[prior], is_aligned=True)
        keep = (iou >= iou_thr) & (iou > MIN_OVERLAP)
        owners.append(ids[gt[keep]])
        boxes.append(prior[keep])
        ious.append(iou[keep])
    owner, prior, iou = torch.cat(owners), torch.cat(boxes), torch.cat(ious)
    key = gts.img_index[owner] * len(priors) + prior
    order = torch.argsort(owner, stable=True)  # ties in IoU: the lower ground truth
    order = order[torch.argsort(-iou[order], stable=True)]
    order = order[torch.argsort(key[order], stable=True)]
    first = torch.ones(len(order), dtype=torch.bool)
    first[1:] = key[order][1:] != key[order][:-1]
    return owner[order[first]], prior[order[first]]


def positives_per_level(
    level_priors: Sequence[Tensor],
    featmap_sizes: Sequence[Tuple[int, int]],
    gts: GroundTruths,
    pos_iou_thr: float = 0.5,
    best: Optional[Tuple[Tensor, Tensor]] = None,
    chunk: int = 1 << 15,
) -> Tensor:
    """Positive default boxes of every ground truth on every level, as SSD's matcher assigns.

    Args:
        level_priors: Default boxes per level.
        featmap_sizes: ``(H, W)`` per level.
        gts: The ground truths (all of an image must be present).
        pos_iou_thr: The matcher's threshold (paper: 0.5).
        best: ``best_default_box_overlaps(level_priors, featmap_sizes, gts.bboxes)`` if known.
        chunk: Ground truths per step of the candidate enumeration.

    Returns:
        ``(N, L)`` long counts.
    """
    priors = torch.cat(list(level_priors))
    num_priors, num_levels = len(priors), len(level_priors)
    prior_level = torch.repeat_interleave(
        torch.arange(num_levels), torch.tensor([len(p) for p in level_priors])
    )
    layouts = grid_layouts(level_priors, featmap_sizes)
    if layouts is None:
        owner, prior = matcher_positives(priors, gts, torch.arange(gts.num_images))
    else:
        best_iou, best_prior = best or best_default_box_overlaps(
            level_priors, featmap_sizes, gts.bboxes
        )
        # Images where two ground truths want the same best box need the greedy matcher.
        forced = best_iou > MIN_OVERLAP
        key = gts.img_index[forced] * num_priors + best_prior[forced]
        unique, counts = torch.unique(key, return_counts=True)
        conflict = torch.zeros(gts.num_images, dtype=torch.bool)
        conflict[unique[counts > 1] // num_priors] = True
        simple = ~conflict[gts.img_index]
        owner, prior = _threshold_winners(
            layouts, priors, gts, torch.nonzero(simple).squeeze(1), pos_iou_thr, chunk
        )
        forced &= simple
        forced_ids = torch.nonzero(forced).squeeze(1)
        forced_key = gts.img_index[forced_ids] * num_priors + best_prior[forced_ids]
        taken = torch.isin(gts.img_index[owner] * num_priors + prior, forced_key)
        dense_owner, dense_prior = matcher_positives(
            priors, gts, torch.nonzero(conflict).squeeze(1)
        )
        owner = torch.cat([owner[~taken], forced_ids, dense_owner])
        prior = torch.cat([prior[~taken], best_prior[forced_ids], dense_prior])
    counts = torch.bincount(
        owner * num_levels + prior_level[prior], minlength=len(gts) * num_levels
    )
    return counts.view(len(gts), num_levels)
