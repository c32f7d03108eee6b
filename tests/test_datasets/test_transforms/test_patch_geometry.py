"""SSD patch sampling geometry: Caffe's SampleBBox ranges, torchvision's RandomIoUCrop trials,
IoU, constraints, the mode draw."""

import numpy as np
import pytest
import torch
from mmdet.structures.bbox import bbox_overlaps

from ssd_plugin.datasets.transforms.patch_geometry import (
    acceptable_patches,
    centres_in_patches,
    choose_patch,
    patch_box_iou,
    sample_patches,
    sample_torchvision_patches,
)

MIN_IOUS = (0.1, 0.3, 0.5, 0.7, 0.9)


def test_sampled_patches_inside_image_with_caffe_scale_and_aspect():
    np.random.seed(0)
    width, height = 640, 480
    patches = sample_patches(20000, width, height, (0.3, 1.0), (0.5, 2.0))
    assert patches.dtype == np.int64
    assert (patches[:, :2] >= 0).all() and (patches[:, 2] <= width).all()
    assert (patches[:, 3] <= height).all()
    assert (patches[:, 2] > patches[:, 0]).all() and (patches[:, 3] > patches[:, 1]).all()
    w_norm = (patches[:, 2] - patches[:, 0]) / width
    h_norm = (patches[:, 3] - patches[:, 1]) / height
    scale = np.sqrt(w_norm * h_norm)
    aspect = w_norm / h_norm
    # Flooring to whole pixels moves each side by < 1 px.
    assert scale.min() >= 0.3 - 2 / height and scale.max() <= 1.0
    assert aspect.min() >= 0.5 * (1 - 2 / 0.3 / height) and aspect.max() <= 2.0 / (
        1 - 2 / 0.3 / height
    )
    # The whole range is used: small patches, full-size patches, both extreme aspects.
    assert scale.min() < 0.31 and scale.max() > 0.99
    assert aspect.min() < 0.52 and aspect.max() > 1.9
    # Offsets start at 0 (mmdet's quirk draws them from [1, w - new_w]).
    assert (patches[:, 0] == 0).sum() > 10 and (patches[:, 1] == 0).sum() > 10


def test_sampled_patches_never_degenerate_on_tiny_images():
    np.random.seed(1)
    patches = sample_patches(1000, 2, 1, (0.3, 1.0), (0.5, 2.0))
    assert (patches[:, 2] > patches[:, 0]).all() and (patches[:, 3] > patches[:, 1]).all()
    assert (patches[:, 2] <= 2).all() and (patches[:, 3] <= 1).all()


def test_patch_box_iou_matches_mmdet_bbox_overlaps():
    rng = np.random.default_rng(0)
    patches = sample_patches(64, 300, 200, (0.3, 1.0), (0.5, 2.0), rng=rng)
    x1y1 = rng.uniform(0, 250, (9, 2))
    boxes = np.concatenate([x1y1, x1y1 + rng.uniform(1, 120, (9, 2))], axis=1)
    expected = bbox_overlaps(torch.from_numpy(patches).float(), torch.from_numpy(boxes).float())
    np.testing.assert_allclose(patch_box_iou(patches, boxes), expected.numpy(), atol=1e-6)


def test_degenerate_boxes_give_zero_iou_not_nan():
    patches = np.array([[0, 0, 10, 10], [5, 5, 6, 6]])
    boxes = np.array([[3, 3, 3, 8], [4, 4, 2, 2], [0, 0, 10, 10.0]])
    iou = patch_box_iou(patches, boxes)
    assert np.isfinite(iou).all()
    np.testing.assert_allclose(iou[:, :2], 0)
    np.testing.assert_allclose(iou[:, 2], [1.0, 0.01])


def test_centres_count_on_the_border_as_caffe():
    patches = np.array([[10, 10, 20, 20]])
    boxes = np.array([[5, 5, 15, 15], [15, 15, 25, 25], [0, 0, 20, 20], [21, 10, 23, 20.0]])
    assert centres_in_patches(patches, boxes).tolist() == [[True, True, True, False]]


