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
CASES = [  # box, min_size, expected code
    ([10, 10, 20, 20], 0, BOX_OK),
    ([0, 0, 100, 50], 0, BOX_OK),  # the whole image
    ([-5, 10, 20, 60], 0, CLIPPED),
    ([90, -1, 101, 49], 0, CLIPPED),
    ([np.nan, 0, 10, 10], 0, NON_FINITE),
    ([0, 0, np.inf, 10], 0, NON_FINITE),
    ([20, 10, 10, 20], 0, NON_POSITIVE),  # negative width
    ([10, 10, 10, 20], 0, NON_POSITIVE),  # zero width
    ([10, 30, 20, 30], 0, NON_POSITIVE),  # zero height
    ([120, 10, 130, 20], 0, OUTSIDE),
    ([-20, -20, -5, -5], 0, OUTSIDE),
    ([100, 0, 110, 10], 0, OUTSIDE),  # touches the right border from outside
    ([10, 10, 10.5, 20], 1, TOO_SMALL),
    ([99.5, 0, 120, 10], 1, TOO_SMALL),  # 0.5 px wide once clipped
    ([99.5, 0, 120, 10], 0, CLIPPED),
    ([10, 10, 10.5, 20], 0, BOX_OK),
]


@pytest.mark.parametrize('box, min_size, code', CASES)
def test_each_rule(box, min_size, code):
    clipped, codes = check_boxes(np.array([box]), np.array([[W, H]]), min_size)
    assert codes.tolist() == [code]
    if code in (BOX_OK, CLIPPED):  # the reference: torchvision's clipping to (H, W)
        expected = clip_boxes_to_image(torch.tensor([box], dtype=torch.float64), (H, W))
        np.testing.assert_array_equal(clipped, expected.numpy())
    else:  # dropped boxes come back unchanged
        np.testing.assert_array_equal(clipped, np.array([box], dtype=np.float64))


def test_many_boxes_of_different_images_at_once():
    boxes = np.array([case[0] for case in CASES if case[1] == 0], dtype=np.float64)
    codes = [case[2] for case in CASES if case[1] == 0]
    # every box in two images: one of (W, H), one twice as large (other limits, other codes)
    sizes = np.repeat([[W, H], [2 * W, 2 * H]], len(boxes), axis=0)
    clipped, got = check_boxes(np.concatenate([boxes, boxes]), sizes)
    assert got[: len(boxes)].tolist() == codes
    singles = [check_boxes(b[None], s[None]) for b, s in zip(boxes, sizes[len(boxes) :])]
    assert got[len(boxes) :].tolist() == [int(c[0]) for _, c in singles]
    np.testing.assert_array_equal(clipped[len(boxes) :], np.concatenate([b for b, _ in singles]))
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
