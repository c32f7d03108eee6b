"""PhotometricDistort: Caffe's uint8 arithmetic, ranges, probabilities, float references."""

import cv2
import mmcv
import numpy as np
import pytest
from mmdet.registry import TRANSFORMS

from ssd_plugin.datasets.transforms import PhotometricDistort
from ssd_plugin.datasets.transforms.photometric_distort import affine_lut, hue_lut

STEPS = ('brightness', 'contrast', 'saturation', 'hue', 'channel_swap')


def only(step, **kwargs):
    """A PhotometricDistort that always applies ``step`` and nothing else."""
    probs = {f'{s}_prob': float(s == step) for s in STEPS}
    return PhotometricDistort(**probs, **kwargs)


def _image(seed=0, size=(40, 50)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size + (3,), dtype=np.uint8)


def test_registered_with_caffe_defaults():
    t = TRANSFORMS.build(dict(type='PhotometricDistort'))
    assert isinstance(t, PhotometricDistort)
    assert t.brightness_delta == 32 and t.hue_delta == 18
    assert t.contrast_range == (0.5, 1.5) and t.saturation_range == (0.5, 1.5)
    assert t.probs == dict(
        brightness_prob=0.5,
        contrast_prob=0.5,
        saturation_prob=0.5,
        hue_prob=0.5,
        channel_swap_prob=0.0,
        contrast_first_prob=0.5,
    )


def test_luts_are_caffe_uint8_arithmetic():
    v = np.arange(256.0)
    np.testing.assert_array_equal(affine_lut(), np.arange(256))
    np.testing.assert_array_equal(affine_lut(10.4), np.clip(np.rint(v + 10.4), 0, 255))
    np.testing.assert_array_equal(affine_lut(-40.0), np.clip(v - 40, 0, 255))
    both = np.clip(np.rint(np.clip(np.rint(v + 5.6), 0, 255) * 1.3), 0, 255)
    np.testing.assert_array_equal(affine_lut(5.6, 1.3), both)
    hue = hue_lut(18.0)
    np.testing.assert_array_equal(hue, np.mod(np.rint(v + 12.8), 256))  # 18 deg = 12.8 steps
    assert hue[250] == 7 and hue_lut(-18.0)[3] == 246  # hue wraps around the circle


def test_brightness_is_bounded_uniform_and_saturates_instead_of_wrapping():
    np.random.seed(0)
    t = only('brightness')
    img = np.full((4, 4, 3), 128, np.uint8)
    deltas = np.array([int(t(dict(img=img))['img'][0, 0, 0]) - 128 for _ in range(2000)])
    assert deltas.min() >= -32 and deltas.max() <= 32
    assert deltas.min() <= -31 and deltas.max() >= 31 and abs(deltas.mean()) < 1.5
    white = np.full((4, 4, 3), 250, np.uint8)
    outs = [t(dict(img=white))['img'] for _ in range(200)]
    assert all(o.dtype == np.uint8 for o in outs)
    assert max(int(o.max()) for o in outs) == 255 and min(int(o.min()) for o in outs) >= 250 - 32


def test_contrast_range_and_exact_scaling():
    np.random.seed(1)
    t = only('contrast')
    img = np.full((2, 2, 3), 100, np.uint8)
    values = np.array([int(t(dict(img=img))['img'][0, 0, 0]) for _ in range(2000)])
    assert values.min() >= 50 and values.max() <= 150 and values.min() <= 52 and values.max() >= 148
    src = _image(1)
    for _ in range(5):
        out = t(dict(img=src))['img']
        # Every pixel is scaled by one common factor: recover it from a bright pixel.
        alpha = np.median(out[src > 100] / src[src > 100])
        np.testing.assert_allclose(out, np.clip(src * alpha, 0, 255), atol=1.5)


def test_saturation_and_hue_match_mmcv_float_hsv_reference():
    # Smooth saturated colours, so hue and saturation changes are large.
    src = cv2.resize(_image(2, (8, 8)), (64, 64), interpolation=cv2.INTER_LINEAR)
    for hue_deg, sat in ((17.3, None), (-12.0, None), (None, 1.4), (None, 0.6), (9.0, 1.2)):
        t = PhotometricDistort(
            brightness_prob=0,
            contrast_prob=0,
            channel_swap_prob=0,
            hue_prob=float(hue_deg is not None),
            saturation_prob=float(sat is not None),
        )
        params = dict(
            brightness=None,
            contrast=None,
            saturation=sat,
            hue=hue_deg,
            order=None,
            contrast_first=True,
        )
        t._random_params = lambda p=params: p
        out = t(dict(img=src))['img']
        ref = mmcv.bgr2hsv(src.astype(np.float32))  # H in degrees, S in [0, 1]
        if sat is not None:
            ref[..., 1] = np.clip(ref[..., 1] * sat, 0, 1)
        if hue_deg is not None:
            ref[..., 0] = np.mod(ref[..., 0] + hue_deg, 360)
        ref = np.clip(mmcv.hsv2bgr(ref), 0, 255)
        diff = np.abs(out.astype(np.float32) - ref)
        assert out.dtype == np.uint8
        assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 6 and diff.max() <= 10, diff.mean()
        assert np.abs(out.astype(np.float32) - src).mean() > 5 * diff.mean()  # it did change


def test_channel_swap_permutes_channels():
    np.random.seed(3)
    t = only('channel_swap')
    src = _image(3)
    seen = set()
    for _ in range(100):
        out = t(dict(img=src))['img']
        perm = tuple(
            next(c for c in range(3) if (out[..., k] == src[..., c]).all()) for k in range(3)
        )
        assert sorted(perm) == [0, 1, 2]
        assert out.flags.c_contiguous
        seen.add(perm)
    assert len(seen) == 6


def test_step_frequencies_follow_their_probabilities():
    np.random.seed(4)
    t = PhotometricDistort(
        brightness_prob=0.2,
        contrast_prob=0.5,
        saturation_prob=0.8,
        hue_prob=0.5,
        channel_swap_prob=0.3,
    )
    draws = [t._random_params() for _ in range(4000)]
    for step, p in (
        ('brightness', 0.2),
        ('contrast', 0.5),
        ('saturation', 0.8),
        ('hue', 0.5),
        ('order', 0.3),
    ):
        freq = np.mean([d[step] is not None for d in draws])
        assert abs(freq - p) < 0.03, (step, freq)
    assert abs(np.mean([d['contrast_first'] for d in draws]) - 0.5) < 0.03
    hues = np.array([d['hue'] for d in draws if d['hue'] is not None])
    assert hues.min() >= -18 and hues.max() <= 18 and hues.min() < -17.5 and hues.max() > 17.5


def test_default_distortion_keeps_uint8_shape():
    np.random.seed(5)
    src = _image(5, (30, 20))
    t = PhotometricDistort()
    changed = 0
    for _ in range(50):
        out = t(dict(img=src.copy()))['img']
        assert out.dtype == np.uint8 and out.shape == src.shape
        changed += not np.array_equal(out, src)
    assert 40 <= changed < 50  # nothing fires with probability 1/16 per image


@pytest.mark.parametrize(
    'img',
    [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)],
)
def test_non_bgr_uint8_images_raise_a_clear_error(img):
    with pytest.raises(ValueError, match=r'expects a uint8 \(h, w, 3\) BGR image'):
        PhotometricDistort()(dict(img=img, img_path='a.png'))


def test_bad_arguments():
    with pytest.raises(ValueError, match='hue_prob'):
        PhotometricDistort(hue_prob=2)
    with pytest.raises(ValueError, match='contrast_range'):
        PhotometricDistort(contrast_range=(1.5, 0.5))
