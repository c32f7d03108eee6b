import pytest
import torch
from mmdet.registry import TASK_UTILS

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
