"""Batched SSD inference post-processing (paper Sec. 3 "Inference"; Caffe ``DetectionOutput``).

Per image and class: keep the scores above a confidence threshold (paper: 0.01), at most the top
``nms_pre_per_class`` of them (Caffe: 400), run greedy NMS at a jaccard threshold (0.45), then
keep the image's ``max_per_img`` (200) best detections over all classes.

The work is bounded by what can reach the output, not by how many scores pass the threshold.
Greedy NMS decides a candidate from the higher-scoring candidates of its class alone, so NMS over
any *score prefix* of an image's candidates (all of them above some cut-off) decides every
candidate in the prefix exactly, and once a prefix keeps ``max_per_img`` boxes they are the
image's output. :func:`batched_multiclass_nms` starts with the scores at or above the
``2 * max_per_img``-th best default box's best score (a few hundred candidates) and widens the
prefix fourfold only for the images that kept too few boxes. If the prefix would reach every
default box, the remaining images take each class's ``nms_pre_per_class`` best scores instead (a
per-(image, class) top-k) and NMS runs per (image, class). So an untrained model, where every
score passes 0.01, costs about what a trained one costs: one pass over the scores, a top-k over
default boxes and NMS over a few hundred candidates per image.

NMS is torchvision's C++/CUDA kernel, classes kept apart by coordinate offsets. The offset boxes
are float64, so IoU is computed in float64: torchvision's ``nms`` on float32 boxes can decide
differently only for an IoU within float32 rounding (about 1e-7) of the threshold. The CPU
kernel compares each kept box with every later candidate of its call, so on the CPU it is called
once per image (per (image, class) in the fallback), never once for a batch; the CUDA kernel is
a parallel bit mask and takes the batch in one call. The kernel is given the candidates' order
as its score key, so ties are broken as documented in :func:`batched_multiclass_nms`.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor
from torchvision.ops import nms

__all__ = ['group_rank', 'batched_multiclass_nms']

# The first prefix holds the best PREFIX_START * max_per_img default boxes; each widening
# multiplies that by PREFIX_GROWTH.
PREFIX_START = 2
PREFIX_GROWTH = 4


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


def _segment_rank(segments: Tensor, num_segments: int) -> Tensor:
    """0-based position of each entry inside its run of equal, sorted ``segments``."""
    counts = torch.bincount(segments, minlength=num_segments)
    return (
        torch.arange(len(segments), device=segments.device) - (counts.cumsum(0) - counts)[segments]
    )


def _sort_candidates(
    img_ids: Tensor, prior_ids: Tensor, labels: Tensor, scores: Tensor, num_classes: int,
    nms_pre_per_class: int,
) -> Tuple[Tensor, ...]:  # fmt: skip
    """Cap candidates per (image, class) and sort them into output order.

    The candidates must come in ascending (image, prior, class) order, as ``nonzero`` lists
    them. Returns ``(img_ids, prior_ids, labels, scores)`` sorted by image, descending score,
    then ascending ``prior * C + class`` (the sorts are stable).
    """
    if nms_pre_per_class > 0 and len(img_ids):
        groups = img_ids * num_classes + labels
        order, rank = group_rank(groups, scores, int(groups.max()) + 1)
        order = order[rank < nms_pre_per_class].sort().values
        img_ids, prior_ids, labels, scores = (
            img_ids[order],
            prior_ids[order],
            labels[order],
            scores[order],
        )
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(img_ids[order], stable=True)]
    return img_ids[order], prior_ids[order], labels[order], scores[order]


def _greedy_nms(boxes: Tensor, groups: Tensor, calls: Tensor, iou_thr: float) -> Tensor:
    """Greedy NMS inside each group; returns the kept entries' positions, ascending.

    Entries must be sorted by ``calls`` and, inside each group, by descending score. Each run of
    equal ``calls`` is one kernel call on the CPU; on CUDA everything is one call.
    """
    boxes = boxes.double()
    low = boxes.min()
    span = boxes.max() - low + 1
    shifted = boxes - low + (groups.double() * span)[:, None]
    key = -torch.arange(len(boxes), device=boxes.device, dtype=torch.float64)
    if boxes.device.type != 'cpu':
        return nms(shifted, key, iou_thr).sort().values
    kept, start = [], 0
    for count in torch.unique_consecutive(calls, return_counts=True)[1].tolist():
        stop = start + count
        kept.append(nms(shifted[start:stop], key[start:stop], iou_thr) + start)
        start = stop
    return torch.cat(kept).sort().values


def batched_multiclass_nms(
    boxes: Tensor,
    scores: Tensor,
    score_thr: float,
    iou_thr: Optional[float],
    nms_pre_per_class: int,
    max_per_img: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-class NMS and top-k for a whole batch of class-agnostic boxes.

    Equals a loop over images and classes that keeps each class's scores above ``score_thr``,
    its ``nms_pre_per_class`` best, runs ``torchvision.ops.nms`` on them and keeps the image's
    ``max_per_img`` best survivors. Ties between equal scores go to the lower default-box index,
    then the lower class (ascending ``prior * C + class``) in the cap, in NMS and in the top-k.

    Args:
        boxes: ``(B, P, 4)`` decoded ``xyxy`` boxes, one per default box, shared by all classes.
        scores: ``(B, P, C)`` class probabilities without background.
        score_thr: Scores must be strictly greater (paper: 0.01).
        iou_thr: Per-class NMS threshold (paper: 0.45): a box overlapping a kept box of its
            class by more than this is suppressed (torchvision's strict ``>``). None skips NMS.
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
    num_imgs, num_priors, num_classes = scores.shape
    device = scores.device
    out_boxes = boxes.new_zeros((num_imgs, max_per_img, 4))
    out_scores = scores.new_zeros((num_imgs, max_per_img))
    out_labels = torch.zeros((num_imgs, max_per_img), dtype=torch.long, device=device)
    out_valid = torch.zeros((num_imgs, max_per_img), dtype=torch.bool, device=device)

    if not (num_imgs and num_priors and num_classes):
        return out_boxes, out_scores, out_labels, out_valid
    # "score > score_thr" as "score >= floor" in the scores' dtype, so one comparison with a
    # per-image bound selects a prefix.
    thr = torch.tensor(score_thr, dtype=scores.dtype, device=device)
    floor = torch.nextafter(thr, thr.new_tensor(float('inf')))
    best = scores.amax(dim=2)  # each default box's best class score
    pending = (best.amax(dim=1) >= floor).nonzero().squeeze(1)
    prefix = PREFIX_START * max_per_img
    while len(pending):
        if prefix < num_priors:
            # The scores at or above the prefix-th best default box's best score: found in the
            # default boxes whose best score reaches it, without a pass over all scores.
            cutoff = best[pending].topk(prefix, dim=1, sorted=False).values.amin(dim=1)
            complete = cutoff < floor  # the prefix holds every score above the threshold
            lower = torch.maximum(cutoff, floor)
            rows_img, prior_ids = (best[pending] >= lower[:, None]).nonzero(as_tuple=True)
            rows = scores[pending[rows_img], prior_ids]
            row_ids, labels = (rows >= lower[rows_img, None]).nonzero(as_tuple=True)
            local, prior_ids = rows_img[row_ids], prior_ids[row_ids]
        else:
            # Each class's nms_pre_per_class best scores (ties at the cut included, then ranked).
            part = scores if len(pending) == num_imgs else scores[pending]
            lower = floor.expand(len(pending), 1, num_classes)
            if 0 < nms_pre_per_class < num_priors:
                kth = part.topk(nms_pre_per_class, dim=1, sorted=False).values.amin(dim=1)
                lower = torch.maximum(kth[:, None], floor)
            complete = torch.ones(len(pending), dtype=torch.bool, device=device)
            local, prior_ids, labels = (part >= lower).nonzero(as_tuple=True)
        local, prior_ids, labels, cand_scores = _sort_candidates(
            local, prior_ids, labels, scores[pending[local], prior_ids, labels], num_classes,
            nms_pre_per_class,
        )  # fmt: skip
        if iou_thr is not None and len(local):
            cand_boxes = boxes[pending[local], prior_ids]
            groups = local * num_classes + labels
            if prefix < num_priors:
                keep = _greedy_nms(cand_boxes, groups, local, iou_thr)
            else:
                # Per (image, class) calls: the kernel's cost stays within each class's group.
                by_group = torch.argsort(groups, stable=True)
                keep = by_group[_greedy_nms(cand_boxes[by_group], groups[by_group],
                                            groups[by_group], iou_thr)].sort().values  # fmt: skip
            local, prior_ids, labels, cand_scores = (
                local[keep],
                prior_ids[keep],
                labels[keep],
                cand_scores[keep],
            )
        rank = _segment_rank(local, len(pending))
        counts = torch.bincount(local, minlength=len(pending))
        done = complete | (counts >= max_per_img)
        out = done[local] & (rank < max_per_img)
        at_img, at_rank = pending[local[out]], rank[out]
        out_boxes[at_img, at_rank] = boxes[at_img, prior_ids[out]]
        out_scores[at_img, at_rank] = cand_scores[out]
        out_labels[at_img, at_rank] = labels[out]
        out_valid[at_img, at_rank] = True
        pending = pending[~done]
        prefix *= PREFIX_GROWTH
    return out_boxes, out_scores, out_labels, out_valid