def test_any_versus_all_constraint():
    patches = np.array([[0, 0, 100, 100]])
    boxes = np.array([[0, 0, 100, 100], [0, 0, 10, 10.0]])  # IoU 1.0 and 0.01
    assert acceptable_patches(patches, boxes, 0.9, 'any').tolist() == [True]
    assert acceptable_patches(patches, boxes, 0.9, 'all').tolist() == [False]
    assert acceptable_patches(patches, boxes, 0.01, 'all').tolist() == [True]
    # IoU met but no centre inside: rejected (the crop would keep no object).
    far = np.array([[0, 0, 10, 10], [10, 0, 40, 10.0]])
    assert acceptable_patches(np.array([[0, 0, 20, 10]]), far[1:], 0.3, 'any').tolist() == [False]
    # No boxes: every patch is a valid background crop.
    assert acceptable_patches(patches, np.zeros((0, 4)), 0.9, 'all').tolist() == [True]


def _mode_counts(boxes, draws, constraint='any', seed=0, size=(300, 300), min_ious=MIN_IOUS):
    np.random.seed(seed)
    counts = np.zeros(len(min_ious) + 2, dtype=int)
    for _ in range(draws):
        mode, patch = choose_patch(
            size[1], size[0], boxes, min_ious, 50, (0.3, 1.0), (0.5, 2.0), constraint
        )
        counts[mode] += 1
        if mode == 0:
            assert patch is None
            continue
        iou = patch_box_iou(patch[None], boxes)[0]
        bound = (*min_ious, 0.0)[mode - 1]
        met = iou >= bound
        assert met.all() if constraint == 'all' else met.any(), (mode, iou)
        assert centres_in_patches(patch[None], boxes).any()
    return counts


@pytest.mark.parametrize('constraint', ['any', 'all'])
def test_modes_uniform_when_every_sampler_succeeds(constraint):
    # A box filling the image: IoU = patch area / image area = s^2, so every sampler up to 0.7
    # (s >= 0.84, 23% of trials) finds a patch within 50 trials and all 6 modes are uniform.
    boxes = np.array([[0.0, 0.0, 300.0, 300.0]])
    draws = 2400
    counts = _mode_counts(boxes, draws, constraint, min_ious=(0.1, 0.3, 0.5, 0.7))
    expected = draws / 6
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected), counts


def test_failed_sampler_drops_out_and_the_rest_stay_uniform():
    # A 60x60 box in 300x300: patches are at least 90x90, so IoU <= 3600 / 8100 < 0.5 and the
    # 0.5 and 0.95 samplers always fail, while 0.01 and "any" always find a patch. The 3
    # remaining modes share the draws uniformly (Caffe's pooled choice).
    boxes = np.array([[120.0, 120.0, 180.0, 180.0]])
    draws = 2400
    counts = _mode_counts(boxes, draws, 'any', seed=3, min_ious=(0.01, 0.5, 0.95))
    assert counts[2] == counts[3] == 0
    for mode in (0, 1, 4):
        assert abs(counts[mode] - draws / 3) < 5 * np.sqrt(draws / 3), counts


def test_tiny_object_leaves_whole_image_and_any_patch():
    boxes = np.array([[100.0, 100.0, 110.0, 110.0]])  # IoU <= 100 / 8100 < 0.1
    counts = _mode_counts(boxes, 1000, 'any', seed=4)
    assert counts[1:6].sum() == 0
    assert abs(counts[0] - 500) < 5 * np.sqrt(250), counts


def test_all_constraint_is_stricter_than_any_on_crowded_images():
    rng = np.random.default_rng(5)
    x1y1 = rng.uniform(0, 250, (12, 2))
    boxes = np.concatenate([x1y1, x1y1 + rng.uniform(20, 60, (12, 2))], axis=1)
    any_counts = _mode_counts(boxes, 700, 'any', seed=1)
    all_counts = _mode_counts(boxes, 700, 'all', seed=1)
    # With 12 scattered boxes no patch has IoU >= 0.1 with all of them: 'all' keeps only the
    # whole image and the unconstrained sampler, 'any' also crops around single objects.
    assert all_counts[1:6].sum() == 0 and any_counts[1:3].sum() > 100


