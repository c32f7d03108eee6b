"""``check_boxes`` and ``describe_box_problems``: each rule, clipping as torchvision clips."""

import numpy as np
import pytest
import torch
from torchvision.ops import clip_boxes_to_image

from ssd_plugin.datasets.box_checks import (
    BOX_OK,
    CLIPPED,
    NON_FINITE,
    NON_POSITIVE,
    OUTSIDE,
    TOO_SMALL,
    check_boxes,
    describe_box_problems,
)

W, H = 100, 50
CASES = [  # box, min_size, expected code in a W x H image, and in a 2W x 2H one
    ([10, 10, 20, 20], 0, BOX_OK, BOX_OK),
    ([0, 0, 100, 50], 0, BOX_OK, BOX_OK),  # the whole image; its top-left quarter in 2W x 2H
    ([-5, 10, 20, 60], 0, CLIPPED, CLIPPED),  # x1 < 0 (y2 = 60 fits 2H)
    ([90, -1, 101, 49], 0, CLIPPED, CLIPPED),  # y1 < 0
    ([np.nan, 0, 10, 10], 0, NON_FINITE, NON_FINITE),
    ([0, 0, np.inf, 10], 0, NON_FINITE, NON_FINITE),
    ([20, 10, 10, 20], 0, NON_POSITIVE, NON_POSITIVE),  # negative width
    ([10, 10, 10, 20], 0, NON_POSITIVE, NON_POSITIVE),  # zero width
    ([10, 30, 20, 30], 0, NON_POSITIVE, NON_POSITIVE),  # zero height
    ([120, 10, 130, 20], 0, OUTSIDE, BOX_OK),  # right of W, inside 2W
    ([-20, -20, -5, -5], 0, OUTSIDE, OUTSIDE),
    ([100, 0, 110, 10], 0, OUTSIDE, BOX_OK),  # touches W from outside, inside 2W
    ([10, 10, 10.5, 20], 1, TOO_SMALL, TOO_SMALL),  # 0.5 px wide in any image
    ([99.5, 0, 120, 10], 1, TOO_SMALL, BOX_OK),  # 0.5 px wide once clipped to W; 20.5 in 2W
    ([99.5, 0, 120, 10], 0, CLIPPED, BOX_OK),
    ([10, 10, 10.5, 20], 0, BOX_OK, BOX_OK),
    ([150, 90, 250, 120], 0, OUTSIDE, CLIPPED),  # crosses the 2W x 2H corner
]


def _reference_clip(boxes, codes, width, height):
    """torchvision's clipping to (height, width) for kept boxes; dropped ones unchanged."""
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    kept = np.isin(codes, (BOX_OK, CLIPPED))
    clip = clip_boxes_to_image(torch.from_numpy(boxes[kept]), (height, width))
    boxes[kept] = clip.numpy()
    return boxes


@pytest.mark.parametrize('box, min_size, code, _', CASES)
def test_each_rule(box, min_size, code, _):
    clipped, codes = check_boxes(np.array([box]), np.array([[W, H]]), min_size)
    assert codes.tolist() == [code]
    np.testing.assert_array_equal(clipped, _reference_clip([box], [code], W, H))


@pytest.mark.parametrize('min_size', [0, 1])
def test_many_boxes_of_different_images_at_once(min_size):
    cases = [case for case in CASES if case[1] == min_size]
    boxes = np.array([case[0] for case in cases], dtype=np.float64)
    # every box in two images: one of (W, H), one twice as large (other limits, other codes)
    sizes = np.repeat([[W, H], [2 * W, 2 * H]], len(boxes), axis=0)
    clipped, got = check_boxes(np.concatenate([boxes, boxes]), sizes, min_size)
    small, large = [case[2] for case in cases], [case[3] for case in cases]
    assert got.tolist() == small + large
    np.testing.assert_array_equal(clipped[: len(boxes)], _reference_clip(boxes, small, W, H))
    np.testing.assert_array_equal(
        clipped[len(boxes) :], _reference_clip(boxes, large, 2 * W, 2 * H)
    )
    assert check_boxes(np.zeros((0, 4)), np.zeros((0, 2)))[1].shape == (0,)


def test_description_counts_and_names_the_first_ids():
    dropped = {'non-finite coordinates': [3], 'wholly outside the image': list(range(100, 112))}
    fixed = {'partly outside the image (clipped to it)': [7, 8]}
    text = describe_box_problems('a.json', 50, dropped, fixed)
    assert text == (
        'a.json: of its 50 boxes, 13 were dropped (1 non-finite coordinates: ids [3]; '
        '12 wholly outside the image: ids [100, 101, 102, 103, 104, 105, 106, 107, 108, 109] '
        'and 2 more) and 2 were kept after a fix (2 partly outside the image (clipped to it): '
        'ids [7, 8]); 37 boxes remain'
    )
    assert describe_box_problems('a.json', 5, {'x': [1]}, {}) == (
        'a.json: of its 5 boxes, 1 was dropped (1 x: ids [1]); 4 boxes remain'
    )
    assert describe_box_problems('a.json', 5, {'x': []}, {}) == ''
