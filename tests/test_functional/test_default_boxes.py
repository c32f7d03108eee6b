import math

import pytest
import torch
from caffe_prior_box import caffe_prior_box

from ssd_plugin.functional.default_boxes import (
    caffe_sizes,
    expand_aspect_ratios,
    grid_default_boxes,
    level_box_shapes,
    paper_scales,
    paper_sizes,
    relative_box_shapes,
    torchvision_scales,
)

# Sizes of the released Caffe models (ssd_pascal.py, ssd_coco.py, ssd_pascal_512.py,
# ssd_coco_512.py); mmdet's SSDAnchorGenerator computes the same.
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
    """Caffe's PriorBox output (normalised) for SSD300 VOC's conv4_3 and conv9_2 layers."""
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


def test_expand_aspect_ratios_without_flip_and_without_dedup():
    assert expand_aspect_ratios([2, 3], flip=False) == pytest.approx([2, 3])
    # Caffe's flip=False keeps 0.5 as a ratio of its own (it is not 1/2's flip any more).
    assert expand_aspect_ratios([2, 0.5, 1, 2], flip=False) == pytest.approx([2, 0.5])
    # torchvision: every listed ratio adds r and 1/r, 1 and repeats included.
    assert expand_aspect_ratios([1, 2, 2], unique=False) == pytest.approx([1, 1, 2, 0.5, 2, 0.5])


def test_min_size_without_max_size_mobilenet_ssd_first_layer():
    """MobileNet-SSD conv11 PriorBox: min_size 60, no max_size, aspect_ratio 2, 19x19 on 300."""
    shapes = level_box_shapes(60, None, [2])
    assert shapes.shape == (3, 2)
    boxes = grid_default_boxes(shapes, (19, 19), (300 / 19, 300 / 19), dtype=torch.float64) / 300
    # Hand arithmetic: centre 0.5 * 300 / 19 = 7.894737; (7.894737 -+ w / 2) / 300.
    expected = torch.tensor(
        [
            [-0.073684, -0.073684, 0.126316, 0.126316],
            [-0.115106, -0.044395, 0.167737, 0.097026],
            [-0.044395, -0.115106, 0.097026, 0.167737],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(boxes[:3], expected, atol=1e-6, rtol=0)
    oracle = caffe_prior_box((19, 19), (300, 300), [60], None, [2])
    torch.testing.assert_close(boxes, torch.tensor(oracle, dtype=torch.float64))


def test_several_min_sizes_on_one_level():
    """Caffe's multi-size PriorBox: per min size its square, its sqrt(min*max) square, ratios."""
    shapes = level_box_shapes([10, 30], [20, 50], [2], flip=False)
    boxes = grid_default_boxes(shapes, (2, 2), (50, 50), dtype=torch.float64)
    # Location (0, 0), centre (25, 25), by hand.
    expected = torch.tensor(
        [
            [20.0, 20.0, 30.0, 30.0],
            [17.928932, 17.928932, 32.071068, 32.071068],
            [17.928932, 21.464466, 32.071068, 28.535534],
            [10.0, 10.0, 40.0, 40.0],
            [5.635083, 5.635083, 44.364917, 44.364917],
            [3.786797, 14.393398, 46.213203, 35.606602],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(boxes[:6], expected, atol=1e-6, rtol=0)
    oracle = caffe_prior_box((2, 2), (100, 100), [10, 30], [20, 50], [2], flip=False)
    torch.testing.assert_close(boxes / 100, torch.tensor(oracle, dtype=torch.float64))


@pytest.mark.parametrize(
    'min_sizes,max_sizes,ratios,flip',
    [
        ([30], [60], [2], True),  # SSD300 conv4_3
        ([60], None, [2, 3], True),  # min_size only
        ([30], [60], [2, 3], False),  # no flip
        ([30], [60], [1, 2, 2.0000001, 0.5, 3], True),  # explicit 1 and duplicates
        ([16, 32], None, [2], True),  # several min sizes, no max
        ([16, 32, 48], [24, 40, 64], [1, 2, 3], False),  # several min and max sizes
    ],
)
@pytest.mark.parametrize('clip', [False, True])
def test_level_matches_caffe_prior_box_loop(min_sizes, max_sizes, ratios, flip, clip):
    layer_hw, img_hw, step_hw = (5, 7), (120, 160), (24.0, 22.0)
    shapes = level_box_shapes(min_sizes, max_sizes, ratios, flip)
    image_size = img_hw if clip else None
    boxes = grid_default_boxes(
        shapes, layer_hw, step_hw[::-1], image_size, dtype=torch.float64
    ) / torch.tensor([160, 120, 160, 120], dtype=torch.float64)
    oracle = caffe_prior_box(
        layer_hw, img_hw, min_sizes, max_sizes, ratios, flip, clip, step_hw=step_hw
    )
    torch.testing.assert_close(boxes, torch.tensor(oracle, dtype=torch.float64))


def test_level_box_shapes_errors():
    with pytest.raises(ValueError, match='one max size per min size'):
        level_box_shapes([10, 20], [30], [2])
    with pytest.raises(ValueError, match='one max size per min size'):
        level_box_shapes([], None, [2])


def test_torchvision_scales_rule():
    # ssdlite320: DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    scales = torchvision_scales((0.2, 0.95), 6)
    assert scales == [0.2 + 0.75 * k / 5.0 for k in range(6)] + [1.0]
    assert scales == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0])
    assert torchvision_scales((0.15, 0.9), 1) == [0.15, 0.9]
    with pytest.raises(ValueError, match='scale_range'):
        torchvision_scales((0.9, 0.15), 6)


def test_relative_box_shapes_non_square_and_clip():
    # Scale 0.9, next 1.2 on a 200 x 400 (h, w) image: fractions of each axis.
    s2 = math.sqrt(2)
    shapes = relative_box_shapes(0.9, 1.2, [2], (200, 400), clip=False)
    fractions = [
        [0.9, 0.9],
        [math.sqrt(0.9 * 1.2)] * 2,
        [0.9 * s2, 0.9 / s2],
        [0.9 / s2, 0.9 * s2],
    ]
    pixels = torch.tensor(fractions, dtype=torch.float64) * torch.tensor([400.0, 200.0])
    torch.testing.assert_close(shapes, pixels.double())
    clipped = relative_box_shapes(0.9, 1.2, [2], (200, 400), clip=True)
    expected = torch.tensor(fractions, dtype=torch.float64).clamp(max=1) * torch.tensor(
        [400.0, 200.0]
    )
    torch.testing.assert_close(clipped, expected.double())
    assert clipped[1].tolist() == [400.0, 200.0] and clipped[2, 0] == 400.0
