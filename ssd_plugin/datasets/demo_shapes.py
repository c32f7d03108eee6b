"""Deterministic COCO-format "shapes" detection dataset for the demo and the tests.

Each image has a textured background (muted colour field, faint stripes, grain, clutter lines)
and 1 to ``max_objects`` filled shapes of the classes in :data:`DEMO_CLASSES`. Each class has a
typical hue (its :data:`DEMO_PALETTE` colour, +-10 degrees, any saturation and brightness) and an
outline that is stretched and rotated at random. Object sizes (the longer side of the box) are
uniform in ``size_range`` times the image side, so small and large default boxes all get work.
Later shapes may partly cover earlier ones; a placement that would leave any shape less than
``min_visible`` of its area visible is re-drawn. Boxes are the extent of the *visible* pixels, as
in COCO.

Every image is drawn from its own generator seeded with ``(seed, split, index)``: the same
arguments give byte-identical files, and image ``i`` does not depend on how many images are
asked for.
"""

import math
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from .coco_writer import write_coco

__all__ = ['DEMO_CLASSES', 'DEMO_PALETTE', 'render_image', 'make_split', 'make_demo_dataset']

DEMO_CLASSES = ('circle', 'square', 'triangle', 'star', 'cross')
DEMO_PALETTE = [(220, 20, 60), (0, 130, 200), (60, 180, 75), (245, 130, 48), (145, 30, 180)]

_SPLIT_IDS = {'train': 0, 'val': 1}
_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point vertices: 1/16 px precision


def _on_circle(num: int, start: float, radius=1.0) -> np.ndarray:
    """``num`` points (num, 2) evenly spaced on a circle, the first at angle ``start``."""
    angles = start + 2 * np.pi * np.arange(num) / num
    return np.asarray(radius)[..., None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _unit_outlines() -> Dict[str, np.ndarray]:
    """Vertices (K, 2) of each class's outline around the origin, radius about 1."""
    a = 0.33  # half the width of a cross's arm
    cross = [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a),
             (-1, a), (-1, -a), (-a, -a)]  # fmt: skip
    return {
        'circle': _on_circle(64, 0.0),
        'square': np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=np.float64),
        'triangle': _on_circle(3, -np.pi / 2),
        'star': _on_circle(10, -np.pi / 2, radius=np.tile([1.0, 0.42], 5)),
        'cross': np.array(cross, dtype=np.float64),
    }


_OUTLINES = _unit_outlines()


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f'{name} must be a positive integer, got {value!r}')


