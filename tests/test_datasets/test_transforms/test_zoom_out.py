"""ZoomOut: mmdet's Expand geometry with the same draws, ratio coverage, lazy pixels, bad input."""

import numpy as np
import pytest
from mmdet.datasets.transforms import Expand
from mmdet.registry import TRANSFORMS

from ssd_plugin.datasets.transforms import ZoomOut
from ssd_plugin.datasets.transforms.lazy_canvas import PendingCanvasResults, take_pending_canvas

FILL_BGR = (103.53, 116.28, 123.675)


def test_registered_and_built_from_config():
    zoom = TRANSFORMS.build(dict(type='ZoomOut', prob=0.5, ratio_range=(1, 4), fill=FILL_BGR))
    assert isinstance(zoom, ZoomOut)
    assert 'ratio_range=(1, 4)' in repr(zoom)


def test_same_geometry_and_pixels_as_mmdet_expand(make_results):
    rng = np.random.default_rng(0)
    ours, theirs = ZoomOut(prob=0.5, fill=FILL_BGR), Expand(mean=FILL_BGR, to_rgb=False, prob=0.5)
    for seed in range(40):
        results = make_results(rng, num_boxes=3)
        boxes = results['gt_bboxes'].tensor.clone()
        np.random.seed(seed)
        a = ours(dict(results, gt_bboxes=results['gt_bboxes'].clone()))
        np.random.seed(seed)
        b = theirs(dict(results, gt_bboxes=results['gt_bboxes'].clone()))
        assert a['img_shape'] == tuple(b['img_shape'])
        np.testing.assert_array_equal(a['gt_bboxes'].tensor, b['gt_bboxes'].tensor)
        img = a['img']
        assert img.shape == b['img'].shape and img.dtype == np.uint8
        # Fill: ours rounds the mean (Caffe), mmdet truncates it.
        assert np.abs(img.astype(int) - b['img']).max() <= 1
        if not isinstance(a, PendingCanvasResults):  # not applied: nothing changed
            assert a['img'] is results['img'] and (boxes == a['gt_bboxes'].tensor).all()


def test_ratios_cover_the_range_and_prob_is_respected():
    np.random.seed(1)
    zoom = ZoomOut(prob=0.5, ratio_range=(1, 4))
    img = np.zeros((100, 100, 3), np.uint8)
    ratios = []
    for _ in range(4000):
        results = zoom(dict(img=img, img_shape=(100, 100)))
        if isinstance(results, PendingCanvasResults):
            canvas = take_pending_canvas(results)
            assert results['img_shape'] == canvas.shape[:2]
            ratios.append(canvas.shape[1] / 100)
    ratios = np.array(ratios)
    assert abs(len(ratios) / 4000 - 0.5) < 0.03
    assert ratios.min() < 1.02 and ratios.max() > 3.97 and ratios.max() <= 4
    # Uniform on [1, 4]: each quarter of the range holds about a quarter of the draws.
    counts = np.histogram(ratios, bins=4, range=(1, 4))[0]
    assert np.abs(counts / len(ratios) - 0.25).max() < 0.04


def test_boxes_follow_the_image_on_the_canvas(make_results):
    np.random.seed(2)
    results = make_results(np.random.default_rng(2), num_boxes=5)
    src, boxes = results['img'], results['gt_bboxes'].tensor.clone()
    out = ZoomOut(prob=1.0, fill=0)(results)
    canvas = take_pending_canvas(out)
    left, top = canvas.left, canvas.top
    np.testing.assert_allclose(out['gt_bboxes'].tensor, boxes + np.array([left, top] * 2))
    img = out['img']
    np.testing.assert_array_equal(img[top : top + src.shape[0], left : left + src.shape[1]], src)
    assert img.sum() == src.astype(np.int64).sum()  # zero fill everywhere else
    np.testing.assert_array_equal(out['gt_bboxes_labels'], np.arange(5))


def test_numpy_boxes_empty_annotations_and_grayscale():
    np.random.seed(3)
    zoom = ZoomOut(prob=1.0, fill=(1, 2, 3))
    out = zoom(
        dict(
            img=np.zeros((8, 8, 3), np.uint8),
            img_shape=(8, 8),
            gt_bboxes=np.zeros((0, 4), np.float32),
        )
    )
    assert isinstance(out['gt_bboxes'], np.ndarray) and out['gt_bboxes'].shape == (0, 4)
    assert out['img'].shape[:2] == out['img_shape']
    gray = ZoomOut(prob=1.0, fill=50)(dict(img=np.zeros((8, 8), np.uint8), img_shape=(8, 8)))
    assert gray['img'].shape == gray['img_shape'] and gray['img'].shape[0] > 8
    assert set(np.unique(gray['img'])) == {0, 50}


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match='ratio_range'):
        ZoomOut(ratio_range=(0.5, 2))
    with pytest.raises(ValueError, match='prob'):
        ZoomOut(prob=1.5)
    rgba = dict(img=np.zeros((8, 8, 4), np.uint8), img_shape=(8, 8))
    with pytest.raises(ValueError, match='3 values but the image has 4 channel'):
        ZoomOut(prob=1.0, fill=FILL_BGR)(rgba)
    assert ZoomOut(prob=1.0, fill=(1, 2, 3, 4))(rgba)['img'].shape[2] == 4
    with pytest.raises(NotImplementedError, match='gt_masks'):
        ZoomOut()(dict(rgba, gt_masks=object()))


@pytest.mark.parametrize(
    'fill,error,match',
    [
        ((), ValueError, 'fill has no values'),
        ('gray', TypeError, 'fill must be a number or a sequence'),
        (dict(b=1), TypeError, 'fill must be a number or a sequence'),
        ((1, 'x', 3), TypeError, 'fill values must be numbers'),
        ((1, None, 3), TypeError, 'fill values must be numbers'),
        (True, TypeError, 'fill values must be numbers'),
        (((1, 2), (3, 4)), TypeError, 'fill values must be numbers'),
        ((0, float('nan'), 0), ValueError, 'finite'),
        (float('inf'), ValueError, 'finite'),
    ],
)
def test_fill_is_checked_at_construction(fill, error, match):
    with pytest.raises(error, match=match):
        ZoomOut(fill=fill)
    with pytest.raises(error, match=match):
        TRANSFORMS.build(dict(type='ZoomOut', fill=fill))


def test_valid_fills_build():
    for fill in (0, 127.5, np.float32(3), (1, 2, 3), [1.0, 2.0, 3.0, 4.0], np.array([1, 2, 3])):
        assert ZoomOut(fill=fill).fill is fill
