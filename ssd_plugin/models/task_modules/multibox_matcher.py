"""TASK_UTILS ``MultiBoxMatcher``: SSD's matching strategy behind mmdet's assigner protocol."""

from typing import Optional, Tuple

import torch
from mmdet.models.task_modules.assigners import AssignResult, BaseAssigner
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import Tensor

from ssd_plugin.functional.matching import match_default_boxes

__all__ = ['MultiBoxMatcher']


@TASK_UTILS.register_module()
class MultiBoxMatcher(BaseAssigner):
    """Caffe-exact SSD matching: greedy bipartite best box per ground truth, then IoU threshold.

    Unlike mmdet's ``MaxIoUAssigner`` (where a later ground truth overwrites an earlier one that
    wants the same box), conflicts are resolved as Caffe's global greedy bipartite step does; see
    :func:`~ssd_plugin.functional.matching.match_default_boxes`. Ignored/crowd boxes never make
    positives; default boxes overlapping them stay background.

    Args:
        pos_iou_thr: Jaccard overlap from which a default box is positive (paper: 0.5).
    """

    def __init__(self, pos_iou_thr: float = 0.5) -> None:
        if not 0 < pos_iou_thr <= 1:
            raise ValueError(f'pos_iou_thr must be in (0, 1], got {pos_iou_thr}')
        self.pos_iou_thr = pos_iou_thr

    def batch_assign(
        self, priors: Tensor, gt_bboxes: Tensor, gt_valid: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Match a padded batch; see :func:`match_default_boxes`.

        Returns:
            ``(matched (B, P)`` gt index or -1, ``max_overlaps (B, P))``.
        """
        return match_default_boxes(priors, gt_bboxes, gt_valid, self.pos_iou_thr)

    def assign(
        self,
        pred_instances: InstanceData,
        gt_instances: InstanceData,
        gt_instances_ignore: Optional[InstanceData] = None,
        **kwargs,
    ) -> AssignResult:
        """Match the priors of one image (mmdet assigner protocol).

        Args:
            pred_instances: ``priors`` ``(P, 4)``.
            gt_instances: ``bboxes`` ``(G, 4)`` and ``labels`` ``(G,)``.
            gt_instances_ignore: Ignored (crowd) boxes; accepted for the protocol, they never
                match and the default boxes they cover stay background.

        Returns:
            ``AssignResult`` with ``gt_inds`` 1-based (0 = background), ``max_overlaps`` over the
            non-ignored ground truths and ``labels`` (-1 for background).
        """
        priors = get_box_tensor(pred_instances.priors)
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        num_gts = gt_bboxes.shape[0]
        # Ignored (crowd) boxes take no part: they never match and do not count in the overlaps.
        valid = torch.ones(num_gts, dtype=torch.bool, device=gt_bboxes.device)
        matched, max_overlaps = match_default_boxes(
            priors, gt_bboxes[None].to(priors), valid[None], self.pos_iou_thr
        )
        matched, max_overlaps = matched[0], max_overlaps[0]
        labels = matched.new_full(matched.shape, -1)
        if num_gts > 0:
            labels = torch.where(matched >= 0, gt_labels[matched.clamp(min=0)], labels)
        return AssignResult(num_gts, matched + 1, max_overlaps, labels)
