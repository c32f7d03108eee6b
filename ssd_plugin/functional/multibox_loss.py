"""Batched MultiBox loss with hard negative mining (paper Sec. 2.2, Eq. 1-3).

``L = (L_conf + alpha L_loc) / N`` with ``N`` the matched default boxes of the whole batch;
``L_loc`` is smooth L1 over the positives' encoded offsets (Eq. 2), ``L_conf`` softmax
cross-entropy over the positives and the hard negatives (Eq. 3): per image the negatives with the
highest confidence loss, at most ``neg_pos_ratio`` times that image's positives.
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['mine_hard_negatives', 'multibox_loss']


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
    ranked = torch.where(negative, neg_loss, neg_loss.new_tensor(float('-inf')))
    top_idx = ranked.topk(k, dim=1).indices
    keep = torch.arange(k, device=neg_loss.device)[None] < num_neg[:, None]
    return hard.scatter(1, top_idx, keep)


def multibox_loss(
    cls_scores: Tensor,
    bbox_preds: Tensor,
    labels: Tensor,
    bbox_targets: Tensor,
    neg_pos_ratio: float = 3.0,
    beta: float = 1.0,
    alpha: float = 1.0,
) -> Tuple[Tensor, Tensor]:
    """MultiBox loss of a batch (paper Eq. 1), without a per-image loop.

    Args:
        cls_scores: ``(B, P, C + 1)`` logits, background last.
        bbox_preds: ``(B, P, 4)`` predicted offsets.
        labels: ``(B, P)`` long: ``0..C-1`` positives, ``C`` background (negatives); any other
            value (e.g. -1) is ignored, neither positive nor negative.
        bbox_targets: ``(B, P, 4)`` encoded offsets; only the positives' are read, other entries
            may hold anything, inf/NaN included.
        neg_pos_ratio: Hard negatives per positive.
        beta: Smooth L1 transition point.
        alpha: Weight of the localisation loss.

    Returns:
        ``(loss_cls, loss_bbox)``, each summed and divided by the batch's positives, so
        ``L = loss_cls + loss_bbox``; both are exactly 0 (graph intact) when there are none.
    """
    num_classes = cls_scores.shape[-1] - 1
    positive = (labels >= 0) & (labels < num_classes)
    negative = labels == num_classes
    log_probs = F.log_softmax(cls_scores.float(), dim=-1)
    safe_labels = torch.where(positive | negative, labels, num_classes).long()
    conf_loss = -log_probs.gather(-1, safe_labels[..., None]).squeeze(-1)

    hard_neg = mine_hard_negatives(conf_loss.detach(), positive, negative, neg_pos_ratio)
    normaliser = positive.sum().clamp(min=1).to(conf_loss.dtype)
    selected = positive | hard_neg
    loss_cls = torch.where(selected, conf_loss, conf_loss.new_zeros(())).sum() / normaliser

    pos4 = positive[..., None]
    targets = torch.where(pos4, bbox_targets.to(bbox_preds.dtype), bbox_preds.new_zeros(()))
    loc = F.smooth_l1_loss(bbox_preds.float(), targets.float(), reduction='none', beta=beta)
    loss_bbox = alpha * torch.where(pos4, loc, loc.new_zeros(())).sum() / normaliser
    return loss_cls, loss_bbox
