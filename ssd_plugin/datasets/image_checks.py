"""Image files judged as the training loader will see them: what is wrong with each, and why.

mmcv's ``LoadImageFromFile`` decodes with OpenCV, which says nothing useful about a bad file: an
empty one raises ``cv2.error ... !buf.empty()``, an undecodable one ``failed to load image``, a
truncated JPEG fails the same way (OpenCV 5) or decodes with its missing rows grey (OpenCV 4),
a 16-bit PNG is cut to 8 bits and an EXIF orientation is applied, turning the image under
boxes drawn on the stored pixels.
These functions name the problem: :func:`empty_or_missing` at dataset load (one ``stat`` per
file), :func:`decode_failure` when loading failed, :func:`image_problems` for a full check
(``tools/analysis/check_dataset.py``).
"""

import io
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmengine import fileio

__all__ = ['empty_or_missing', 'decode_failure', 'truncation', 'exif_orientation',
           'image_problems']  # fmt: skip

_EXIF_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height (a quarter turn)
_JPEG_START, _JPEG_END = b'\xff\xd8', b'\xff\xd9'
_PNG_START, _PNG_END = b'\x89PNG\r\n\x1a\n', b'IEND\xaeB`\x82'


def empty_or_missing(paths: Sequence[str]) -> Tuple[List[str], List[str]]:
    """The local ``paths`` that do not exist, and those that are empty (0 bytes)."""
    missing, empty = [], []
    for path in paths:
        if not osp.isfile(path):
            missing.append(path)
        elif osp.getsize(path) == 0:
            empty.append(path)
    return missing, empty


def truncation(data: bytes) -> Optional[str]:
    """Why a JPEG or PNG file's bytes end early (None: complete, or another format).

    OpenCV 4 decodes a truncated JPEG without an error (the missing rows grey) and OpenCV 5
    fails without a reason, so the end marker is what tells: JPEG's EOI (trailing zero padding
    allowed), PNG's IEND chunk.
    """
    if data.startswith(_JPEG_START) and not data.rstrip(b'\0').endswith(_JPEG_END):
        return 'truncated JPEG (no end-of-image marker FFD9 at the end)'
    if data.startswith(_PNG_START) and not data.endswith(_PNG_END):
        return 'truncated PNG (no IEND chunk at the end)'
    return None


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1-8) of an encoded image; 1 (as stored) when it has none."""
    from PIL import Image  # reads the header only

    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # not readable by Pillow (its decode failure is reported elsewhere)
        return 1


def _pillow_reason(data: bytes) -> Optional[str]:
    """Pillow's error decoding ``data`` (OpenCV gives none), or None if Pillow decodes it."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception as e:
        return f'{type(e).__name__}: {e}'
    return None


def decode_failure(path: str, backend_args: Optional[dict] = None) -> Optional[str]:
    """Why the image file at ``path`` cannot be decoded as mmcv loads it; None if it can.

    The reason is the read error, the file's size (empty), a truncation, or the decoder's own
    words (Pillow's: OpenCV's ``imdecode`` returns nothing). Used when loading failed, to name
    the file and the reason in one error (a file OpenCV decodes is not the cause: None).
    """
    try:
        data = fileio.get(path, backend_args=backend_args)
    except Exception as e:
        return f'cannot be read ({type(e).__name__}: {e})'
    if not data:
        return 'the file is empty (0 bytes)'
    buf = np.frombuffer(data, np.uint8)
    if cv2.imdecode(buf, cv2.IMREAD_COLOR) is not None:
        return None
    reason = truncation(data) or _pillow_reason(data) or 'a format OpenCV does not read'
    return f'OpenCV cannot decode it: {reason}'


def image_problems(path: str, ann_size: Optional[Tuple[int, int]] = None,
                   backend_args: Optional[dict] = None) -> List[str]:  # fmt: skip
    """Every problem of one image file, decoded in full once.

    Args:
        path: The image file.
        ann_size: ``(width, height)`` the annotation gives the image, or None.
        backend_args: mmengine file backend arguments.

    Returns:
        Problems, e.g. ``['truncated JPEG (...)']``; empty when the file is fine. Reported:
        unreadable or missing, empty, truncated JPEG/PNG, undecodable, a depth other than 8
        bits per channel, an EXIF quarter turn whose annotation has the stored (unturned) size
        (its boxes are on the stored pixels, but the loader turns the image), and a decoded size
        (after the EXIF turn) other than the annotation's.
    """
    try:
        data = fileio.get(path, backend_args=backend_args)
    except Exception as e:
        return [f'cannot be read ({type(e).__name__}: {e})']
    if not data:
        return ['empty file (0 bytes)']
    problems = []
    cut = truncation(data)
    if cut:
        problems.append(cut)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # no EXIF turn
    if img is None:
        reason = _pillow_reason(data) if not cut else None
        return problems + [f'cannot be decoded by OpenCV{f" ({reason})" if reason else ""}']
    if img.dtype != np.uint8:
        bits = img.dtype.itemsize * 8
        problems.append(
            f'unsupported depth: {bits}-bit {img.dtype} samples (the loader decodes 8 bits per '
            f'channel and drops the rest); convert it to 8 bits'
        )
    stored = (img.shape[1], img.shape[0])
    orientation = exif_orientation(data)
    loaded = stored[::-1] if orientation in _TURNED else stored
    if ann_size is None:
        return problems
    ann_size = (int(ann_size[0]), int(ann_size[1]))
    if orientation in _TURNED and ann_size == stored != loaded:
        problems.append(
            f'EXIF orientation {orientation}: the loader turns it to {loaded[0]}x{loaded[1]}, '
            f'but its annotation has the stored size {stored[0]}x{stored[1]} (boxes in the '
            f'stored orientation); save the pixels turned, without the EXIF tag'
        )
    elif ann_size != loaded:
        problems.append(f'size {loaded[0]}x{loaded[1]} (as loaded) but the annotation says '
                        f'{ann_size[0]}x{ann_size[1]}')  # fmt: skip
    return problems
