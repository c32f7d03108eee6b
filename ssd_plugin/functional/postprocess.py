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
prefix fourfold only for the images that kept too few boxes and whose prefix may miss a
candidate: a prefix holding every score above the threshold, or ``nms_pre_per_class`` scores of
every class (each class's capped candidates are then its best scores, all inside), is complete.
So a one-class model with a cap up to ``2 * max_per_img`` (the converted Caffe face detector:
8,892 default boxes, cap 400, about 100 survivors) runs NMS once, on its 400 best boxes, as Caffe
does. If the prefix would reach every default box, the remaining images take each class's
``nms_pre_per_class`` best scores instead (a per-(image, class) top-k). So an untrained model,
where every score passes 0.01, costs about what a trained one costs: one pass over the scores, a
top-k over default boxes and NMS over a few hundred candidates per image.

NMS is torchvision's C++/CUDA kernel, the (image, class) groups of a call kept apart by
coordinate offsets (float64, so the offsets round no coordinate). How the candidates are cut into
kernel calls follows each kernel's cost (``batch_calls`` picks the policy, by default from the
device), and never changes the result (a group is never split):

- CPU: the kernel compares each kept box with every later candidate of its call, so it is called
  once per image (per (image, class) group in the per-class top-k), never once for a batch.
- CUDA: the kernel computes all ``N^2 / 2`` IoUs of an ``N``-candidate call into an
  ``N x ceil(N / 64)`` 8-byte mask that it copies to the host, and its launch needs
  ``ceil(N / 64) * 8`` bytes of shared memory (it fails above ``N = 393,216``). One call for a
  batch grows with the square of the batch's candidates (SSD300-COCO's worst case at batch 8:
  256,000 candidates, a 7.6 GiB mask), so whole groups are packed into calls of about
  :data:`NMS_CALL_LIMIT` candidates: a call holds the groups that *start* in its window of
  ``NMS_CALL_LIMIT`` candidates, so the largest call has fewer than ``NMS_CALL_LIMIT`` plus the
  largest group's candidates (``nms_pre_per_class``, or every default box when that is
  ``<= 0``). At SSD300's settings (``nms_pre_per_class=400``) that is at most 8,591 candidates:
  a 9.3 MB mask and 3.7e7 IoUs per call; with no per-class cap on SSD300's 8,732 default boxes,
  16,923 candidates, 36 MB and 1.4e8 IoUs. A typical trained batch fits one call.

