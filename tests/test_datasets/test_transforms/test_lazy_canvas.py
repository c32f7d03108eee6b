"""The deferred zoom-out canvas: windows equal the painted canvas, every read paints it."""

import copy
import pickle

import numpy as np
import pytest

from ssd_plugin.datasets.transforms.lazy_canvas import (
    PendingCanvasResults,
    ZoomOutCanvas,
    fill_value,
    take_pending_canvas,
)


def _reference_canvas(src, canvas_hw, left_top, fill):
    """The canvas as mmdet's Expand paints it (np.full, then paste), fill already in dtype."""
    out = np.empty(canvas_hw + src.shape[2:], dtype=src.dtype)
    out[...] = fill
    out[left_top[1] : left_top[1] + src.shape[0], left_top[0] : left_top[0] + src.shape[1]] = src
    return out


@pytest.mark.parametrize('channels', [None, 1, 3, 4, 5])
@pytest.mark.parametrize('dtype', [np.uint8, np.float32])
def test_windows_equal_slices_of_the_painted_canvas(channels, dtype):
    rng = np.random.default_rng(0)
    shape = (23, 31) if channels is None else (23, 31, channels)
    src = (rng.random(shape) * 255).astype(dtype)
    fill = tuple(rng.uniform(0, 255, 1 if channels is None else channels))
    canvas = ZoomOutCanvas(src, (70, 90), (40, 11), fill)
    assert canvas.shape == (70, 90) + shape[2:] and canvas.dtype == dtype
    expected = _reference_canvas(
        src, (70, 90), (40, 11), canvas.fill if shape[2:] else canvas.fill[0]
    )
    np.testing.assert_array_equal(canvas.paint(), expected)
    np.testing.assert_array_equal(np.asarray(canvas), expected)
    for _ in range(200):  # windows inside, across, and fully outside the image
        x1, x2 = np.sort(rng.choice(91, 2, replace=False))
        y1, y2 = np.sort(rng.choice(71, 2, replace=False))
        np.testing.assert_array_equal(canvas.paint((x1, y1, x2, y2)), expected[y1:y2, x1:x2])


def test_uint8_fill_is_rounded_as_caffe():
    np.testing.assert_array_equal(
        fill_value((103.53, 116.28, 123.675), 3, np.uint8), [104, 116, 124]
    )
    np.testing.assert_array_equal(fill_value(300, 2, np.uint8), [255, 255])
    np.testing.assert_allclose(fill_value((0.5,), 1, np.float32), [0.5])


def test_bad_fill_and_geometry_raise_clear_errors():
    src = np.zeros((10, 10, 4), np.uint8)
    with pytest.raises(ValueError, match='fill has 3 values but the image has 4 channel'):
        ZoomOutCanvas(src, (20, 20), (0, 0), (1, 2, 3))
    with pytest.raises(ValueError, match='does not fit'):
        ZoomOutCanvas(src, (20, 20), (11, 0), 0)
    canvas = ZoomOutCanvas(src, (20, 20), (5, 5), 0)
    with pytest.raises(ValueError, match='window'):
        canvas.paint((0, 0, 21, 5))


def _pending():
    src = np.full((4, 6, 3), 7, np.uint8)
    results = PendingCanvasResults(img_shape=(8, 12), gt=np.arange(3))
    dict.__setitem__(results, 'img', ZoomOutCanvas(src, (8, 12), (2, 1), (1, 2, 3)))
    return results, _reference_canvas(src, (8, 12), (2, 1), np.array([1, 2, 3], np.uint8))


@pytest.mark.parametrize(
    'read',
    [
        lambda r: r['img'],
        lambda r: r.get('img'),
        lambda r: r.pop('img'),
        lambda r: r.setdefault('img'),
        lambda r: dict(r.items())['img'],
        lambda r: [v for v in r.values() if isinstance(v, np.ndarray) and v.ndim == 3][0],
        lambda r: r.copy()['img'],
        lambda r: dict(r)['img'],
        lambda r: {**r}['img'],
        lambda r: copy.deepcopy(r)['img'],
        lambda r: copy.copy(r)['img'],
        lambda r: pickle.loads(pickle.dumps(r))['img'],
    ],
)
def test_every_read_of_img_paints_the_canvas(read):
    results, expected = _pending()
    assert take_pending_canvas(results) is not None
    img = read(results)
    assert isinstance(img, np.ndarray)
    np.testing.assert_array_equal(img, expected)


def test_take_pending_canvas_does_not_paint_and_plain_images_are_not_pending():
    results, _ = _pending()
    canvas = take_pending_canvas(results)
    assert isinstance(canvas, ZoomOutCanvas)
    assert isinstance(dict.get(results, 'img'), ZoomOutCanvas)  # still lazy
    results['img'] = np.zeros((2, 2, 3), np.uint8)
    assert take_pending_canvas(results) is None
    assert take_pending_canvas(dict(img=np.zeros((2, 2, 3)))) is None
    assert 'ZoomOutCanvas' in repr(canvas)
