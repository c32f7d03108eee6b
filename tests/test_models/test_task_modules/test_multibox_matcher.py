import torch
from mmdet.models.task_modules.assigners import AssignResult
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData

from ssd_plugin.models.task_modules import DefaultBoxGenerator, MultiBoxMatcher

TOY_PRIORS = torch.tensor(
    [[0, 0, 10, 10], [10, 10, 20, 20], [5, 5, 15, 15], [32, 32, 38, 42]], dtype=torch.float32
)
TOY_GTS = torch.tensor([[0, 0, 10, 9], [0, 10, 10, 19]], dtype=torch.float32)


def _assign(matcher, priors, bboxes, labels, ignore=None):
    gt_ignore = None if ignore is None else InstanceData(bboxes=ignore)
    return matcher.assign(
        InstanceData(priors=priors), InstanceData(bboxes=bboxes, labels=labels), gt_ignore
    )


def test_build_and_toy_case_like_max_iou_assigner():
    matcher = TASK_UTILS.build(dict(type='MultiBoxMatcher', pos_iou_thr=0.5))
    result = _assign(matcher, TOY_PRIORS, TOY_GTS, torch.tensor([3, 5]))
    assert isinstance(result, AssignResult)
    assert result.num_gts == 2
    assert result.gt_inds.tolist() == [1, 0, 2, 0]
    assert result.labels.tolist() == [3, -1, 5, -1]
    ref = TASK_UTILS.build(
        dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.0)
    ).assign(
        InstanceData(priors=TOY_PRIORS), InstanceData(bboxes=TOY_GTS, labels=torch.tensor([3, 5]))
    )
    assert torch.equal(result.gt_inds, ref.gt_inds)
    torch.testing.assert_close(result.max_overlaps, ref.max_overlaps)


def test_ignored_boxes_never_positive():
    matcher = MultiBoxMatcher()
    ignore = torch.tensor([[30, 30, 40, 40], [0, 0, 10, 10]], dtype=torch.float32)
    result = _assign(matcher, TOY_PRIORS, TOY_GTS, torch.tensor([3, 5]), ignore)
    # mmdet's MaxIoUAssigner marks prior 3 as ignored (-1); here it stays background.
    assert result.gt_inds.tolist() == [1, 0, 2, 0]
    assert result.num_gts == 2
    # Only crowd boxes: nothing is positive.
    result = _assign(
        matcher, TOY_PRIORS, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), ignore
    )
    assert result.gt_inds.tolist() == [0, 0, 0, 0] and result.labels.tolist() == [-1] * 4


def test_empty_gt_and_empty_priors():
    matcher = MultiBoxMatcher()
    result = _assign(matcher, TOY_PRIORS, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert result.num_gts == 0 and result.gt_inds.tolist() == [0] * 4
    assert result.max_overlaps.tolist() == [0] * 4
    result = _assign(matcher, torch.zeros(0, 4), TOY_GTS, torch.tensor([3, 5]))
    assert result.gt_inds.shape == (0,) and result.labels.shape == (0,)


def test_batch_assign_equals_per_image_assign():
    gen = DefaultBoxGenerator()
    priors = torch.cat(
        gen.grid_priors([(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)], device='cpu')
    )
    g = torch.Generator().manual_seed(1)
    num_imgs, max_gts = 5, 9
    xy = torch.rand(num_imgs, max_gts, 2, generator=g) * 250
    wh = torch.rand(num_imgs, max_gts, 2, generator=g) * 100 + 2
    gts = torch.cat([xy, xy + wh], dim=-1)
    gts[:, 1] = gts[:, 0] + 1  # near-duplicates: conflicting best boxes
    counts = torch.tensor([0, 1, 9, 4, 6])
    valid = torch.arange(max_gts)[None] < counts[:, None]
    matcher = MultiBoxMatcher()
    matched, max_ov = matcher.batch_assign(priors, gts, valid)
    for b in range(num_imgs):
        n = int(counts[b])
        labels = torch.arange(n) + 10
        result = _assign(matcher, priors, gts[b, :n], labels)
        assert torch.equal(result.gt_inds, matched[b] + 1)
        torch.testing.assert_close(result.max_overlaps, max_ov[b])
        expected_labels = torch.where(matched[b] >= 0, matched[b] + 10, -1)
        assert torch.equal(result.labels, expected_labels)