Exactness. IoUs are computed in float64 on both devices (the boxes are float64; float32 offset
boxes would round the coordinates of high group ids). The CPU kernel compares ``IoU > iou_thr``
in double; torchvision's CUDA kernel passes the threshold to its IoU test as a float32, so it
compares ``IoU > float32(iou_thr)`` (0.45 becomes 0.44999998807907104). That is the one
difference between the devices: a pair whose IoU lies in ``(float32(iou_thr), iou_thr]`` (a
sliver of width about 1e-8) is suppressed on CUDA and not on the CPU. No threshold passed to the
kernel removes it (0.45 has no float32 value: another float32 threshold moves the sliver, it
cannot close it), so it is documented, not hidden; ``tools/benchmarks/check_device_parity.py``
shows it. The kernel is given the candidates' order
as its score key, so ties are broken as documented in :func:`batched_multiclass_nms`.
"""

from functools import lru_cache
from typing import Optional, Tuple

import torch
from torch import Tensor
from torchvision.ops import nms

__all__ = ['NMS_CALL_LIMIT', 'group_rank', 'packed_calls', 'batched_multiclass_nms']

# The first prefix holds the best PREFIX_START * max_per_img default boxes; each widening
# multiplies that by PREFIX_GROWTH.
PREFIX_START = 2
PREFIX_GROWTH = 4
# Candidates per batched (CUDA) NMS call, before the last group: 8 MiB of mask and 3.4e7
# float64 IoUs. Cutting a batch into such calls does N * NMS_CALL_LIMIT / 2 IoUs instead of
# N^2 / 2, at the price of one launch and one host copy per call; torchvision's batched_nms
# makes per-class calls above 5,000 boxes on CUDA for the same reason.
NMS_CALL_LIMIT = 8192


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
    counts = _counts(groups, num_groups)
    starts = counts.cumsum(0) - counts
    rank = torch.arange(len(order), device=groups.device) - starts[groups[order]]
    return order, rank


def _counts(ids: Tensor, num: int) -> Tensor:
    """``bincount`` of ``ids`` in ``[0, num)`` without its host read of the largest id (CUDA)."""
    return torch.zeros(num, dtype=torch.long, device=ids.device).scatter_add_(
        0, ids, torch.ones_like(ids)
    )


def _segment_rank(segments: Tensor, num_segments: int) -> Tensor:
    """0-based position of each entry inside its run of equal, sorted ``segments``."""
    counts = _counts(segments, num_segments)
    return (
        torch.arange(len(segments), device=segments.device) - (counts.cumsum(0) - counts)[segments]
    )


def _prefix_candidates(
    scores: Tensor, best: Tensor, pending: Tensor, prefix: int, floor: float,
    nms_pre_per_class: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """The pending images' scores at or above their ``prefix``-th best default box's best score.

    Found in the default boxes whose best score reaches that cut-off, without a pass over all
    scores. Returns ``(rows, prior_ids, labels, complete)``: ``rows`` index ``pending``, in
    ascending (row, prior, class) order; ``complete`` (per row) says the prefix holds every
    candidate: every score above the threshold, or, for each class, at least
    ``nms_pre_per_class`` scores (its capped candidates are then its best, all in the prefix).
    """
    part = scores if len(pending) == len(scores) else scores[pending]
    part_best = best if len(pending) == len(best) else best[pending]
    cutoff = part_best.topk(prefix, dim=1, sorted=False).values.amin(dim=1)
    lower = cutoff.clamp(min=floor)
    rows, prior_ids = (part_best >= lower[:, None]).nonzero(as_tuple=True)
    row_ids, labels = (part[rows, prior_ids] >= lower[rows, None]).nonzero(as_tuple=True)
    rows, prior_ids = rows[row_ids], prior_ids[row_ids]
    complete = cutoff < floor
    if nms_pre_per_class > 0:
        num_classes = scores.shape[2]
        per_class = _counts(rows * num_classes + labels, len(pending) * num_classes)
        complete |= (per_class.view(-1, num_classes) >= nms_pre_per_class).all(dim=1)
    return rows, prior_ids, labels, complete


def _per_class_candidates(
    scores: Tensor, pending: Tensor, floor: float, nms_pre_per_class: int
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each class's ``nms_pre_per_class`` best scores above the threshold, per pending image.

    Ties at the cut are all included (:func:`_sort_candidates` ranks them). Returns what
    :func:`_prefix_candidates` returns; every row is complete.
    """
    part = scores if len(pending) == len(scores) else scores[pending]
    lower = floor
    if 0 < nms_pre_per_class < scores.shape[1]:
        kth = part.topk(nms_pre_per_class, dim=1, sorted=False).values.amin(dim=1)
        lower = kth[:, None].clamp(min=floor)
    rows, prior_ids, labels = (part >= lower).nonzero(as_tuple=True)
    return rows, prior_ids, labels, torch.ones(len(pending), dtype=torch.bool, device=part.device)