def test_sampler_set_without_whole_image_and_unconstrained():
    """torchvision's RandomIoUCrop(sampler_options=[0.5, 0.9]): only the two min-IoU samplers."""
    boxes = np.array([[0.0, 0.0, 300.0, 300.0]])  # IoU = s^2: 0.5 often found, 0.9 rarely fails
    np.random.seed(0)
    modes = []
    for _ in range(600):
        mode, patch = choose_patch(
            300, 300, boxes, (0.5, 0.9), 50, (0.3, 1.0), (0.5, 2.0), 'any',
            whole_image=False, unconstrained=False,
        )  # fmt: skip
        modes.append(mode)
        assert mode in (1, 2)
        iou = patch_box_iou(patch[None], boxes)[0, 0]
        assert iou >= (0.5, 0.9)[mode - 1]
    counts = np.bincount(modes, minlength=3)
    assert abs(counts[1] - 300) < 5 * np.sqrt(150) and abs(counts[2] - 300) < 5 * np.sqrt(150)


def test_only_unconstrained_or_whole_image_and_fallback_when_nothing_succeeds():
    tiny = np.array([[100.0, 100.0, 110.0, 110.0]])  # IoU < 0.1 with every patch
    np.random.seed(1)
    for _ in range(50):
        # Only "any patch": a patch every time (the box centre must be inside it).
        mode, patch = choose_patch(300, 300, tiny, (), 50, whole_image=False)
        assert mode == 1 and centres_in_patches(patch[None], tiny).all()
        # A min-IoU sampler that always fails and nothing else: the image stays whole (Caffe).
        assert choose_patch(300, 300, tiny, (0.5,), 50, whole_image=False, unconstrained=False) == (
            0,
            None,
        )
    # Whole image and the 0.5 sampler only (no unconstrained one): always the whole image here.
    modes = {choose_patch(300, 300, tiny, (0.5,), 50, unconstrained=False)[0] for _ in range(50)}
    assert modes == {0}


def _torchvision_trial(width, height, scale_draws, offset_draws, scale_range, aspect_range):
    """One trial of torchvision's ``RandomIoUCrop`` up to the box tests, given its uniform draws.

    A transcription of its rules: ``r = min_scale + (max_scale - min_scale) * rand(2)``,
    ``new_w = int(W * r[0])``, ``new_h = int(H * r[1])``, skip the trial unless
    ``min_aspect <= new_w / new_h <= max_aspect``; ``left = int((W - new_w) * rand())``,
    ``top = int((H - new_h) * rand())``, skip an empty patch. None: the trial is skipped.
    """
    low, high = scale_range
    new_w = int(width * (low + (high - low) * scale_draws[0]))
    new_h = int(height * (low + (high - low) * scale_draws[1]))
    if new_h == 0:  # torchvision divides by zero here; on images under 4 px only
        return None
    if not aspect_range[0] <= new_w / new_h <= aspect_range[1]:
        return None
    left = int((width - new_w) * offset_draws[0])
    top = int((height - new_h) * offset_draws[1])
    if new_w == 0 or new_h == 0:
        return None
    return left, top, left + new_w, top + new_h


