"""How well a set of default boxes covers a dataset's ground truths (paper Sec. 2.2, matching).

Two measurements:

- **best IoU** of every ground truth over all default boxes. It depends only on that box and the
  default boxes, so ground truths are processed independently in large chunks. On an unclipped
  SSD grid it is exact and cheap: the overlap of two boxes of fixed sizes is
  ``max(0, min(w1, w2, (w1 + w2)/2 - |dx|))`` per axis, non-increasing in ``|dx|`` and ``|dy|``
  separately, so for each default-box shape the best location is the grid centre nearest to the
  box centre in x and in y. One IoU per shape (30 for SSD300) replaces 8732.
- **positives** per ground truth with SSD's matcher (:func:`match_default_boxes`: forced best
  match + threshold 0.5), which needs all ground truths of an image at once; images are grouped by
  box count and padded into batches.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.structures.bbox import bbox_overlaps
from torch import Tensor

from ssd_plugin.functional.matching import match_default_boxes

from .ground_truths import GroundTruths

__all__ = [
    'SIZE_BUCKETS',
    'best_default_box_overlaps',
    'positives_per_level',
    'coverage_figures',
]

# COCO's area ranges (pycocotools COCOeval.Params), in original-image pixels.
SIZE_BUCKETS = {'small': (0, 32**2), 'medium': (32**2, 96**2), 'large': (96**2, float('inf'))}
HIST_BINS = 20


def _grid_layout(
    priors: Tensor, featmap_size: Tuple[int, int]
) -> Optional[Tuple[Tensor, Tensor, int]]:
    """Column centres ``(W,)``, row centres ``(H,)`` and shapes per location of a translated grid.

    None when the level is not one box-shape set translated over a product grid of increasing
    centres (e.g. ``clip=True`` changes the border boxes), which needs the brute-force path.
    """
    feat_h, feat_w = featmap_size
    if feat_h * feat_w == 0 or len(priors) % (feat_h * feat_w):
        return None
    k = len(priors) // (feat_h * feat_w)
    boxes = priors.double().view(feat_h, feat_w, k, 4)
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    sizes = boxes[..., 2:] - boxes[..., :2]
    cols, rows = centres[0, :, 0, 0].contiguous(), centres[:, 0, 0, 1].contiguous()
    tol = 1e-3
    regular = (
        torch.allclose(sizes, sizes[:1, :1].expand_as(sizes), atol=tol)
        and torch.allclose(centres[..., 0], cols[None, :, None].expand(feat_h, -1, k), atol=tol)
        and torch.allclose(centres[..., 1], rows[:, None, None].expand(-1, feat_w, k), atol=tol)
        and bool((cols.diff() > 0).all() and (rows.diff() > 0).all())
    )
    return (cols, rows, k) if regular else None


def _nearest(centres: Tensor, values: Tensor) -> Tensor:
    """Index of the centre nearest to each value (``centres`` increasing)."""
    right = torch.searchsorted(centres, values).clamp(max=len(centres) - 1)
    left = (right - 1).clamp(min=0)
    go_left = (values - centres[left]).abs() < (centres[right] - values).abs()
    return torch.where(go_left, left, right)


def _candidate_priors(layouts: List[Tuple[Tensor, Tensor, int]], boxes: Tensor) -> Tensor:
    """``(N, S)`` indices of the best-placed default box of every shape (S shapes in all)."""
    centre_x = ((boxes[:, 0] + boxes[:, 2]) / 2).double()
    centre_y = ((boxes[:, 1] + boxes[:, 3]) / 2).double()
    candidates, offset = [], 0
    for cols, rows, k in layouts:
        col = _nearest(cols, centre_x)
        row = _nearest(rows, centre_y)
        first = offset + (row * len(cols) + col) * k
        candidates.append(first[:, None] + torch.arange(k))
        offset += len(cols) * len(rows) * k
    return torch.cat(candidates, dim=1)


def best_default_box_overlaps(
    level_priors: Sequence[Tensor],
    featmap_sizes: Sequence[Tuple[int, int]],
    gt_bboxes: Tensor,
    chunk_size: int = 1 << 16,
) -> Tuple[Tensor, Tensor]:
    """Best IoU of every ground truth over all default boxes, and that default box.

    The IoUs are mmdet's ``bbox_overlaps`` of the box with the actual default boxes, so they are
    the values the matcher sees. Non-grid priors (``clip=True``) take the exhaustive path.

    Args:
        level_priors: Default boxes per level, ``(H*W*k, 4)`` each, in the head's order.
        featmap_sizes: ``(H, W)`` per level.
        gt_bboxes: ``(N, 4)`` ``xyxy`` ground truths.
        chunk_size: Ground truths per step (the exhaustive path uses ``chunk_size * 16 / P``).

    Returns:
        ``(best_iou (N,), best_prior (N,))``; the prior index is into the concatenated levels.
    """
    priors = torch.cat(list(level_priors))
    best_iou = gt_bboxes.new_zeros(len(gt_bboxes))
    best_prior = torch.zeros(len(gt_bboxes), dtype=torch.long)
    layouts = [_grid_layout(p, s) for p, s in zip(level_priors, featmap_sizes)]
    grid = all(layout is not None for layout in layouts)
    step = chunk_size if grid else max(1, chunk_size * 16 // len(priors))
    for start in range(0, len(gt_bboxes), step):
        boxes = gt_bboxes[start : start + step]
        if grid:
            idx = _candidate_priors(layouts, boxes)
            ious = bbox_overlaps(boxes[:, None].expand(-1, idx.shape[1], -1), priors[idx], is_aligned=True)
            best, arg = ious.max(dim=1)
            best_prior[start : start + step] = idx.gather(1, arg[:, None]).squeeze(1)
        else:
            best, best_prior[start : start + step] = bbox_overlaps(boxes, priors).max(dim=1)
        best_iou[start : start + step] = best
    return best_iou, best_prior


def positives_per_level(
    level_priors: Sequence[Tensor],
    gts: GroundTruths,
    pos_iou_thr: float = 0.5,
    max_pairs: int = 1 << 22,
) -> Tensor:
    """Positive default boxes of every ground truth on every level, with SSD's matcher.

    Images are sorted by box count (largest first) and padded into batches of at most
    ``max_pairs`` (image, ground truth, default box) triples, each matched in one call of
    :func:`match_default_boxes`.

    Args:
        level_priors: Default boxes per level.
        gts: The ground truths (all of an image must be present).
        pos_iou_thr: The matcher's threshold (paper: 0.5).
        max_pairs: Size bound of one padded batch.

    Returns:
        ``(N, L)`` long counts.
    """
    priors = torch.cat(list(level_priors))
    num_priors, num_levels = len(priors), len(level_priors)
    prior_level = torch.repeat_interleave(
        torch.arange(num_levels), torch.tensor([len(p) for p in level_priors])
    )
    by_image = torch.argsort(gts.img_index, stable=True)
    counts = torch.bincount(gts.img_index, minlength=gts.num_images)
    starts = torch.cumsum(counts, 0) - counts
    images = torch.argsort(counts, descending=True, stable=True)
    images = images[: int((counts > 0).sum())]
    flat = torch.zeros(len(gts) * num_levels, dtype=torch.long)
    first = 0
    while first < len(images):
        most = int(counts[images[first]])
        batch = images[first : first + max(1, max_pairs // (most * num_priors))]
        first += len(batch)
        slot = torch.arange(most)
        valid = slot < counts[batch, None]
        gt_ids = by_image[torch.where(valid, starts[batch, None] + slot, 0)]
        matched, _ = match_default_boxes(priors, gts.bboxes[gt_ids], valid, pos_iou_thr)
        img, prior = torch.nonzero(matched >= 0, as_tuple=True)
        owner = gt_ids[img, matched[img, prior]]
        flat += torch.bincount(owner * num_levels + prior_level[prior], minlength=len(flat))
    return flat.view(len(gts), num_levels)


def _group_figures(best_iou: Tensor, positives: Optional[Tensor], iou_thr: float) -> Dict:
    figures = {
        'num_gts': len(best_iou),
        'coverage': float((best_iou >= iou_thr).double().mean()) if len(best_iou) else None,
        'mean_best_iou': float(best_iou.double().mean()) if len(best_iou) else None,
    }
    if positives is not None:
        total = positives.sum(dim=1)
        per_level = positives.sum(dim=0).double()
        figures['mean_positives'] = float(total.double().mean()) if len(total) else None
        figures['no_positive_share'] = float((total == 0).double().mean()) if len(total) else None
        figures['level_share'] = (per_level / per_level.sum().clamp(min=1)).tolist()
    return figures


def coverage_figures(
    gts: GroundTruths,
    best_iou: Tensor,
    positives: Optional[Tensor] = None,
    iou_thr: float = 0.5,
) -> Dict:
    """Coverage figures overall, per COCO size bucket and per class.

    ``coverage`` is the share of ground truths whose best default box has IoU ``>= iou_thr``;
    ``mean_positives`` the mean count of positive default boxes per ground truth;
    ``level_share`` the share of all positives on each level; ``no_positive_share`` the share
    of ground truths without any positive (lost forced matches).

    Args:
        gts: The ground truths.
        best_iou: ``(N,)`` from :func:`best_default_box_overlaps`.
        positives: ``(N, L)`` from :func:`positives_per_level`, or None to skip those figures.
        iou_thr: Coverage threshold.

    Returns:
        ``{'overall', 'by_size', 'by_class', 'best_iou_histogram'}``.
    """

    def group(mask: Tensor) -> Dict:
        return _group_figures(best_iou[mask], None if positives is None else positives[mask], iou_thr)

    everything = torch.ones(len(gts), dtype=torch.bool)
    counts, edges = np.histogram(best_iou.numpy(), bins=HIST_BINS, range=(0.0, 1.0))
    return {
        'iou_thr': iou_thr,
        'overall': group(everything),
        'by_size': {
            name: group((gts.areas >= lo) & (gts.areas < hi)) for name, (lo, hi) in SIZE_BUCKETS.items()
        },
        'by_class': {name: group(gts.labels == i) for i, name in enumerate(gts.classes)},
        'best_iou_histogram': {'edges': edges.tolist(), 'counts': counts.tolist()},
    }

