"""Bad image files named by their problem: the functions, against what the loader really does.

The reference for "as loaded" is mmcv's ``imfrombytes`` (what ``LoadImageFromFile`` runs) and
for the EXIF tag Pillow, which writes it.
"""

import cv2
import mmcv
import numpy as np
import pytest
from PIL import Image

from ssd_plugin.datasets.image_checks import (
    decode_failure,
    empty_or_missing,
    exif_orientation,
    image_problems,
    truncation,
)


def _image(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg(path, h=40, w=60, orientation=None) -> bytes:
    img = Image.fromarray(_image(h, w))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(path, format='JPEG', exif=exif)
    return path.read_bytes()


def test_good_files_have_no_problems(tmp_path):
    _jpeg(tmp_path / 'a.jpg')
    cv2.imwrite(str(tmp_path / 'b.png'), _image(30, 20))
    assert image_problems(str(tmp_path / 'a.jpg'), (60, 40)) == []
    assert image_problems(str(tmp_path / 'b.png'), (20, 30)) == []
    assert image_problems(str(tmp_path / 'b.png')) == []  # no annotation size: not compared
    assert decode_failure(str(tmp_path / 'a.jpg')) is None
    assert empty_or_missing([str(tmp_path / 'a.jpg')]) == ([], [])


def test_missing_and_empty(tmp_path):
    (tmp_path / 'empty.jpg').write_bytes(b'')
    paths = [str(tmp_path / n) for n in ('empty.jpg', 'gone.jpg')]
    assert empty_or_missing(paths) == ([paths[1]], [paths[0]])
    assert image_problems(paths[0]) == ['empty file (0 bytes)']
    assert image_problems(paths[1])[0].startswith('cannot be read (FileNotFoundError')
    assert decode_failure(paths[0]) == 'the file is empty (0 bytes)'
    # what mmcv's loader does with it: OpenCV's assertion, no file named
    with pytest.raises(cv2.error, match='buf.empty'):
        mmcv.imfrombytes(b'')


def test_truncated_jpeg_is_named(tmp_path):
    data = _jpeg(tmp_path / 'a.jpg', 64, 64)
    cut = data[: len(data) * 2 // 3]
    (tmp_path / 'cut.jpg').write_bytes(cut)
    assert truncation(data) is None and truncation(data + b'\0\0') is None  # padding is fine
    message = 'truncated JPEG (no end-of-image marker FFD9 at the end)'
    assert truncation(cut) == message
    # OpenCV 4 decodes it without an error (missing rows grey), OpenCV 5 fails without a reason
    decoded = mmcv.imfrombytes(cut) is not None
    problems = image_problems(str(tmp_path / 'cut.jpg'), (64, 64))
    assert problems == [message] + ([] if decoded else ['cannot be decoded by OpenCV'])
    reason = decode_failure(str(tmp_path / 'cut.jpg'))
    assert reason == (None if decoded else f'OpenCV cannot decode it: {message}')


def test_truncated_png_and_garbage_fail_with_the_decoders_reason(tmp_path):
    cv2.imwrite(str(tmp_path / 'a.png'), _image(32, 32))
    cut = (tmp_path / 'a.png').read_bytes()[:40]
    (tmp_path / 'cut.png').write_bytes(cut)
    (tmp_path / 'junk.jpg').write_bytes(b'not an image at all')
    assert truncation(cut) == 'truncated PNG (no IEND chunk at the end)'
    assert mmcv.imfrombytes(cut) is None  # the loader's "failed to load image"
    assert image_problems(str(tmp_path / 'cut.png')) == [
        'truncated PNG (no IEND chunk at the end)', 'cannot be decoded by OpenCV']  # fmt: skip
    assert decode_failure(str(tmp_path / 'cut.png')) == (
        'OpenCV cannot decode it: truncated PNG (no IEND chunk at the end)')  # fmt: skip
    # Pillow's words where OpenCV has none
    reason = 'UnidentifiedImageError: cannot identify image file'
    assert decode_failure(str(tmp_path / 'junk.jpg')).startswith(f'OpenCV cannot decode it: '
                                                                 f'{reason}')  # fmt: skip
    (problem,) = image_problems(str(tmp_path / 'junk.jpg'))
    assert problem.startswith(f'cannot be decoded by OpenCV ({reason}')


def test_sixteen_bit_depth(tmp_path):
    img = np.random.default_rng(0).integers(0, 65536, (8, 8, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / 'deep.png'), img)
    # the loader keeps the high byte only
    loaded = mmcv.imfrombytes((tmp_path / 'deep.png').read_bytes())
    assert loaded.dtype == np.uint8 and (loaded == img >> 8).all()
    (problem,) = image_problems(str(tmp_path / 'deep.png'), (8, 8))
    assert problem.startswith('unsupported depth: 16-bit uint16 samples')


@pytest.mark.parametrize('orientation', [3, 6, 8])
def test_exif_turn_against_the_annotation_size(tmp_path, orientation):
    path = tmp_path / 'turned.jpg'
    data = _jpeg(path, h=40, w=60, orientation=orientation)
    assert exif_orientation(data) == orientation
    loaded = mmcv.imfrombytes(data)  # OpenCV applies the EXIF orientation
    turned = orientation in (6, 8)
    assert loaded.shape[:2] == ((60, 40) if turned else (40, 60))
    stored_size, loaded_size = (60, 40), (loaded.shape[1], loaded.shape[0])
    assert image_problems(str(path), loaded_size) == []
    problems = image_problems(str(path), stored_size)
    if turned:
        assert problems == [
            f'EXIF orientation {orientation}: the loader turns it to 40x60, but its annotation '
            'has the stored size 60x40 (boxes in the stored orientation); save the pixels '
            'turned, without the EXIF tag'
        ]
    else:  # the same size either way: nothing to tell from the annotation
        assert problems == []


def test_size_other_than_the_annotation(tmp_path):
    _jpeg(tmp_path / 'a.jpg', h=40, w=60)
    assert image_problems(str(tmp_path / 'a.jpg'), (64, 40)) == [
        'size 60x40 (as loaded) but the annotation says 64x40'
    ]