def _sort_candidates(
    img_ids: Tensor, prior_ids: Tensor, labels: Tensor, scores: Tensor, num_imgs: int,
    num_classes: int, nms_pre_per_class: int,
) -> Tuple[Tensor, ...]:  # fmt: skip
    """Cap candidates per (image, class) and sort them into output order.

    The candidates (``img_ids`` in ``[0, num_imgs)``) must come in ascending (image, prior,
    class) order, as ``nonzero`` lists them. Returns ``(img_ids, prior_ids, labels, scores)``
    sorted by image, descending score, then ascending ``prior * C + class`` (stable sorts).
    """
    # A cap only bites when some group may exceed it (the prefix of a 1-class model never does).
    if 0 < nms_pre_per_class < len(img_ids):
        groups = img_ids * num_classes + labels
        order, rank = group_rank(groups, scores, num_imgs * num_classes)
        order = order[rank < nms_pre_per_class].sort().values
        img_ids, prior_ids, labels, scores = (
            img_ids[order],
            prior_ids[order],
            labels[order],
            scores[order],
        )
    order = torch.argsort(scores, descending=True, stable=True)
    if num_imgs > 1:
        order = order[torch.argsort(img_ids[order], stable=True)]
    return img_ids[order], prior_ids[order], labels[order], scores[order]


def packed_calls(groups: Tensor, call_limit: int) -> Tensor:
    """Batched-NMS call of each entry: whole groups, by the window of ``call_limit`` they start in.

    Args:
        groups: ``(N,)`` group ids, each group's entries contiguous.
        call_limit: Window size; a call has fewer than ``call_limit`` plus its last group's
            entries.

    Returns:
        ``(N,)`` non-decreasing call ids (not necessarily consecutive).
    """
    counts = torch.unique_consecutive(groups, return_counts=True)[1]
    starts = torch.div(counts.cumsum(0) - counts, call_limit, rounding_mode='floor')
    return starts.repeat_interleave(counts, output_size=len(groups))


def _greedy_nms(boxes: Tensor, groups: Tensor, calls: Tensor, iou_thr: float) -> Tensor:
    """Greedy NMS inside each group, one kernel call per run of equal ``calls``.

    Entries must be sorted by ``calls`` and ``groups`` (each group inside one run) and, inside
    each group, by descending score. Returns the kept entries' positions, ascending.
    """
    counts = torch.unique_consecutive(calls, return_counts=True)[1]
    starts = counts.cumsum(0) - counts
    # Offsets count groups from the call's first one: the smallest float64 coordinates.
    local_groups = groups - groups[starts].repeat_interleave(counts, output_size=len(groups))
    boxes = boxes.double()
    low = boxes.min()
    span = boxes.max() - low + 1
    shifted = boxes - low + (local_groups.double() * span)[:, None]
    key = -torch.arange(len(boxes), device=boxes.device, dtype=torch.float64)
    kept = []
    for start, count in zip(*torch.stack([starts, counts]).tolist()):
        stop = start + count
        kept.append(nms(shifted[start:stop], key[start:stop], iou_thr) + start)
    return torch.cat(kept).sort().values


@lru_cache(maxsize=64)
def _strict_floor(score_thr: float, dtype: torch.dtype) -> float:
    """The least ``dtype`` value above ``score_thr``: ``score > score_thr`` as
    ``score >= floor``, so one comparison with a per-image bound selects a prefix.

    Made on the host (a device tensor would be a host-to-device copy); exact in ``dtype``.
    Cached: a handful of tiny ops per batch otherwise, a visible share at batch 1.
    """
    thr = torch.tensor(score_thr, dtype=dtype)
    return float(torch.nextafter(thr, thr.new_tensor(float('inf'))))


def _nms_keep(
    boxes: Tensor, local: Tensor, groups: Tensor, iou_thr: float, per_group: bool,
    call_limit: Optional[int], grouped: bool = False,
) -> Tensor:  # fmt: skip
    """Positions of the candidates greedy NMS keeps, ascending.

    Candidates come sorted by image and descending score; ``groups`` are their (image, class)
    ids, already contiguous if ``grouped`` (one class: a group is an image). ``call_limit``
    None: the CPU policy, one kernel call per image (per group when ``per_group``); otherwise
    groups packed by :func:`packed_calls`.
    """
    if not grouped:
        by_group = torch.argsort(groups, stable=True)
        boxes, local, groups = boxes[by_group], local[by_group], groups[by_group]
    if call_limit is not None:
        calls = packed_calls(groups, call_limit)
    else:
        calls = groups if per_group else local
    keep = _greedy_nms(boxes, groups, calls, iou_thr)
    return keep if grouped else by_group[keep].sort().values


