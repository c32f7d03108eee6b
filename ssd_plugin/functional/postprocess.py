"""Batched SSD inference post-processing (paper Sec. 3 "Inference"; Caffe ``DetectionOutput``).

Per image and class: keep the scores above a confidence threshold (paper: 0.01), at most the top
``nms_pre_per_class`` of them (Caffe: 400), run greedy NMS at a jaccard threshold (0.45), then
keep the image's ``max_per_img`` (200) best detections over all classes.

Every (image, class) pair of the batch is processed at once: the candidates are grouped by one
sort, padded to ``(groups, K)`` with ``K <= nms_pre_per_class``, and suppressed by an exact,
matrix-form greedy NMS inside each group (no Python loop over images or classes). A single
coordinate-offset call of torchvision's ``nms`` over the whole batch would be exact too, but its
CPU kernel compares every kept box with every later box of *all* groups (``O(N * kept)``) and its
CUDA kernel builds an ``N x N`` bit mask, which grows with the square of the batch.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ['group_rank', 'padded_greedy_nms', 'batched_multiclass_nms']


def group_rank(groups: Tensor, scores: Tensor, num_groups: int) -> Tuple[Tensor, Tensor]:
    """Order entries by group, then by descending score, and rank them inside their group.

    Ties keep the input order (a stable sort), as Caffe's ``std::stable_sort``.

    Args:
        groups: ``(N,)`` long group id of each entry, in ``[0, num_groups)``.
        scores: ``(N,)`` scores.
        num_groups: Number of groups.

    Returns:
        ``(order, rank)``: the permutation that sorts the entries and, in that order, each
        entry's 0-based rank inside its group.
    """
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    counts = torch.bincount(groups, minlength=num_groups)
    starts = counts.cumsum(0) - counts
    rank = torch.arange(len(order), device=groups.device) - starts[groups[order]]
    return order, rank


def _overlap_exceeds(boxes: Tensor, iou_thr: float) -> Tensor:
    """``(G, K, K)`` bool: ``IoU(box_i, box_j) > iou_thr`` within each row of ``(G, K, 4)``.

    Tested as ``inter > iou_thr * union`` (no division): the same as torchvision's
    ``inter / union > iou_thr`` for ``union > 0``, and False for two empty boxes (NaN there).
    """
    x1, y1, x2, y2 = boxes.unbind(-1)
    # (G, K, K) intermediates updated in place: this is the post-processing's largest cost.
    inter = torch.minimum(x2[:, :, None], x2[:, None]).sub_(
        torch.maximum(x1[:, :, None], x1[:, None])
    )
    height = torch.minimum(y2[:, :, None], y2[:, None]).sub_(
        torch.maximum(y1[:, :, None], y1[:, None])
    )
    inter.clamp_(min=0).mul_(height.clamp_(min=0))
    area = (x2 - x1) * (y2 - y1)
    union = (area[:, :, None] + area[:, None]).sub_(inter).mul_(iou_thr)
    return inter > union


def padded_greedy_nms(
    boxes: Tensor, valid: Tensor, iou_thr: float, max_elements: int = 1 << 24
) -> Tensor:
    """Exact greedy NMS inside each row of a padded batch of score-sorted boxes.

    Greedy NMS keeps box ``j`` iff no kept box ``i < j`` overlaps it by more than ``iou_thr``.
    That recursion has one solution, which the Jacobi iteration
    ``keep_j <- valid_j and not any_{i<j}(keep_i and IoU_ij > thr)`` reaches exactly: after ``t``
    steps the first ``t`` entries are final, and it stops as soon as nothing changes (usually
    after a few steps; "Cluster-NMS", Zheng et al. 2021). Rows are processed in chunks of at most
    ``max_elements`` IoU entries to bound memory.

    Args:
        boxes: ``(G, K, 4)`` ``xyxy`` boxes, each row sorted by descending score.
        valid: ``(G, K)`` bool, False for padding.
        iou_thr: Boxes overlapping a kept box by more than this are suppressed (torchvision's
            ``nms`` uses the same strict ``>``).
        max_elements: IoU entries computed at once.

    Returns:
        ``(G, K)`` bool, the kept boxes.
    """
    num_groups, k = valid.shape
    keep = valid.clone()
    if num_groups == 0 or k == 0:
        return keep
    later = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(1)
    chunk = max(1, max_elements // (k * k))
    for start in range(0, num_groups, chunk):
        rows = slice(start, start + chunk)
        # As floats, "is box j suppressed by a kept box" is one batched matrix product.
        suppresses = (_overlap_exceeds(boxes[rows], iou_thr) & later & valid[rows, :, None]).to(
            boxes.dtype
        )
        kept = valid[rows]
        while True:
            hit = torch.bmm(kept.to(boxes.dtype)[:, None], suppresses)[:, 0] > 0
            updated = valid[rows] & ~hit
            if torch.equal(updated, kept):
                break
            kept = updated
        keep[rows] = kept
    return keep


def batched_multiclass_nms(
    boxes: Tensor,
    scores: Tensor,
    score_thr: float,
    iou_thr: Optional[float],
    nms_pre_per_class: int,
    max_per_img: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-class NMS and top-k for a whole batch of class-agnostic boxes.

    Args:
        boxes: ``(B, P, 4)`` decoded ``xyxy`` boxes, one per default box, shared by all classes.
        scores: ``(B, P, C)`` class probabilities without background.
        score_thr: Scores must be strictly greater (paper: 0.01).
        iou_thr: Per-class NMS threshold (paper: 0.45); None skips NMS.
        nms_pre_per_class: Best candidates per image and class kept before NMS (Caffe: 400);
            ``<= 0`` keeps all.
        max_per_img: Detections kept per image after NMS (paper: 200).

    Returns:
        ``(boxes (B, K, 4), scores (B, K), labels (B, K), valid (B, K))`` with
        ``K = max_per_img``: each image's detections sorted by descending score, then padding
        (``valid`` False, zeros).
    """
    if boxes.dim() != 3 or scores.dim() != 3 or boxes.shape[:2] != scores.shape[:2]:
        raise ValueError(
            f'expected boxes (B, P, 4) and scores (B, P, C), got {tuple(boxes.shape)} and '
            f'{tuple(scores.shape)}'
        )
    if max_per_img < 1:
        raise ValueError(f'max_per_img must be >= 1, got {max_per_img}')
    num_imgs, _, num_classes = scores.shape
    device = scores.device

    # Candidates above the threshold, grouped by (image, class) and capped per group.
    img_ids, prior_ids, labels = (scores > score_thr).nonzero(as_tuple=True)
    cand_scores = scores[img_ids, prior_ids, labels]
    groups = img_ids * num_classes + labels
    order, rank = group_rank(groups, cand_scores, num_imgs * num_classes)
    if nms_pre_per_class > 0:
        order, rank = order[rank < nms_pre_per_class], rank[rank < nms_pre_per_class]
    img_ids, prior_ids, labels = img_ids[order], prior_ids[order], labels[order]
    cand_scores, cand_boxes = cand_scores[order], boxes[img_ids, prior_ids]

    if iou_thr is not None and len(order) > 0:
        _, slot = torch.unique_consecutive(groups[order], return_inverse=True)
        width = int(rank.max()) + 1
        padded = cand_boxes.new_zeros((int(slot.max()) + 1, width, 4))
        padded[slot, rank] = cand_boxes
        valid = torch.zeros(padded.shape[:2], dtype=torch.bool, device=device)
        valid[slot, rank] = True
        kept = padded_greedy_nms(padded, valid, iou_thr)[slot, rank]
        img_ids, labels, cand_scores, cand_boxes = (
            img_ids[kept],
            labels[kept],
            cand_scores[kept],
            cand_boxes[kept],
        )

    # Each image's best detections over all classes, scattered into fixed-size outputs.
    order, rank = group_rank(img_ids, cand_scores, num_imgs)
    top = rank < max_per_img
    order, rank = order[top], rank[top]
    img_ids = img_ids[order]
    out_boxes = boxes.new_zeros((num_imgs, max_per_img, 4))
    out_scores = scores.new_zeros((num_imgs, max_per_img))
    out_labels = labels.new_zeros((num_imgs, max_per_img))
    out_valid = torch.zeros((num_imgs, max_per_img), dtype=torch.bool, device=device)
    out_boxes[img_ids, rank] = cand_boxes[order]
    out_scores[img_ids, rank] = cand_scores[order]
    out_labels[img_ids, rank] = labels[order]
    out_valid[img_ids, rank] = True
    return out_boxes, out_scores, out_labels, out_valid
