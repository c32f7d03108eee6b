"""Batched MultiBox loss with hard negative mining (paper Sec. 2.2, Eq. 1-3).

``L = (L_conf + alpha L_loc) / N`` with ``N`` the matched default boxes of the whole batch;
``L_loc`` is smooth L1 over the positives' encoded offsets (Eq. 2), ``L_conf`` softmax
cross-entropy over the positives and the hard negatives (Eq. 3): per image the negatives with the
highest confidence loss, at most ``neg_pos_ratio`` times that image's positives.

The head's outputs are read where the convolutions wrote them, as *level views*
(:func:`~ssd_plugin.functional.head_outputs.level_views`): a level's
``(B, A * K, H, W)`` output viewed as ``(B, A, K, H * W)`` (``A`` default boxes per location,
``K`` channels), its default box ``(y * W + x) * A + a`` at ``[:, a, :, y * W + x]``. Mining needs
every default box's background loss, one pass without gradients; the loss itself is
computed on the few rows it selects (positives and mined negatives), so the backward pass writes
gradients for those rows only, and the ``(B, P, K)`` flattened copy is never made.
"""

from itertools import accumulate
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['Outputs', 'mine_hard_negatives', 'multibox_loss', 'positive_normaliser']

Outputs = Union[Tensor, Sequence[Tensor]]


def _as_levels(outputs: Outputs) -> List[Tensor]:
    """Level views as given, or a flattened ``(B, P, K)`` tensor as one ``(B, 1, K, P)`` level."""
    if isinstance(outputs, Tensor):
        return [outputs.transpose(1, 2).unsqueeze(1)]
    return list(outputs)


def _level_ranges(levels: Sequence[Tensor]) -> List[Tuple[int, int]]:
    sizes = [lvl.shape[1] * lvl.shape[3] for lvl in levels]
    return [(end - size, end) for size, end in zip(sizes, accumulate(sizes))]