def batched_multiclass_nms(
    boxes: Tensor,
    scores: Tensor,
    score_thr: float,
    iou_thr: Optional[float],
    nms_pre_per_class: int,
    max_per_img: int,
    batch_calls: Optional[bool] = None,
    call_limit: int = NMS_CALL_LIMIT,
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
        batch_calls: How NMS kernel calls are cut (see the module docstring): True packs whole
            (image, class) groups into calls of about ``call_limit`` candidates (the CUDA
            kernel's policy), False calls once per image or group (the CPU kernel's). None:
            True on any device but the CPU. The result is the same.
        call_limit: Candidates per packed call, before its last group.

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
    if call_limit < 1:
        raise ValueError(f'call_limit must be >= 1, got {call_limit}')
    num_imgs, num_priors, num_classes = scores.shape
    device = scores.device
    if batch_calls is None:
        batch_calls = device.type != 'cpu'
    out = (
        boxes.new_zeros((num_imgs, max_per_img, 4)),
        scores.new_zeros((num_imgs, max_per_img)),
        torch.zeros((num_imgs, max_per_img), dtype=torch.long, device=device),
        torch.zeros((num_imgs, max_per_img), dtype=torch.bool, device=device),
    )
    if not (num_imgs and num_priors and num_classes):
        return out
    floor = _strict_floor(score_thr, scores.dtype)
    best = scores.amax(dim=2)  # each default box's best class score
    pending = (best.amax(dim=1) >= floor).nonzero().squeeze(1)
    prefix = PREFIX_START * max_per_img
    while len(pending):
        in_prefix = prefix < num_priors
        if in_prefix:
            local, prior_ids, labels, complete = _prefix_candidates(
                scores, best, pending, prefix, floor, nms_pre_per_class
            )
        else:
            local, prior_ids, labels, complete = _per_class_candidates(
                scores, pending, floor, nms_pre_per_class
            )
        local, prior_ids, labels, cand_scores = _sort_candidates(
            local, prior_ids, labels, scores[pending[local], prior_ids, labels], len(pending),
            num_classes, nms_pre_per_class,
        )  # fmt: skip
        if iou_thr is not None and len(local):
            keep = _nms_keep(
                boxes[pending[local], prior_ids], local, local * num_classes + labels, iou_thr,
                per_group=not in_prefix, call_limit=call_limit if batch_calls else None,
                grouped=num_classes == 1,
            )  # fmt: skip
            local, prior_ids, labels, cand_scores = (
                local[keep],
                prior_ids[keep],
                labels[keep],
                cand_scores[keep],
            )
        done = _write_detections(
            out, boxes, pending, local, prior_ids, labels, cand_scores, complete, max_per_img
        )
        pending = pending[~done]
        prefix *= PREFIX_GROWTH
    return out


def _write_detections(
    out: Tuple[Tensor, Tensor, Tensor, Tensor], boxes: Tensor, pending: Tensor, local: Tensor,
    prior_ids: Tensor, labels: Tensor, scores: Tensor, complete: Tensor, max_per_img: int,
) -> Tensor:  # fmt: skip
    """Write the finished rows' best ``max_per_img`` survivors; returns which rows finished.

    A row is finished when its candidates were complete or kept ``max_per_img`` boxes.
    """
    rank = _segment_rank(local, len(pending))
    done = complete | (_counts(local, len(pending)) >= max_per_img)
    sel = (done[local] & (rank < max_per_img)).nonzero().squeeze(1)  # one host read, not five
    at_img, at_rank = pending[local[sel]], rank[sel]
    out_boxes, out_scores, out_labels, out_valid = out
    out_boxes[at_img, at_rank] = boxes[at_img, prior_ids[sel]]
    out_scores[at_img, at_rank] = scores[sel]
    out_labels[at_img, at_rank] = labels[sel]
    out_valid[at_img, at_rank] = True
    return done
