import pytest
import torch
from caffe_prior_box import caffe_prior_box
from mmdet.registry import TASK_UTILS
from torchvision.models.detection import anchor_utils
from torchvision.models.detection.image_list import ImageList

from ssd_plugin.models.task_modules import DefaultBoxGenerator

SSD300 = dict(
    input_size=300,
    strides=(8, 16, 32, 64, 100, 300),
    ratios=([2], [2, 3], [2, 3], [2, 3], [2], [2]),
    featmaps=[(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)],
)
SSD512 = dict(
    input_size=512,
    strides=(8, 16, 32, 64, 128, 256, 512),
    ratios=([2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]),
    featmaps=[(64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)],
)


def _build(setting, **kwargs):
    cfg = dict(
        type='DefaultBoxGenerator',
        input_size=setting['input_size'],
        strides=setting['strides'],
        ratios=setting['ratios'],
    )
    cfg.update(kwargs)
    return TASK_UTILS.build(cfg)


@pytest.mark.parametrize(
    'setting,per_level,total',
    [
        (SSD300, [5776, 2166, 600, 150, 36, 4], 8732),
        (SSD512, [16384, 6144, 1536, 384, 96, 16, 4], 24564),
    ],
)
def test_prior_counts(setting, per_level, total):
    gen = _build(setting)
    priors = gen.grid_priors(setting['featmaps'], device='cpu')
    assert [len(p) for p in priors] == per_level
    assert sum(per_level) == total
    flags = gen.valid_flags(setting['featmaps'], (setting['input_size'],) * 2, device='cpu')
    assert [int(f.sum()) for f in flags] == per_level


@pytest.mark.parametrize(
    'setting,scale_range',
    [(SSD300, (0.15, 0.9)), (SSD300, (0.2, 0.9)), (SSD512, (0.1, 0.9)), (SSD512, (0.15, 0.9))],
)
def test_caffe_mode_equals_mmdet_ssd_anchor_generator(setting, scale_range):
    mine = _build(setting, scale_range=scale_range, scale_mode='caffe')
    ref = TASK_UTILS.build(
        dict(
            type='SSDAnchorGenerator',
            scale_major=False,
            input_size=setting['input_size'],
            basesize_ratio_range=scale_range,
            strides=list(setting['strides']),
            ratios=[list(r) for r in setting['ratios']],
        )
    )
    assert mine.num_levels == ref.num_levels
    assert mine.num_base_priors == ref.num_base_priors
    for a, b in zip(
        mine.grid_priors(setting['featmaps'], device='cpu'),
        ref.grid_priors(setting['featmaps'], device='cpu'),
    ):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    pad = (setting['input_size'] - 20, setting['input_size'] - 50, 3)
    for a, b in zip(
        mine.valid_flags(setting['featmaps'], pad, device='cpu'),
        ref.valid_flags(setting['featmaps'], pad, device='cpu'),
    ):
        assert torch.equal(a, b)


def test_paper_mode_sizes():
    gen = _build(SSD300, scale_range=(0.2, 0.9), scale_mode='paper')
    assert gen.min_sizes == pytest.approx([60, 102, 144, 186, 228, 270])
    assert gen.max_sizes == pytest.approx([102, 144, 186, 228, 270, 312])
    last = gen.grid_priors(SSD300['featmaps'], device='cpu')[-1]
    # 1x1 level centred at 150: min square 270, extra square sqrt(270 * 312).
    s_prime = (270 * 312) ** 0.5
    expected = torch.tensor(
        [
            [15.0, 15.0, 285.0, 285.0],
            [150 - s_prime / 2, 150 - s_prime / 2, 150 + s_prime / 2, 150 + s_prime / 2],
        ]
    )
    torch.testing.assert_close(last[:2], expected)


def test_non_square_input_and_derived_strides():
    gen = DefaultBoxGenerator(
        input_size=(300, 500), strides=None, ratios=([2], [2, 3], [2]), scale_mode='paper'
    )
    featmaps = [(10, 16), (5, 8), (1, 2)]
    priors = gen.grid_priors(featmaps, device='cpu')
    assert [len(p) for p in priors] == [10 * 16 * 4, 5 * 8 * 6, 2 * 4]
    # Scales refer to min(h, w) = 300; strides are (500/16, 300/10) on level 0.
    assert gen.min_sizes[0] == pytest.approx(0.15 * 300)
    centres = (priors[0][:, :2] + priors[0][:, 2:]) / 2
    torch.testing.assert_close(centres[0], torch.tensor([500 / 32, 15.0]))
    torch.testing.assert_close(centres[-1], torch.tensor([500 - 500 / 32, 285.0]))
    wh = priors[0][0, 2:] - priors[0][0, :2]
    torch.testing.assert_close(wh, torch.tensor([45.0, 45.0]))