def _rows(levels: Sequence[Tensor], img_ids: Tensor, prior_ids: Tensor) -> Tuple[Tensor, Tensor]:
    """The ``(N, K)`` channels of the given default boxes, grouped by level.

    Returns the rows and, for each row, its position in ``img_ids``/``prior_ids``. The rows are
    sorted by level once; the per-level counts are the only value read back to the host.
    """
    ranges = _level_ranges(levels)
    level_of = torch.zeros_like(prior_ids)
    for _, end in ranges[:-1]:  # comparisons with Python ints: no host-to-device copy
        level_of += prior_ids >= end
    positions = torch.argsort(level_of, stable=True)
    counts = torch.zeros(len(levels), dtype=torch.long, device=prior_ids.device)
    counts = counts.scatter_add_(0, level_of, torch.ones_like(level_of)).tolist()
    rows = []
    for lvl, (start, _), at in zip(levels, ranges, positions.split(counts)):
        local = prior_ids[at] - start
        rows.append(lvl[img_ids[at], local % lvl.shape[1], :, local // lvl.shape[1]])
    return torch.cat(rows), positions


@torch.no_grad()
def _background_loss(levels: Sequence[Tensor]) -> Tensor:
    """``(B, P)`` cross-entropy of every default box against the background (last) channel.

    ``log sum_c exp(x_c - x_bg)``: shifting by the background logit instead of the maximum saves
    a pass over all logits. It overflows only where a logit exceeds the background's by about 88;
    the levels where that happens (one host read for all levels) are recomputed with
    ``logsumexp`` there.
    """
    shifted = []
    for lvl in levels:
        logits = lvl.float()
        shifted.append((logits - logits[:, :, -1:]).exp_().sum(dim=2).log_())  # (B, A, L)
    overflows = torch.stack([torch.isinf(loss).any() for loss in shifted]).tolist()
    losses = []
    for lvl, loss, overflow in zip(levels, shifted, overflows):
        if overflow:
            logits = lvl.float()
            exact = torch.logsumexp(logits, dim=2) - logits[:, :, -1]
            loss = torch.where(torch.isinf(loss), exact, loss)
        losses.append(loss.transpose(1, 2).reshape(lvl.shape[0], -1))
    return torch.cat(losses, dim=1)


@torch.no_grad()
def mine_hard_negatives(
    neg_loss: Tensor, positive: Tensor, negative: Tensor, neg_pos_ratio: float = 3.0
) -> Tensor:
    """Select each image's hard negatives with one ``topk`` over the batch.

    Image ``b`` keeps ``min(floor(neg_pos_ratio * num_pos_b), num_neg_b)`` negatives of highest
    loss. ``k`` is the largest of these counts; a rank mask trims the other images' rows.

    Args:
        neg_loss: ``(B, P)`` confidence loss of each default box against the background class.
        positive: ``(B, P)`` bool, matched default boxes.
        negative: ``(B, P)`` bool, default boxes eligible as negatives.
        neg_pos_ratio: Negatives kept per positive (paper: 3).

    Returns:
        ``(B, P)`` bool mask of the mined negatives.
    """
    num_neg = torch.minimum((positive.sum(1) * neg_pos_ratio).floor().long(), negative.sum(1))
    hard = torch.zeros_like(negative)
    k = int(num_neg.max()) if num_neg.numel() else 0
    if k == 0:
        return hard
    ranked = torch.where(negative, neg_loss, float('-inf'))  # a scalar: no host-to-device copy
    top_idx = ranked.topk(k, dim=1).indices
    keep = torch.arange(k, device=neg_loss.device)[None] < num_neg[:, None]
    return hard.scatter(1, top_idx, keep)


def positive_normaliser(num_pos: Tensor) -> Tensor:
    """The paper's ``N`` as a divisor: the positive count, at least 1 (float32)."""
    return num_pos.clamp(min=1).float()


def multibox_loss(
    cls_scores: Outputs,
    bbox_preds: Outputs,
    labels: Tensor,
    bbox_targets: Tensor,
    neg_pos_ratio: float = 3.0,
    beta: float = 1.0,
    alpha: float = 1.0,
    normaliser: Optional[Callable[[Tensor], Tensor]] = None,
) -> Tuple[Tensor, Tensor]:
    """MultiBox loss of a batch (paper Eq. 1), without a per-image loop.

    Args:
        cls_scores: ``(B, P, C + 1)`` logits, background last, or their level views
            ``(B, A, C + 1, L)`` (see the module docstring) in level order.
        bbox_preds: ``(B, P, 4)`` predicted offsets, or their level views ``(B, A, 4, L)``.
        labels: ``(B, P)`` long: ``0..C-1`` positives, ``C`` background (negatives); any other
            value (e.g. -1) is ignored, neither positive nor negative.
        bbox_targets: ``(B, P, 4)`` encoded offsets; only the positives' are read, other entries
            may hold anything, inf/NaN included.
        neg_pos_ratio: Hard negatives per positive.
        beta: Smooth L1 transition point.
        alpha: Weight of the localisation loss.
        normaliser: Maps the batch's positive count (a 0-d long tensor) to the divisor of both
            sums; defaults to :func:`positive_normaliser`. Distributed training passes one that
            counts the positives of every process's batch
            (:func:`~ssd_plugin.models.losses.global_normaliser.global_batch_normaliser`).

    Returns:
        ``(loss_cls, loss_bbox)``, each summed and divided by the batch's positives, so
        ``L = loss_cls + loss_bbox``; both are exactly 0 (graph intact) when there are none.
    """
    cls_levels, reg_levels = _as_levels(cls_scores), _as_levels(bbox_preds)
    num_classes = cls_levels[0].shape[2] - 1
    positive = (labels >= 0) & (labels < num_classes)
    negative = labels == num_classes
    hard_neg = mine_hard_negatives(_background_loss(cls_levels), positive, negative, neg_pos_ratio)
    normaliser = (normaliser or positive_normaliser)(positive.sum())

    img_ids, prior_ids = (positive | hard_neg).nonzero(as_tuple=True)
    rows, at = _rows(cls_levels, img_ids, prior_ids)
    targets = labels[img_ids[at], prior_ids[at]]
    # Summing the selected rows' losses: the rest of the batch contributes 0 (and no gradient).
    loss_cls = F.cross_entropy(rows.float(), targets, reduction='sum') / normaliser

    img_ids, prior_ids = positive.nonzero(as_tuple=True)
    rows, at = _rows(reg_levels, img_ids, prior_ids)
    targets = bbox_targets[img_ids[at], prior_ids[at]].float()
    loc = F.smooth_l1_loss(rows.float(), targets, reduction='sum', beta=beta)
    return loss_cls, alpha * loc / normaliser