def _check_args(
    image_size: int, size_range: Sequence[float], max_objects: int, min_visible: float
) -> None:
    _check_positive_int('max_objects', max_objects)
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ValueError(f'image_size must be an integer, got {image_size!r}')
    if image_size < 64:
        raise ValueError(f'image_size must be at least 64 pixels, got {image_size}')
    if len(size_range) != 2 or not 0 < size_range[0] <= size_range[1] <= 1:
        raise ValueError(
            f'size_range must be (low, high) with 0 < low <= high <= 1, got {size_range!r}'
        )
    if size_range[0] * image_size < 2:
        raise ValueError(
            f'size_range[0] * image_size must be at least 2 pixels, got '
            f'{size_range[0]} * {image_size}'
        )
    if not 0 < min_visible <= 1:
        raise ValueError(f'min_visible must be in (0, 1], got {min_visible!r}')


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float32 (size, size, 3) textured background in [0, 255].

    A muted colour field (blobs pulled towards grey), faint stripes, grain and a few thin clutter
    lines: texture everywhere, but the saturated shapes on top stay the most salient things.
    """
    grid = int(rng.integers(2, 7))
    coarse = rng.uniform(30, 225, (grid, grid, 3)).astype(np.float32)
    coarse = coarse.mean(2, keepdims=True) + rng.uniform(0.2, 0.5) * (
        coarse - coarse.mean(2, keepdims=True)
    )
    img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    # stripes sin(u x + v y + phase), separable into outer products of 1-D terms
    theta, freq = rng.uniform(0, np.pi), rng.uniform(2, 14)
    coord = np.arange(size, dtype=np.float32) * (2 * np.pi * freq / size)
    u, v = coord * np.cos(theta), coord * np.sin(theta) + rng.uniform(0, 2 * np.pi)
    stripes = np.outer(np.cos(v), np.sin(u)) + np.outer(np.sin(v), np.cos(u))
    img += stripes[..., None] * rng.uniform(0, 15)
    img += rng.uniform(2, 8) * rng.standard_normal((size, size, 1), dtype=np.float32)
    for _ in range(int(rng.integers(0, 4))):  # clutter that is no object
        p0, p1 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        thickness = int(rng.integers(1, max(2, size // 96)))
        cv2.line(img, tuple(map(int, p0)), tuple(map(int, p1)), colour, thickness, cv2.LINE_AA)
    return img


def _outline(rng: np.random.Generator, name: str, side: float, size: int) -> np.ndarray:
    """The class outline stretched, rotated, scaled to box side ``side`` and placed in the image."""
    pts = _OUTLINES[name] * np.sqrt(rng.uniform(0.75, 1.33)) ** np.array([1, -1])
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = pts @ rot.T
    pts *= side / (pts.max(0) - pts.min(0)).max()
    lo, hi = pts.min(0), pts.max(0)
    # keep the whole shape inside the image, one pixel away from the border
    offset = rng.uniform(1 - lo, size - 1 - hi)
    return pts + offset


def _object_colour(rng: np.random.Generator, label: int, under: np.ndarray) -> np.ndarray:
    """A BGR colour near the class's palette hue that stands out from the colour ``under`` it.

    Saturation and brightness vary freely and the hue by +-10 degrees: like real object
    classes, each has a typical colour, and the outline tells the rest.
    """
    red, green, blue = DEMO_PALETTE[label]
    hue = cv2.cvtColor(np.uint8([[[blue, green, red]]]), cv2.COLOR_BGR2HSV)[0, 0, 0]
    best, best_contrast = None, -1.0
    for _ in range(10):
        hsv = [(hue + rng.uniform(-5, 5)) % 180, rng.uniform(150, 255), rng.uniform(110, 255)]
        bgr = cv2.cvtColor(np.uint8([[hsv]]), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
        contrast = float(np.abs(bgr - under).sum())
        if contrast > 120:
            return bgr
        if contrast > best_contrast:
            best, best_contrast = bgr, contrast
    return best


def render_image(
    rng: np.random.Generator,
    image_size: int = 256,
    size_range: Tuple[float, float] = (0.04, 0.8),
    max_objects: int = 6,
    min_visible: float = 0.6,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw one image.

    Args:
        rng: The generator all randomness comes from.
        image_size: Side of the square image in pixels. Defaults to 256.
        size_range: Longest box side as a fraction of ``image_size``, uniform in this range.
            Defaults to (0.04, 0.8).
        max_objects: At most this many shapes (at least 1). Defaults to 6.
        min_visible: Least visible fraction of every shape's area. Defaults to 0.6.

    Returns:
        ``(image, boxes, labels, areas)``: uint8 BGR ``(S, S, 3)``; visible ``xyxy`` boxes
        ``(N, 4)`` in pixels (float32); labels ``(N,)`` in ``0..4`` (int64); visible areas in
        pixels ``(N,)`` (float32).
    """
    _check_args(image_size, size_range, max_objects, min_visible)
    size = image_size
    img = _background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int16)  # which shape each pixel shows
    rois: List[Tuple[int, int, int, int]] = []
    full_areas, visible, labels = np.zeros(0), np.zeros(0), []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(DEMO_CLASSES)))
        side = float(rng.uniform(*size_range)) * size
        placed = _place(rng, label, side, owner, visible, min_visible * full_areas)
        if placed is None:
            continue  # no placement keeps the shapes below visible enough: leave this one out
        (x0, y0, x1, y1), alpha, mask, covered = placed
        _paint(rng, img[y0:y1, x0:x1], label, alpha, mask)
        owner[y0:y1, x0:x1][mask] = len(labels)
        visible = np.append(visible - covered, mask.sum())
        full_areas = np.append(full_areas, mask.sum())
        rois.append((x0, y0, x1, y1))
        labels.append(label)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    boxes = _visible_boxes(owner, rois)
    return image, boxes, np.array(labels, dtype=np.int64), visible.astype(np.float32)