def test_caffe_mode_other_input_size():
    gen = DefaultBoxGenerator(
        input_size=400, strides=None, ratios=([2],) * 5, scale_range=(0.2, 0.9)
    )
    assert gen.min_sizes == [40, 80, 172, 264, 356]
    priors = gen.grid_priors([(50, 50), (25, 25), (13, 13), (7, 7), (1, 1)], device='cpu')
    assert len(torch.cat(priors)) == 4 * (2500 + 625 + 169 + 49 + 1)


def test_explicit_sizes_and_clip():
    cfg = dict(
        input_size=320,
        strides=(16, 320),
        ratios=([2, 3], [2]),
        min_sizes=(48, 250),
        max_sizes=(100, 320),
    )
    featmaps = [(20, 20), (1, 1)]
    unclipped = DefaultBoxGenerator(**cfg).grid_priors(featmaps, device='cpu')
    clipped = DefaultBoxGenerator(clip=True, **cfg).grid_priors(featmaps, device='cpu')
    assert DefaultBoxGenerator(**cfg).num_base_priors == [6, 4]
    # Level 1, 1x1 map centred at 160: ratio-2 box is 250 sqrt(2) wide, 250 / sqrt(2) high.
    half_w, half_h = 125 * 2**0.5, 125 / 2**0.5
    wide = torch.tensor([160 - half_w, 160 - half_h, 160 + half_w, 160 + half_h])
    torch.testing.assert_close(unclipped[1][2], wide)
    torch.testing.assert_close(clipped[1][2], torch.tensor([0, 160 - half_h, 320, 160 + half_h]))
    # Level 0 location (0, 0), centre (8, 8): the 48 px square becomes [0, 32].
    torch.testing.assert_close(unclipped[0][0], torch.tensor([-16.0, -16.0, 32.0, 32.0]))
    torch.testing.assert_close(clipped[0][0], torch.tensor([0.0, 0.0, 32.0, 32.0]))
    all_clipped = torch.cat(clipped)
    assert all_clipped.min() == 0 and all_clipped.max() == 320


def test_priors_are_cached_per_size_dtype_device():
    gen = _build(SSD300)
    a = gen.grid_priors(SSD300['featmaps'], device='cpu')
    again = gen.grid_priors(SSD300['featmaps'], device='cpu')
    assert all(x is y for x, y in zip(again, a))
    b = gen.grid_priors(SSD300['featmaps'], dtype=torch.float64, device='cpu')
    assert b[0] is not a[0] and b[0].dtype == torch.float64
    torch.testing.assert_close(b[0].float(), a[0])


@pytest.mark.parametrize(
    'kwargs,key',
    [
        (dict(strides=(8, 16)), 'strides'),
        (dict(min_sizes=[1] * 6), 'max_sizes'),
        (dict(min_sizes=[10] * 5, max_sizes=[20] * 5), 'min_sizes'),
        (dict(min_sizes=[10] * 6, max_sizes=[20] * 5 + [5]), 'min_sizes < max_sizes'),
        (dict(scale_range=(0.9, 0.2)), 'scale_range'),
        (dict(scale_range=(0.2, 0.9), scale_mode='foo'), 'scale_mode'),
        (dict(input_size=-1), 'input_size'),
        (dict(ratios=[]), 'ratios'),
        (dict(strides=(8, 16, 32, 64, 100, 0)), 'strides'),
    ],
)
def test_inconsistent_keys_raise(kwargs, key):
    cfg = dict(input_size=300, strides=SSD300['strides'], ratios=SSD300['ratios'])
    cfg.update(kwargs)
    with pytest.raises(ValueError, match=key):
        DefaultBoxGenerator(**cfg)


def test_wrong_number_of_feature_maps_raises():
    gen = _build(SSD300)
    with pytest.raises(ValueError, match='6 levels'):
        gen.grid_priors([(38, 38)], device='cpu')


def _normalised(priors, input_size):
    h, w = input_size
    return [p.double() / torch.tensor([w, h, w, h], dtype=torch.float64) for p in priors]


