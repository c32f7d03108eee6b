import math

import pytest
import torch

from ssd_plugin.functional.default_boxes import (
    caffe_sizes,
    expand_aspect_ratios,
    grid_default_boxes,
    level_box_shapes,
    paper_scales,
    paper_sizes,
)

# SSD_SPEC.md, "Default boxes": sizes of the released Caffe models (equal to mmdet's).
CAFFE_TABLE = [
    (300, (0.2, 0.9), 6, [30, 60, 111, 162, 213, 264], [60, 111, 162, 213, 264, 315]),
    (300, (0.15, 0.9), 6, [21, 45, 99, 153, 207, 261], [45, 99, 153, 207, 261, 315]),
    (512, (0.15, 0.9), 7, [35, 76, 153, 230, 307, 384, 460], [76, 153, 230, 307, 384, 460, 537]),
    (512, (0.1, 0.9), 7, [20, 51, 133, 215, 296, 378, 460], [51, 133, 215, 296, 378, 460, 542]),
]


@pytest.mark.parametrize('size,scale_range,levels,mins,maxs', CAFFE_TABLE)
def test_caffe_sizes_match_released_table(size, scale_range, levels, mins, maxs):
    assert caffe_sizes(size, scale_range, levels) == (mins, maxs)


def test_caffe_sizes_generalise_to_other_inputs_and_levels():
    # First level is (s_min% // 2, s_min%); steps of floor((90 - 20) / 3) = 23 %.
    mins, maxs = caffe_sizes(400, (0.2, 0.9), 5)
    assert mins == [40, 80, 172, 264, 356]
    assert maxs == [80, 172, 264, 356, 448]
    # The floored step can fit more than m - 1 values in [s_min, s_max]: only m - 1 are kept.
    mins, maxs = caffe_sizes(100, (0.2, 0.9), 23)
    assert len(mins) == len(maxs) == 23 and mins[1] == 20 and mins[2] == 23


def test_caffe_sizes_errors():
    with pytest.raises(ValueError, match='at least 3 levels'):
        caffe_sizes(300, (0.2, 0.9), 2)
    with pytest.raises(ValueError, match='scale_range'):
        caffe_sizes(300, (0.9, 0.2), 6)
    with pytest.raises(ValueError, match='too narrow'):
        caffe_sizes(300, (0.2, 0.22), 6)


def test_paper_scales_eq4():
    assert paper_scales((0.2, 0.9), 6) == pytest.approx([0.2, 0.34, 0.48, 0.62, 0.76, 0.9, 1.04])
    assert paper_scales((0.2, 0.9), 1) == [0.2, 0.9]
    mins, maxs = paper_sizes(300, (0.2, 0.9), 6)
    assert mins == pytest.approx([60, 102, 144, 186, 228, 270])
    assert maxs == pytest.approx([102, 144, 186, 228, 270, 312])
    with pytest.raises(ValueError, match='scale_range'):
        paper_scales((0.5, 0.5), 6)
    with pytest.raises(ValueError, match='scale_range'):
        paper_scales((0.0, 0.5), 6)
    with pytest.raises(ValueError, match='num_levels'):
        paper_scales((0.2, 0.9), 0)


def test_expand_aspect_ratios_flip_and_dedup():
    assert expand_aspect_ratios([2, 3]) == pytest.approx([2, 0.5, 3, 1 / 3])
    # Caffe skips ratios already present (1 is always there) and duplicates.
    assert expand_aspect_ratios([1, 2, 0.5, 2]) == pytest.approx([2, 0.5])
    with pytest.raises(ValueError, match='positive'):
        expand_aspect_ratios([0])


def test_level_box_shapes_order():
    shapes = level_box_shapes(30, 60, [2, 3])
    s2, s3 = math.sqrt(2), math.sqrt(3)
    expected = [
        [30, 30],
        [math.sqrt(1800)] * 2,
        [30 * s2, 30 / s2],
        [30 / s2, 30 * s2],
        [30 * s3, 30 / s3],
        [30 / s3, 30 * s3],
    ]
    torch.testing.assert_close(shapes, torch.tensor(expected, dtype=torch.float64))


def test_caffe_ssd300_voc_oracle_priors():
    """research/ssd_peers.md sec. 3: Caffe's PriorBox output (normalised) for SSD300 VOC."""
    first = grid_default_boxes(level_box_shapes(30, 60, [2]), (38, 38), (8, 8)) / 300
    expected_first = torch.tensor(
        [
            [-0.036667, -0.036667, 0.063333, 0.063333],
            [-0.057377, -0.057377, 0.084044, 0.084044],
            [-0.057377, -0.022022, 0.084044, 0.048689],
            [-0.022022, -0.057377, 0.048689, 0.084044],
            [-0.01, -0.036667, 0.09, 0.063333],
            [-0.030711, -0.057377, 0.110711, 0.084044],
        ]
    )
    torch.testing.assert_close(first[:6], expected_first, atol=1e-6, rtol=0)
    last = grid_default_boxes(level_box_shapes(264, 315, [2]), (1, 1), (300, 300)) / 300
    expected_last = torch.tensor([0.188873, -0.122254, 0.811127, 1.122254])
    torch.testing.assert_close(last[-1], expected_last, atol=1e-6, rtol=0)


def test_torchvision_oracle_15px_image():
    """torchvision's DefaultBoxGenerator([[2]]) test: 15x15 image, 1x1 map, scales 0.15 and 0.9.

    Its extra square uses s_max (0.9) directly for a single level, as ``max_size`` does here.
    """
    boxes = grid_default_boxes(level_box_shapes(0.15 * 15, 0.9 * 15, [2]), (1, 1), (15, 15))
    expected = torch.tensor(
        [
            [6.375, 6.375, 8.625, 8.625],
            [4.7443, 4.7443, 10.2557, 10.2557],
            [5.9090, 6.7045, 9.0910, 8.2955],
            [6.7045, 5.9090, 8.2955, 9.0910],
        ]
    )
    torch.testing.assert_close(boxes, expected, atol=1e-4, rtol=0)


def test_grid_is_location_major_with_non_square_stride():
    shapes = torch.tensor([[2.0, 2.0], [4.0, 2.0]], dtype=torch.float64)
    boxes = grid_default_boxes(shapes, (2, 3), (10, 20), dtype=torch.float64)
    assert boxes.shape == (2 * 3 * 2, 4)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    # Row y outer, column x inner, the boxes of one location contiguous.
    expected = [(5 + 10 * x, 10 + 20 * y) for y in range(2) for x in range(3) for _ in range(2)]
    torch.testing.assert_close(centres, torch.tensor(expected, dtype=torch.float64))
    wh = boxes[:, 2:] - boxes[:, :2]
    torch.testing.assert_close(wh, shapes.repeat(6, 1))


def test_clip_clamps_to_image():
    shapes = torch.tensor([[40.0, 10.0]], dtype=torch.float64)
    boxes = grid_default_boxes(shapes, (1, 2), (15, 20), image_size=(20, 30))
    torch.testing.assert_close(
        boxes, torch.tensor([[0.0, 5.0, 27.5, 15.0], [2.5, 5.0, 30.0, 15.0]])
    )
