"""TRANSFORMS ``ZoomOut``: SSD's "expansion" augmentation (paper Sec. 3.6), painted lazily."""

import math
from numbers import Real
from typing import Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import autocast_box_type
from numpy import random

from .lazy_canvas import PendingCanvasResults, ZoomOutCanvas, fill_value

__all__ = ['ZoomOut']

# Per-pixel fields the lazy canvas does not carry; SSD is a box detector.
UNSUPPORTED_KEYS = ('gt_masks', 'gt_seg_map')


def reject_unsupported_keys(results: dict, transform: str, mmdet_alternative: str) -> None:
    """Raise NotImplementedError naming the first :data:`UNSUPPORTED_KEYS` field present."""
    for key in UNSUPPORTED_KEYS:
        if results.get(key) is not None:
            raise NotImplementedError(
                f'{transform} does not transform {key!r} (SSD is a box detector); use mmdet '
                f"'{mmdet_alternative}' for masks or segmentation maps"
            )


def check_fill(fill: Union[float, Sequence[float]]) -> None:
    """Raise a TypeError or ValueError naming ``fill`` unless it is finite numbers.

    The count is checked against the image's channels when an image arrives (only then known);
    here it must be one value or a flat, non-empty sequence.
    """
    values = (fill,) if isinstance(fill, Real) else fill
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(
            f'ZoomOut: fill must be a number or a sequence of numbers, got {type(fill).__name__}'
        )
    if len(values) == 0:
        raise ValueError('ZoomOut: fill has no values; give one per channel or a single value')
    for value in values:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(
                f'ZoomOut: fill values must be numbers, got {type(value).__name__} in {fill!r}'
            )
        if not math.isfinite(value):
            raise ValueError(f'ZoomOut: fill values must be finite, got {fill!r}')


@TRANSFORMS.register_module()
class ZoomOut(BaseTransform):
    """Place the image at random on a larger canvas filled with the mean ("zoom out").

    As Caffe's ``expand_param``: with probability ``prob`` the canvas side ratio is
    ``r ~ U(ratio_range)``, the canvas is ``int(h r) x int(w r)`` and the image's top-left corner
    is ``(int(U(0, W - w)), int(U(0, H - h)))``. Boxes are translated.

    The canvas is not painted here: ``results['img']`` becomes a
    :class:`~.lazy_canvas.ZoomOutCanvas` inside a :class:`~.lazy_canvas.PendingCanvasResults`.
    A following :class:`MinIoUCrop` paints only its crop window; any other reader of
    ``results['img']`` gets the whole painted canvas. Either way the pixels are those of the
    painted canvas.

    Required Keys:

    - img (np.uint8 or float, ``(h, w)`` or ``(h, w, c)``)
    - gt_bboxes (BaseBoxes[torch.float32]) (optional)

    Modified Keys:

    - img (a lazy canvas; reads as the painted canvas)
    - img_shape
    - gt_bboxes

    Args:
        prob: Probability of zooming out (Caffe and mmdet: 0.5).
        ratio_range: Canvas side ratio bounds ``(min, max)``, ``min >= 1`` (paper: up to 4, i.e.
            16x the area).
        fill: Canvas colour in the image's channel order (BGR after ``LoadImageFromFile``), one
            value per channel or a single value; rounded to the image dtype (Caffe's
            ``saturate_cast``; mmdet's ``Expand`` truncates). SSD uses the dataset mean. Its
            type is checked here (as torchvision's ``RandomZoomOut``), its count against the
            image's channels on each image.
    """

    def __init__(
        self,
        prob: float = 0.5,
        ratio_range: Tuple[float, float] = (1, 4),
        fill: Union[float, Sequence[float]] = (103.53, 116.28, 123.675),
    ) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'ZoomOut: prob must be in [0, 1], got {prob}')
        if len(ratio_range) != 2 or not 1 <= ratio_range[0] <= ratio_range[1]:
            raise ValueError(
                f'ZoomOut: ratio_range must be (min, max), 1 <= min <= max; got {ratio_range}'
            )
        self.prob = prob
        self.ratio_range = tuple(ratio_range)
        check_fill(fill)
        self.fill = fill

    @cache_randomness
    def _random_geometry(self, h: int, w: int) -> Tuple[bool, int, int, int, int]:
        """``(apply, canvas_h, canvas_w, left, top)``."""
        # Same draws, in the same order, as mmdet's Expand (and Caffe's expand_param).
        if random.uniform(0, 1) > self.prob:
            return False, h, w, 0, 0
        ratio = random.uniform(*self.ratio_range)
        left = int(random.uniform(0, w * ratio - w))
        top = int(random.uniform(0, h * ratio - h))
        return True, int(h * ratio), int(w * ratio), left, top

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Zoom out; see the class docstring."""
        reject_unsupported_keys(results, 'ZoomOut', 'Expand')
        img = results['img']
        fill_value(self.fill, 1 if img.ndim == 2 else img.shape[2], img.dtype)  # clear error now
        h, w = img.shape[:2]
        apply, canvas_h, canvas_w, left, top = self._random_geometry(h, w)
        if not apply:
            return results
        results = PendingCanvasResults(results)
        dict.__setitem__(
            results, 'img', ZoomOutCanvas(img, (canvas_h, canvas_w), (left, top), self.fill)
        )
        results['img_shape'] = (canvas_h, canvas_w)
        if results.get('gt_bboxes') is not None:
            results['gt_bboxes'].translate_([left, top])
        return results

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(prob={self.prob}, ratio_range={self.ratio_range}, '
            f'fill={self.fill})'
        )
