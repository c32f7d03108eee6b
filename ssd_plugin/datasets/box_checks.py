"""Annotated boxes checked against their image: which are unusable, which need clipping.

The datasets (``CheckedCocoDataset``, ``CheckedVOCDataset``) run :func:`check_boxes` on every
box of an annotation file at load time, drop the unusable ones, clip the rest to the image, and
report both with :func:`describe_box_problems`, one message per file.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np

__all__ = [
    'BOX_OK', 'NON_FINITE', 'NON_POSITIVE', 'OUTSIDE', 'TOO_SMALL', 'CLIPPED', 'BOX_PROBLEMS',
    'check_boxes', 'describe_box_problems',
]  # fmt: skip

#: Codes :func:`check_boxes` gives each box; only ``CLIPPED`` boxes are kept (clipped).
BOX_OK, NON_FINITE, NON_POSITIVE, OUTSIDE, TOO_SMALL, CLIPPED = range(6)

#: What each problem code means, as the reports name it (``.format(min_size=...)``).
BOX_PROBLEMS = {
    NON_FINITE: 'non-finite coordinates',
    NON_POSITIVE: 'non-positive width or height',
    OUTSIDE: 'wholly outside the image',
    TOO_SMALL: 'narrower or shorter than {min_size:g} px (after clipping)',
    CLIPPED: 'partly outside the image (clipped to it)',
}


def check_boxes(
    boxes: np.ndarray, img_sizes: np.ndarray, min_size: float = 0.0
) -> Tuple[np.ndarray, np.ndarray]:
    """Classify ``xyxy`` boxes against their images and clip them to the image.

    A box is, by the first rule that applies: ``NON_FINITE`` (a NaN or inf coordinate),
    ``NON_POSITIVE`` (``x2 <= x1`` or ``y2 <= y1``), ``OUTSIDE`` (no overlap of positive area
    with ``[0, w] x [0, h]``), ``TOO_SMALL`` (the clipped box is narrower or shorter than
    ``min_size``), ``CLIPPED`` (it crosses the image border) or ``BOX_OK``.

    Args:
        boxes: ``(N, 4)`` ``x1, y1, x2, y2`` in pixels.
        img_sizes: ``(N, 2)`` width and height of each box's image.
        min_size: Least width and height of a kept box after clipping. Defaults to 0.

    Returns:
        ``(clipped, codes)``: ``(N, 4)`` float64 boxes clipped to their image (unchanged where
        that is impossible), and ``(N,)`` int8 codes.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    limits = np.tile(np.asarray(img_sizes, dtype=np.float64).reshape(-1, 2), 2)
    with np.errstate(invalid='ignore'):  # NaN compares False: NON_FINITE wins below anyway
        clipped = np.clip(boxes, 0, limits)
        size = clipped[:, 2:] - clipped[:, :2]
        rules = (
            (clipped != boxes).any(1),
            (size < min_size).any(1),
            (size <= 0).any(1),
            (boxes[:, 2:] <= boxes[:, :2]).any(1),
            ~np.isfinite(boxes).all(1),
        )
    codes = np.full(len(boxes), BOX_OK, dtype=np.int8)
    for code, hit in zip((CLIPPED, TOO_SMALL, OUTSIDE, NON_POSITIVE, NON_FINITE), rules):
        codes[hit] = code  # later rules take precedence
    dropped = (codes != BOX_OK) & (codes != CLIPPED)
    clipped[dropped] = boxes[dropped]
    return clipped, codes


def describe_box_problems(
    ann_file: str,
    num_boxes: int,
    dropped: Dict[str, List],
    fixed: Dict[str, List],
    shown: int = 10,
) -> str:
    """One message for all box problems of a file ('' when there are none).

    Args:
        ann_file: The annotation file the boxes come from.
        num_boxes: All boxes of the file.
        dropped: Annotation ids of the dropped boxes, by reason.
        fixed: Annotation ids of the boxes kept after a fix (e.g. clipping), by reason.
        shown: The first this many ids of each reason are named.

    Returns:
        e.g. ``"a.json: of its 50 boxes, 2 were dropped (1 non-finite coordinates: ids [4];
        1 ...) and 1 was kept after a fix (1 partly outside the image (clipped to it): ids
        [9]); 48 boxes remain"``.
    """

    def listing(groups: Dict[str, Sequence]) -> str:
        parts = []
        for reason, ids in groups.items():
            more = f' and {len(ids) - shown} more' if len(ids) > shown else ''
            parts.append(f'{len(ids)} {reason}: ids {list(ids[:shown])}{more}')
        return '; '.join(parts)

    dropped = {k: v for k, v in dropped.items() if len(v)}
    fixed = {k: v for k, v in fixed.items() if len(v)}
    num_dropped = sum(len(v) for v in dropped.values())
    num_fixed = sum(len(v) for v in fixed.values())
    parts = []
    if num_dropped:
        parts.append(f'{num_dropped} {_were(num_dropped)} dropped ({listing(dropped)})')
    if num_fixed:
        parts.append(f'{num_fixed} {_were(num_fixed)} kept after a fix ({listing(fixed)})')
    if not parts:
        return ''
    remain = num_boxes - num_dropped
    return f'{ann_file}: of its {num_boxes} boxes, {" and ".join(parts)}; {remain} boxes remain'


def _were(count: int) -> str:
    return 'was' if count == 1 else 'were'