def test_mobilenet_ssd_prior_boxes_match_caffe():
    """chuanqi305's MobileNet-SSD prototxt: first PriorBox has min_size 60 and no max_size."""
    mins = [60, 105, 150, 195, 240, 285]
    maxs = [None, 150, 195, 240, 285, 300]
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2, 3]]
    featmaps = [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    gen = DefaultBoxGenerator(
        input_size=300, strides=None, ratios=ratios, min_sizes=mins, max_sizes=maxs
    )
    assert gen.num_base_priors == [3, 6, 6, 6, 6, 6]
    priors = _normalised(gen.grid_priors(featmaps, dtype=torch.float64, device='cpu'), (300, 300))
    for level, (fm, lo, hi, r) in enumerate(zip(featmaps, mins, maxs, ratios)):
        oracle = caffe_prior_box(fm, (300, 300), [lo], None if hi is None else [hi], r)
        torch.testing.assert_close(priors[level], torch.tensor(oracle, dtype=torch.float64))


def test_caffe_options_per_level_against_caffe_loop():
    """flip per level, an explicit 1, several min sizes, clip, non-square input and steps."""
    input_size, featmaps = (120, 200), [(15, 25), (4, 7)]
    cfg = dict(
        input_size=input_size,
        strides=[8, (30, 32)],
        ratios=[[1, 2, 3], [2, 0.5]],
        min_sizes=[[16, 40], 64],
        max_sizes=[[24, 60], None],
        flip=[True, False],
    )
    for clip in (False, True):
        gen = DefaultBoxGenerator(clip=clip, **cfg)
        assert gen.num_base_priors == [2 * 6, 3]
        priors = _normalised(
            gen.grid_priors(featmaps, dtype=torch.float64, device='cpu'), input_size
        )
        first = caffe_prior_box(
            featmaps[0], input_size, [16, 40], [24, 60], [1, 2, 3], True, clip, step_hw=(8, 8)
        )
        second = caffe_prior_box(
            featmaps[1], input_size, [64], None, [2, 0.5], False, clip, step_hw=(32, 30)
        )
        torch.testing.assert_close(priors[0], torch.tensor(first, dtype=torch.float64))
        torch.testing.assert_close(priors[1], torch.tensor(second, dtype=torch.float64))


def _torchvision_boxes(tv_gen, image_hw, featmaps):
    images = ImageList(torch.zeros(1, 3, *image_hw), [tuple(image_hw)])
    feats = [torch.zeros(1, 1, h, w) for h, w in featmaps]
    return tv_gen(images, feats)[0]


TORCHVISION_CASES = [
    # ssd300_vgg16
    (
        dict(
            aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
            scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
            steps=[8, 16, 32, 64, 100, 300],
        ),
        [
            ((300, 300), [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]),
            ((240, 400), [(30, 50), (15, 25), (8, 13), (4, 7), (2, 4), (1, 2)]),
        ],
    ),
    # ssdlite320_mobilenet_v3_large
    (
        dict(aspect_ratios=[[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95),
        [
            ((320, 320), [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]),
            ((256, 448), [(16, 28), (8, 14), (4, 7), (2, 4), (1, 2), (1, 1)]),
        ],
    ),
    # torchvision's defaults (0.15, 0.9), ratios 1 and repeats, one level
    (dict(aspect_ratios=[[1, 2, 2]], steps=None), [((15, 15), [(1, 1)]), ((30, 45), [(3, 4)])]),
    (dict(aspect_ratios=[[3], [2]]), [((64, 96), [(8, 12), (4, 6)])]),
]


@pytest.mark.parametrize('clip', [True, False])
@pytest.mark.parametrize('tv_kwargs,images', TORCHVISION_CASES)
def test_relative_scales_equal_torchvision_default_box_generator(tv_kwargs, images, clip):
    tv_gen = anchor_utils.DefaultBoxGenerator(clip=clip, **tv_kwargs)
    for image_hw, featmaps in images:
        cfg = dict(
            input_size=image_hw,
            ratios=tv_kwargs['aspect_ratios'],
            clip=clip,
            strides=tv_kwargs.get('steps'),
        )
        if 'scales' in tv_kwargs:
            cfg['scales'] = tv_kwargs['scales']
        else:
            cfg.update(
                scale_mode='torchvision',
                scale_range=(tv_kwargs.get('min_ratio', 0.15), tv_kwargs.get('max_ratio', 0.9)),
            )
        gen = DefaultBoxGenerator(**cfg)
        assert gen.scales == tv_gen.scales
        assert gen.num_base_priors == tv_gen.num_anchors_per_location()
        mine = torch.cat(gen.grid_priors(featmaps, device='cpu'))
        theirs = _torchvision_boxes(tv_gen, image_hw, featmaps)
        assert mine.shape == theirs.shape
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=0)


def test_torchvision_clip_differs_from_caffe_clip():
    """Relative mode clamps sizes (corners may leave the image); pixel mode clamps corners."""
    featmaps = [(1, 1)]
    relative = DefaultBoxGenerator(
        input_size=100, strides=None, ratios=[[2]], scales=[0.9, 1.2], clip=True
    ).grid_priors(featmaps, device='cpu')[0]
    # sqrt(0.9 * 1.2) > 1 -> 100 px square; ratio-2 box 127 px wide -> 100 px; centred at 50.
    torch.testing.assert_close(relative[1], torch.tensor([0.0, 0.0, 100.0, 100.0]))
    half_h = 90 / 2**0.5 / 2
    torch.testing.assert_close(relative[2], torch.tensor([0.0, 50 - half_h, 100.0, 50 + half_h]))
    off_centre = DefaultBoxGenerator(
        input_size=100, strides=[60], ratios=[[2]], scales=[0.9, 1.2], clip=True
    ).grid_priors(featmaps, device='cpu')[0]
    torch.testing.assert_close(off_centre[0], torch.tensor([-15.0, -15.0, 75.0, 75.0]))


@pytest.mark.parametrize(
    'kwargs,key',
    [
        (dict(scales=[0.1] * 6), 'scales must be 7'),
        (dict(scales=[0.1] * 6 + [0]), 'scales must be 7'),
        (dict(scales=[0.1] * 7, min_sizes=[10] * 6, max_sizes=[20] * 6), 'either scales'),
        (dict(flip=[True] * 5), 'flip has 5'),
        (dict(min_sizes=[[10, 20]] + [10] * 5, max_sizes=[30] * 6), 'level 0: 1 max_sizes for 2'),
        (dict(min_sizes=[10] * 6, max_sizes=[None] * 5 + [5]), 'min_sizes < max_sizes'),
        (dict(max_sizes=[20] * 6), 'max_sizes needs min_sizes'),
    ],
)
def test_new_keys_raise(kwargs, key):
    cfg = dict(input_size=300, strides=SSD300['strides'], ratios=SSD300['ratios'])
    cfg.update(kwargs)
    with pytest.raises(ValueError, match=key):
        DefaultBoxGenerator(**cfg)


@pytest.mark.parametrize('setting', [SSD300, SSD512])
def test_expected_featmap_sizes_are_the_papers_levels(setting):
    """The grids the strides lay out on their input are SSD300's / SSD512's feature maps."""
    gen = _build(setting)
    assert gen.expected_featmap_sizes((setting['input_size'],) * 2) == setting['featmaps']
    gen.check_featmap_sizes(setting['featmaps'], (setting['input_size'],) * 2)  # no error
    assert _build(setting, strides=None).expected_featmap_sizes((300, 300)) is None


def test_expected_featmap_sizes_of_strides_written_as_fractions():
    """mmdet's SSDLite strides (107 ~ 320 / 3) and a stride written as 320 / 3 give 3 cells."""
    ratios = ([2, 3],) * 6
    lite = DefaultBoxGenerator(320, strides=(16, 32, 64, 107, 160, 320), ratios=ratios)
    assert lite.expected_featmap_sizes((320, 320)) == [(s, s) for s in (20, 10, 5, 3, 2, 1)]
    exact = DefaultBoxGenerator(320, strides=(16, 32, 64, 320 / 3, 160, 320), ratios=ratios)
    assert exact.expected_featmap_sizes((320, 320))[3] == (3, 3)
    # non-square input and strides: (sw, sh) against (h, w)
    wide = DefaultBoxGenerator((300, 600), strides=[(16, 8)] * 3, ratios=[[2]] * 3)
    assert wide.expected_featmap_sizes((300, 600)) == [(38, 38)] * 3


def test_a_level_other_than_the_strides_expect_is_named_with_the_fix():
    """The issue's FPN: 38, 19, 10, 5, 3, 2 cells at 300 px against SSD300's strides."""
    gen = _build(SSD300)
    fpn = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (2, 2)]
    with pytest.raises(ValueError) as err:
        gen.check_featmap_sizes(fpn, (300, 300))
    message = str(err.value)
    assert 'level 5: the network gives 2x2, stride 300 expects 1x1' in message
    assert 'level 4' not in message and 'on a 300x300 input' in message
    # the fitted strides: the matching levels' own, 300 / 2 for level 5
    assert 'strides=(8, 16, 32, 64, 100, 150)' in message
    fitted = _build(SSD300, strides=(8, 16, 32, 64, 100, 150))
    fitted.check_featmap_sizes(fpn, (300, 300))
    # strides=None places the centres on any grid: only the level count is checked
    relative = _build(SSD300, strides=None)
    relative.check_featmap_sizes(fpn, (300, 300))
    with pytest.raises(ValueError, match=r'gives 5 feature maps .* has 6 levels'):
        relative.check_featmap_sizes(fpn[:5], (300, 300))


def test_every_wrong_level_is_named_and_rectangular_strides_are_fitted_per_axis():
    gen = DefaultBoxGenerator(300, strides=(8, 16, (32, 16)), ratios=([2],) * 3)
    with pytest.raises(ValueError) as err:
        gen.check_featmap_sizes([(38, 38), (20, 19), (10, 10)], (300, 300))
    message = str(err.value)
    assert 'level 1: the network gives 20x19, stride 16 expects 19x19' in message
    assert 'level 2: the network gives 10x10, stride (32, 16) expects 19x10' in message
    assert 'strides=(8, (15.789, 15), 30)' in message  # (300 / 19, 300 / 20), 300 / 10