def _place(rng: np.random.Generator, label: int, side: float, owner: np.ndarray,
           visible: np.ndarray, least: np.ndarray, attempts: int = 10):  # fmt: skip
    """A placement of a new shape that leaves each earlier one ``least`` visible pixels.

    ``visible``: the pixels each earlier shape shows now.

    Returns ``(roi, alpha, mask, covered)``: the shape's ``xyxy`` pixel roi, its anti-aliased
    coverage (uint8) and mask there, and the pixels of each earlier shape it covers; or None
    when every attempt hides too much.
    """
    for _attempt in range(attempts):
        pts = _outline(rng, DEMO_CLASSES[label], side, owner.shape[0])
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
        fixed = np.round((pts - (x0, y0)) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        alpha = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        cv2.fillPoly(alpha, [fixed], 255, cv2.LINE_AA, _SUBPIXEL_BITS)
        mask = alpha > 127
        covered = np.bincount(owner[y0:y1, x0:x1][mask] + 1, minlength=len(visible) + 1)[1:]
        if mask.any() and np.all(visible - covered >= least):
            return (x0, y0, x1, y1), alpha, mask, covered
    return None


def _paint(rng: np.random.Generator, roi: np.ndarray, label: int, alpha: np.ndarray,
           mask: np.ndarray) -> None:  # fmt: skip
    """Blend the shape into ``roi`` (float32, in place) with its class colour, shaded."""
    colour = _object_colour(rng, label, roi[mask].mean(0))
    # linear shading across the shape, so its fill is not flat
    ramp = np.linspace(-1, 1, roi.shape[1], dtype=np.float32)
    shade = 1 + rng.uniform(-0.25, 0.25) * ramp
    fill = np.clip(colour * shade[None, :, None], 0, 255)
    a = (alpha.astype(np.float32) / 255)[..., None]
    roi[...] = roi * (1 - a) + fill * a


def _visible_boxes(owner: np.ndarray, rois: Sequence[Tuple[int, int, int, int]]) -> np.ndarray:
    """``(N, 4)`` float32 ``xyxy`` boxes of the pixels each shape shows (inside its roi)."""
    boxes = np.zeros((len(rois), 4), dtype=np.float32)
    for i, (x0, y0, x1, y1) in enumerate(rois):
        ys, xs = np.nonzero(owner[y0:y1, x0:x1] == i)
        boxes[i] = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
    return boxes


def make_split(
    out_dir: str,
    split: str,
    num_images: int,
    seed: int = 0,
    image_size: int = 256,
    size_range: Tuple[float, float] = (0.04, 0.8),
    max_objects: int = 6,
    min_visible: float = 0.6,
) -> str:
    """Write ``out_dir/<split>/*.jpg`` and ``out_dir/annotations/instances_<split>.json``.

    Args:
        out_dir: Dataset root.
        split: ``'train'`` or ``'val'``.
        num_images: Number of images (at least 1).
        seed: Base seed; image ``i`` uses ``np.random.default_rng([seed, split_id, i])``.
        image_size, size_range, max_objects, min_visible: See :func:`render_image`.

    Returns:
        str: The annotation file's path.
    """
    if split not in _SPLIT_IDS:
        raise ValueError(f'split must be one of {sorted(_SPLIT_IDS)}, got {split!r}')
    _check_positive_int('num_images', num_images)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'seed must be a non-negative integer, got {seed!r}')
    _check_args(image_size, size_range, max_objects, min_visible)
    img_dir = osp.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    digits = max(6, int(math.log10(num_images)) + 1)
    images, boxes, labels, areas = [], [], [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, _SPLIT_IDS[split], index])
        image, img_boxes, img_labels, img_areas = render_image(
            rng, image_size, size_range, max_objects, min_visible
        )
        file_name = f'{index:0{digits}d}.jpg'
        _write_jpeg(osp.join(img_dir, file_name), image)
        images.append((index + 1, file_name, image_size, image_size))
        boxes.append(img_boxes)
        labels.append(img_labels)
        areas.append(img_areas)
    image_ids = np.repeat([i for i, *_ in images], [len(lab) for lab in labels])
    xyxy = np.concatenate(boxes).astype(np.float64)
    return write_coco(
        osp.join(out_dir, 'annotations', f'instances_{split}.json'),
        images,
        categories=[(i + 1, name) for i, name in enumerate(DEMO_CLASSES)],
        image_ids=image_ids,
        category_ids=np.concatenate(labels) + 1,
        bboxes=np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1),
        areas=np.concatenate(areas).tolist(),
        supercategory='shape',
        info=dict(description='ssd_plugin demo shapes', split=split, seed=int(seed)),
    )


def _write_jpeg(path: str, image: np.ndarray) -> None:
    """``image`` as a JPEG file at quality 92 (OpenCV's encoder: the same bytes every run)."""
    ok, data = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError(f'OpenCV could not encode {osp.basename(path)} as JPEG')
    with open(path, 'wb') as f:
        f.write(data.tobytes())


def make_demo_dataset(
    out_dir: str,
    seed: int = 0,
    num_train: int = 2000,
    num_val: int = 200,
    image_size: int = 192,
    **kwargs,
) -> Dict[str, str]:
    """Write the train and val splits; returns ``{split: annotation file}``.

    Args:
        out_dir: Dataset root.
        seed: Base seed. Defaults to 0.
        num_train: Training images. Defaults to 2000.
        num_val: Validation images. Defaults to 200.
        image_size: Image side in pixels. Defaults to 192.
        **kwargs: ``size_range``, ``max_objects``, ``min_visible`` of :func:`render_image`.
    """
    _check_positive_int('num_train', num_train)
    _check_positive_int('num_val', num_val)
    return {
        split: make_split(out_dir, split, num, seed, image_size, **kwargs)
        for split, num in (('train', num_train), ('val', num_val))
    }
