"""BorderSafeDetLocalVisualizer: mmdet's drawing, boxes at the far edges without warnings."""

import warnings

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData

from ssd_plugin.visualization import BorderSafeDetLocalVisualizer, border_safe

H, W = 60, 80
META = dict(classes=('a', 'b'), palette=[(220, 20, 60), (0, 130, 200)])


def _sample(boxes, gt: bool = False) -> DetDataSample:
    boxes = torch.tensor(boxes, dtype=torch.float32)
    sample = DetDataSample()
    labels = torch.arange(len(boxes)) % 2
    if gt:
        sample.gt_instances = InstanceData(bboxes=boxes, labels=labels)
    else:
        sample.pred_instances = InstanceData(bboxes=boxes, labels=labels,
                                             scores=torch.full((len(boxes),), 0.9))  # fmt: skip
    return sample


def _draw(cls, sample, name):
    vis = cls(name=name)
    vis.dataset_meta = META
    image = np.full((H, W, 3), 40, np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        vis.add_datasample('x', image, sample, draw_gt='gt_instances' in sample,
                           draw_pred='pred_instances' in sample, pred_score_thr=0.3)  # fmt: skip
    return vis.get_image(), [str(w.message) for w in caught if 'out of bounds' in str(w.message)]


def test_inside_boxes_drawn_as_mmdet_draws_them():
    boxes = [[5, 6, 40, 30], [20, 10, 70, 50]]
    ours, warned = _draw(BorderSafeDetLocalVisualizer, _sample(boxes), 'ours_in')
    ref, ref_warned = _draw(DetLocalVisualizer, _sample(boxes), 'ref_in')
    assert not warned and not ref_warned
    np.testing.assert_array_equal(ours, ref)


def test_boxes_at_the_far_edges_drawn_on_the_last_pixels_quietly():
    for gt in (False, True):
        at_edge = _sample([[0, 0, W, H], [30, 20, W, H]], gt=gt)
        ours, warned = _draw(BorderSafeDetLocalVisualizer, at_edge, f'ours_edge{gt}')
        _, ref_warned = _draw(DetLocalVisualizer, _sample([[0, 0, W, H]], gt=gt), f'r{gt}')
        assert ref_warned and not warned  # mmdet's own warns for the same boxes
        clamped = _sample([[0, 0, W - 1, H - 1], [30, 20, W - 1, H - 1]], gt=gt)
        ref, _ = _draw(DetLocalVisualizer, clamped, f'ref_edge{gt}')
        np.testing.assert_array_equal(ours, ref)
        instances = at_edge.gt_instances if gt else at_edge.pred_instances
        assert float(instances.bboxes.max()) == W  # the sample itself is not changed


def test_border_safe_config():
    assert border_safe(dict(type='DetLocalVisualizer'))['type'] == 'BorderSafeDetLocalVisualizer'
    assert border_safe(dict(type='mmdet.DetLocalVisualizer'))['type'] == (
        'BorderSafeDetLocalVisualizer')  # fmt: skip
    assert border_safe(dict(type='MyVisualizer'))['type'] == 'MyVisualizer'
