"""MODELS ``MultiBoxLoss``: SSD's training objective (paper Eq. 1-3) as an mmdet loss module."""

from typing import Dict

from mmdet.registry import MODELS
from torch import Tensor, nn

from ssd_plugin.functional.multibox_loss import Outputs, multibox_loss

from .global_normaliser import global_batch_normaliser

__all__ = ['MultiBoxLoss']


@MODELS.register_module()
class MultiBoxLoss(nn.Module):
    """``L = (L_conf + alpha L_loc) / N`` with per-image hard negative mining, batched.

    See :func:`~ssd_plugin.functional.multibox_loss.multibox_loss`. Unlike mmdet's ``SSDHead``,
    which normalises by ``sum(max(num_pos_i, 1))``, ``N`` is the batch's true positive count, so
    an image without positives adds nothing to it (the paper's ``N``; both agree when every
    image has a positive).

    Under distributed training ``N`` counts the positives of the *global* batch, all processes'
    images (:func:`~ssd_plugin.models.losses.global_normaliser.global_batch_normaliser`, one
    all-reduce per step), and each process's loss is scaled so that the mean of the processes'
    gradients, which DDP applies, equals the gradient of the global batch on one process: the
    same model from any number of processes. With one process nothing changes.

    Args:
        neg_pos_ratio: Hard negatives per positive (paper: 3).
        beta: Smooth L1 transition point (paper: 1).
        alpha: Weight of the localisation term (paper: 1).
        global_batch: Normalise by the global batch's positives (above); False divides by this
            process's own, as mmdet's ``SSDHead`` and earlier versions of this plugin do, and
            needs no collective (e.g. a loss computed on one process of a distributed run).
    """

    def __init__(
        self,
        neg_pos_ratio: float = 3.0,
        beta: float = 1.0,
        alpha: float = 1.0,
        global_batch: bool = True,
    ) -> None:
        super().__init__()
        if neg_pos_ratio < 0 or beta < 0 or alpha < 0:
            raise ValueError(
                f'neg_pos_ratio, beta and alpha must be >= 0, got {neg_pos_ratio}, {beta}, {alpha}'
            )
        self.neg_pos_ratio = neg_pos_ratio
        self.beta = beta
        self.alpha = alpha
        self.global_batch = global_batch

    def forward(
        self, cls_scores: Outputs, bbox_preds: Outputs, labels: Tensor, bbox_targets: Tensor
    ) -> Dict[str, Tensor]:
        """Compute the loss of a batch.

        Args:
            cls_scores: ``(B, P, C + 1)`` logits, background last, or their level views
                ``(B, A, C + 1, H * W)`` (:func:`~ssd_plugin.functional.head_outputs.level_views`).
            bbox_preds: ``(B, P, 4)`` offsets, or their level views ``(B, A, 4, H * W)``.
            labels: ``(B, P)`` with background ``C`` (other negative values are ignored).
            bbox_targets: ``(B, P, 4)`` encoded offsets (read only at positives).

        Returns:
            ``dict(loss_cls=..., loss_bbox=...)``.
        """
        normaliser = global_batch_normaliser if self.global_batch else None
        loss_cls, loss_bbox = multibox_loss(
            cls_scores, bbox_preds, labels, bbox_targets,
            self.neg_pos_ratio, self.beta, self.alpha, normaliser,
        )  # fmt: skip
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)

    def extra_repr(self) -> str:
        return (
            f'neg_pos_ratio={self.neg_pos_ratio}, beta={self.beta}, alpha={self.alpha}, '
            f'global_batch={self.global_batch}'
        )