class _ScriptedUniform:
    """``uniform(low, high, size)`` answered from given draws in [0, 1), in call order."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def uniform(self, low, high, size):
        draws = self.draws.pop(0)
        assert draws.shape == np.empty(size).shape
        return low + (high - low) * draws


@pytest.mark.parametrize(
    'width, height, scale_range, aspect_range',
    [
        (640, 480, (0.3, 1.0), (0.5, 2.0)),
        (3, 50, (0.1, 1.0), (0.02, 2.0)),
        (37, 11, (0.2, 0.9), (1, 3)),
    ],
)
def test_torchvision_trials_equal_a_transcription_of_random_iou_crop(
    width, height, scale_range, aspect_range
):
    rng = np.random.default_rng(0)
    num = 4000
    scale_draws, offset_draws = rng.random((num, 2)), rng.random((num, 2))
    scripted = _ScriptedUniform(scale_draws, offset_draws[:, 0], offset_draws[:, 1])
    patches, usable = sample_torchvision_patches(
        num, width, height, scale_range, aspect_range, rng=scripted
    )
    expected = [
        _torchvision_trial(width, height, s, o, scale_range, aspect_range)
        for s, o in zip(scale_draws, offset_draws)
    ]
    assert usable.tolist() == [trial is not None for trial in expected]
    assert 0 < usable.sum() < num  # both outcomes occur
    assert [tuple(p) for p in patches[usable].tolist()] == [t for t in expected if t is not None]
    assert (patches[:, :2] >= 0).all() and (patches[:, 2] <= width).all()
    assert (patches[:, 3] <= height).all()


def test_torchvision_sides_are_drawn_apart_and_the_ratio_checked_after():
    np.random.seed(0)
    num, side = 200000, 1000
    patches, usable = sample_torchvision_patches(num, side, side, (0.3, 1.0), (0.5, 2.0))
    w = (patches[:, 2] - patches[:, 0]) / side
    h = (patches[:, 3] - patches[:, 1]) / side
    # Before the check: each side uniform in [0.3, 1] (mean 0.65, sd 0.7 / sqrt(12)), independent.
    assert abs(w.mean() - 0.65) < 0.003 and abs(h.mean() - 0.65) < 0.003
    assert abs(w.std() - 0.7 / np.sqrt(12)) < 0.003
    assert abs(np.corrcoef(w, h)[0, 1]) < 0.01
    # The check drops w / h outside [0.5, 2]: P(w < h / 2) = int_0.6^1 (h / 2 - 0.3) dh / 0.49
    # = 0.04 / 0.49 on each side, so 1 - 0.08 / 0.49 = 83.67 % of the trials are usable.
    assert abs(usable.mean() - (1 - 0.08 / 0.49)) < 0.003
    ratio = w[usable] / h[usable]
    assert ratio.min() >= 0.5 and ratio.max() <= 2.0
    assert ((w < h / 2) | (h < w / 2))[~usable].all()
    # Caffe's draw ties the sides together through one scale: strongly correlated.
    caffe = sample_patches(num, side, side, (0.3, 1.0), (0.5, 2.0))
    caffe_w, caffe_h = caffe[:, 2] - caffe[:, 0], caffe[:, 3] - caffe[:, 1]
    assert np.corrcoef(caffe_w, caffe_h)[0, 1] > 0.5


def test_choose_patch_in_torchvision_mode_keeps_its_geometry_and_the_constraints():
    boxes = np.array([[40.0, 30.0, 400.0, 300.0], [300.0, 200.0, 600.0, 460.0]])
    np.random.seed(2)
    modes = []
    for _ in range(400):
        mode, patch = choose_patch(
            640, 480, boxes, MIN_IOUS, 40, (0.3, 1.0), (0.5, 2.0), 'any', patch_mode='torchvision'
        )
        modes.append(mode)
        if patch is None:
            continue
        w, h = patch[2] - patch[0], patch[3] - patch[1]
        assert 0.5 <= w / h <= 2.0
        assert int(0.3 * 640) <= w <= 640 and int(0.3 * 480) <= h <= 480
        bound = (*MIN_IOUS, 0.0)[mode - 1]
        assert patch_box_iou(patch[None], boxes).max() >= bound
        assert centres_in_patches(patch[None], boxes).any()
    assert {0, 1, 2, 3, 4, 6} <= set(modes)  # 0.9 (mode 5) needs a patch close to one box
    with pytest.raises(ValueError, match='patch_mode'):
        choose_patch(640, 480, boxes, patch_mode='mmdet')
