"""MinIoUCrop: exact crop bookkeeping, invariants over many draws, lazy == painted, bad input."""

import numpy as np
import pytest
from mmdet.datasets.transforms import Expand
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes

from ssd_plugin.datasets.transforms import MinIoUCrop, ZoomOut
from ssd_plugin.datasets.transforms import min_iou_crop as module
from ssd_plugin.datasets.transforms.lazy_canvas import take_pending_canvas
from ssd_plugin.datasets.transforms.patch_geometry import patch_box_iou

FILL_BGR = (103.53, 116.28, 123.675)


@pytest.fixture
def recorded(monkeypatch):
    """Record every (mode, patch) the transform draws."""
    calls = []
    choose = module.choose_patch

    def record(*args, **kwargs):
        calls.append(choose(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(module, 'choose_patch', record)
    return calls


def test_registered_and_validates_arguments():
    crop = TRANSFORMS.build(dict(type='MinIoUCrop'))
    assert isinstance(crop, MinIoUCrop) and crop.constraint == 'any' and crop.max_trials == 50
    assert crop.scale_range == (0.3, 1.0) and crop.aspect_ratio_range == (0.5, 2.0)
    for bad in (
        dict(min_ious=(0.0,)),
        dict(max_trials=0),
        dict(scale_range=(0.3, 1.2)),
        dict(aspect_ratio_range=(2.0, 0.5)),
        dict(constraint='most'),
        dict(min_ious=(), whole_image=False, unconstrained=False),
        dict(patch_mode='mmdet'),
    ):
        with pytest.raises(ValueError, match='MinIoUCrop'):
            MinIoUCrop(**bad)


@pytest.mark.parametrize('constraint', ['any', 'all'])
def test_crop_bookkeeping_and_invariants_over_many_draws(make_results, recorded, constraint):
    """Boxes = the kept boxes shifted and clipped, fields aligned, image = the patch pixels."""
    rng = np.random.default_rng(0)
    np.random.seed(0)
    zoom, crop = ZoomOut(prob=0.5, fill=FILL_BGR), MinIoUCrop(constraint=constraint)
    modes = set()
    for _ in range(150):
        results = make_results(
            rng, height=int(rng.integers(20, 90)), width=int(rng.integers(20, 90))
        )
        zoomed = zoom(results)
        canvas_img = np.asarray(take_pending_canvas(zoomed) or zoomed['img']).copy()
        boxes = zoomed['gt_bboxes'].tensor.numpy().copy()
        labels, flags = zoomed['gt_bboxes_labels'].copy(), zoomed['gt_ignore_flags'].copy()
        out = crop(zoomed)
        mode, patch = recorded[-1]
        modes.add(mode)
        img, out_boxes = out['img'], out['gt_bboxes']
        assert isinstance(out_boxes, HorizontalBoxes)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[:2] == tuple(out['img_shape'])
        if patch is None:  # whole image
            np.testing.assert_array_equal(img, canvas_img)
            np.testing.assert_array_equal(out_boxes.tensor.numpy(), boxes)
            continue
        x1, y1, x2, y2 = patch
        np.testing.assert_array_equal(img, canvas_img[y1:y2, x1:x2])
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        keep = ((centres >= patch[:2]) & (centres <= patch[2:])).all(axis=1)
        expected = np.clip(boxes[keep] - [x1, y1, x1, y1], 0, [x2 - x1, y2 - y1] * 2)
        np.testing.assert_allclose(out_boxes.tensor.numpy(), expected, atol=1e-4)
        np.testing.assert_array_equal(out['gt_bboxes_labels'], labels[keep])
        np.testing.assert_array_equal(out['gt_ignore_flags'], flags[keep])
        b = out_boxes.tensor.numpy()
        assert (
            (b >= 0).all() and (b[:, 2] <= img.shape[1]).all() and (b[:, 3] <= img.shape[0]).all()
        )
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()  # positive area
        if len(boxes):
            assert keep.any()
            bound = (*crop.min_ious, 0.0)[mode - 1]
            met = patch_box_iou(patch[None], boxes)[0] >= bound
            assert met.all() if constraint == 'all' else met.any()
    assert len(modes) >= 4


def test_lazy_zoom_out_then_crop_equals_painting_the_canvas_first(make_results):
    rng = np.random.default_rng(1)
    zoom, crop = ZoomOut(prob=1.0, fill=FILL_BGR), MinIoUCrop()
    expand = Expand(mean=FILL_BGR, to_rgb=False, prob=1.0)
    for seed in range(60):
        results = make_results(rng, num_boxes=int(rng.integers(1, 6)))
        outs = []
        for painted in ('lazy', 'painted', 'mmdet'):
            np.random.seed(seed)
            r = dict(results, gt_bboxes=results['gt_bboxes'].clone())
            if painted == 'mmdet':
                r = expand(r)
            else:
                r = zoom(r)
                if painted == 'painted':
                    r['img']  # noqa: B018  (reading it paints the whole canvas)
                    assert take_pending_canvas(r) is None
            outs.append(crop(r))
        lazy, painted, mmdet = outs
        np.testing.assert_array_equal(lazy['img'], painted['img'])
        for other in (painted, mmdet):
            np.testing.assert_array_equal(lazy['gt_bboxes'].tensor, other['gt_bboxes'].tensor)
            np.testing.assert_array_equal(lazy['gt_bboxes_labels'], other['gt_bboxes_labels'])
            assert lazy['img_shape'] == tuple(other['img_shape'])
        # mmdet's Expand truncates the fill, ours rounds it (Caffe).
        assert np.abs(lazy['img'].astype(int) - mmdet['img']).max() <= 1


def test_empty_annotations_and_missing_boxes_pass_through(make_results):
    np.random.seed(2)
    rng = np.random.default_rng(2)
    crop = MinIoUCrop()
    for _ in range(30):
        out = crop(ZoomOut(prob=0.5)(make_results(rng, num_boxes=0)))
        assert out['gt_bboxes'].tensor.shape == (0, 4) and len(out['gt_bboxes_labels']) == 0
        assert out['img'].shape[:2] == tuple(out['img_shape'])
    out = crop(dict(img=np.zeros((30, 40, 3), np.uint8), img_shape=(30, 40)))
    assert out['img'].shape[:2] == tuple(out['img_shape'])


def test_degenerate_boxes_never_make_nan(make_results):
    np.random.seed(3)
    results = make_results(np.random.default_rng(3), num_boxes=0)
    results['gt_bboxes'] = HorizontalBoxes(
        np.array([[10, 10, 10, 30], [50, 40, 40, 50], [20, 20, 60, 60]], np.float32)
    )
    results['gt_bboxes_labels'] = np.arange(3)
    results['gt_ignore_flags'] = np.zeros(3, bool)
    for _ in range(50):
        out = MinIoUCrop()(dict(results, gt_bboxes=results['gt_bboxes'].clone()))
        assert np.isfinite(out['gt_bboxes'].tensor.numpy()).all()
        assert len(out['gt_bboxes']) == len(out['gt_bboxes_labels'])


@pytest.mark.parametrize('channels', [None, 1, 4])
def test_grayscale_and_four_channel_images_are_cropped(make_results, channels):
    np.random.seed(4)
    rng = np.random.default_rng(4)
    fill = 0 if channels in (None, 1) else (1, 2, 3, 4)
    for _ in range(20):
        out = MinIoUCrop()(ZoomOut(prob=0.5, fill=fill)(make_results(rng, channels=channels)))
        img = out['img']
        assert img.shape[:2] == tuple(out['img_shape'])
        assert img.ndim == (2 if channels is None else 3)


def test_misaligned_fields_and_masks_raise_clear_errors(make_results):
    results = make_results(np.random.default_rng(5), num_boxes=3)
    results['gt_bboxes_labels'] = np.arange(2)
    with pytest.raises(ValueError, match="'gt_bboxes_labels' has 2 entries but gt_bboxes has 3"):
        MinIoUCrop()(results)
    with pytest.raises(NotImplementedError, match='gt_seg_map'):
        MinIoUCrop()(dict(results, gt_seg_map=np.zeros((2, 2))))


def test_sampler_set_is_configurable(make_results, recorded):
    """torchvision's sampler_options=[0.5, 0.9]: every call crops with one of those two bounds."""
    crop = TRANSFORMS.build(
        dict(type='MinIoUCrop', min_ious=(0.5, 0.9), whole_image=False, unconstrained=False)
    )
    assert 'whole_image=False, unconstrained=False' in repr(crop)
    np.random.seed(0)
    seen = set()
    for _ in range(60):
        # One box filling most of the image, so that both bounds are reachable.
        results = make_results(np.random.default_rng(len(recorded)), num_boxes=1)
        results['gt_bboxes'] = HorizontalBoxes(np.array([[2.0, 2.0, 158.0, 118.0]], np.float32))
        boxes = results['gt_bboxes'].numpy()
        out = crop(results)
        mode, patch = recorded[-1]
        seen.add(mode)
        if patch is None:  # no sampler found a patch: the image stays whole
            assert mode == 0 and out['img_shape'] == results['img_shape']
            continue
        assert mode in (1, 2)
        assert patch_box_iou(patch[None], boxes).max() >= (0.5, 0.9)[mode - 1]
        assert out['img_shape'] == (patch[3] - patch[1], patch[2] - patch[0])
    assert {1, 2} <= seen


def test_torchvision_patch_mode_crops_with_its_geometry(make_results, recorded):
    """patch_mode='torchvision': each crop's sides are 0.3-1 of the image's, w / h in [0.5, 2]."""
    crop = TRANSFORMS.build(dict(type='MinIoUCrop', patch_mode='torchvision', max_trials=40))
    assert "patch_mode='torchvision'" in repr(crop) and crop.max_trials == 40
    np.random.seed(0)
    cropped = 0
    for i in range(80):
        results = make_results(np.random.default_rng(i), height=120, width=160, num_boxes=3)
        out = crop(results)
        mode, patch = recorded[-1]
        if patch is None:
            continue
        cropped += 1
        height, width = out['img_shape']
        assert (height, width) == (patch[3] - patch[1], patch[2] - patch[0])
        assert int(0.3 * 160) <= width <= 160 and int(0.3 * 120) <= height <= 120
        assert 0.5 <= width / height <= 2.0
    assert cropped > 40
