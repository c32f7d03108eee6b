"""How well a set of default boxes covers a dataset's ground truths (paper Sec. 2.2, matching).

The **best IoU** of a ground truth over all default boxes depends only on that box and the default
boxes, so ground truths are processed independently in large chunks. On an unclipped SSD grid only
the best-placed box of each shape can be the best (:mod:`.grid_layout`): one IoU per shape (30 for
SSD300) instead of 8732, the same ``bbox_overlaps`` values the matcher sees.
"""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.structures.bbox import bbox_overlaps
from torch import Tensor

from ssd_plugin.functional.matching import MIN_OVERLAP

from .grid_layout import GridLayout, grid_layouts, nearest_candidates, plateau_candidates
from .ground_truths import GroundTruths

__all__ = [
    'SIZE_BUCKETS',
    'best_default_box_overlaps',
    'coverage_figures',
]

# COCO's area ranges (pycocotools COCOeval.Params), in original-image pixels.
SIZE_BUCKETS = {'small': (0, 32**2), 'medium': (32**2, 96**2), 'large': (96**2, float('inf'))}
HIST_BINS = 20
_TIE_TOL = 1e-6  # shapes whose nearest IoU is this close to the best may hold the forced box


def _resolve_ties(
    layouts: Sequence[GridLayout],
    priors: Tensor,
    boxes: Tensor,
    nearest: Tensor,
    ious: Tensor,
    best: Tensor,
    best_prior: Tensor,
) -> Tuple[Tensor, Tensor]:
    """Best IoU and the lowest-index default box reaching it, over all equally placed boxes."""
    shapes = (ious >= best[:, None] - _TIE_TOL) & (best[:, None] > MIN_OVERLAP)
    gt, cand = plateau_candidates(layouts, boxes, nearest, shapes)
    iou = bbox_overlaps(boxes[gt], priors[cand], is_aligned=True)
    top = best.scatter_reduce(0, gt, iou, 'amax')
    is_top = iou == top[gt]
    lowest = torch.full_like(best_prior, len(priors))
    lowest = lowest.scatter_reduce(0, gt[is_top], cand[is_top], 'amin')
    return top, torch.where(lowest < len(priors), lowest, best_prior)


def best_default_box_overlaps(
    level_priors: Sequence[Tensor],
    featmap_sizes: Sequence[Tuple[int, int]],
    gt_bboxes: Tensor,
    chunk_size: int = 1 << 16,
    resolve_ties: bool = True,
) -> Tuple[Tensor, Tensor]:
    """Best IoU of every ground truth over all default boxes, and that default box.

    The IoUs are mmdet's ``bbox_overlaps`` of the box with the actual default boxes, so they are
    the values the matcher sees. Non-grid priors (``clip=True``) take the exhaustive path.

    Args:
        level_priors: Default boxes per level, ``(H*W*k, 4)`` each, in the head's order.
        featmap_sizes: ``(H, W)`` per level.
        gt_bboxes: ``(N, 4)`` ``xyxy`` ground truths.
        chunk_size: Ground truths per step (the exhaustive path uses ``chunk_size * 16 / P``).
        resolve_ties: Return the lowest-index default box among equally good ones (the one the
            matcher forces); False returns one of them, faster (the IoU is the same up to float
            rounding).

    Returns:
        ``(best_iou (N,), best_prior (N,))``; the prior index is into the concatenated levels.
    """
    priors = torch.cat(list(level_priors))
    best_iou = gt_bboxes.new_zeros(len(gt_bboxes))
    best_prior = torch.zeros(len(gt_bboxes), dtype=torch.long)
    layouts = grid_layouts(level_priors, featmap_sizes)
    step = chunk_size if layouts else max(1, chunk_size * 16 // len(priors))
    for start in range(0, len(gt_bboxes), step):
        boxes = gt_bboxes[start : start + step]
        if layouts:
            idx = nearest_candidates(layouts, boxes)
            ious = bbox_overlaps(
                boxes[:, None].expand(-1, idx.shape[1], -1), priors[idx], is_aligned=True
            )
            best, arg = ious.max(dim=1)
            prior = idx.gather(1, arg[:, None]).squeeze(1)
            if resolve_ties:
                best, prior = _resolve_ties(layouts, priors, boxes, idx, ious, best, prior)
        else:
            best, prior = bbox_overlaps(boxes, priors).max(dim=1)
        best_iou[start : start + step] = best
        best_prior[start : start + step] = prior
    return best_iou, best_prior


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
        positives: ``(N, L)`` from :func:`~ssd_plugin.analysis.positives.positives_per_level`, or
            None to skip those figures.
        iou_thr: Coverage threshold.

    Returns:
        ``{'overall', 'by_size', 'by_class', 'best_iou_histogram'}``.
    """

    def group(mask: Tensor) -> Dict:
        return _group_figures(
            best_iou[mask], None if positives is None else positives[mask], iou_thr
        )

    everything = torch.ones(len(gts), dtype=torch.bool)
    counts, edges = np.histogram(best_iou.numpy(), bins=HIST_BINS, range=(0.0, 1.0))
    return {
        'iou_thr': iou_thr,
        'overall': group(everything),
        'by_size': {
            name: group((gts.areas >= lo) & (gts.areas < hi))
            for name, (lo, hi) in SIZE_BUCKETS.items()
        },
        'by_class': {name: group(gts.labels == i) for i, name in enumerate(gts.classes)},
        'best_iou_histogram': {'edges': edges.tolist(), 'counts': counts.tolist()},
    }
