"""TRANSFORMS ``PhotometricDistort``: SSD's colour distortion (paper Sec. 3.6), on uint8 LUTs.

Caffe's ``DistortImage`` (``im_transforms.cpp``), which works on uint8 images with OpenCV's
``convertTo`` (rounded, saturated): random brightness, then contrast either before or after the
HSV steps (saturation, hue), then an optional random channel order. Each step is a 256-entry
lookup table, so a step costs one ``cv2.LUT`` pass instead of mmdet's float32 round trips.
"""

from typing import Optional, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmdet.registry import TRANSFORMS
from numpy import random

__all__ = ['PhotometricDistort', 'affine_lut', 'hue_lut']

_LEVELS = np.arange(256, dtype=np.float64)


def affine_lut(brightness: Optional[float] = None, contrast: Optional[float] = None) -> np.ndarray:
    """uint8 table of ``saturate(round(saturate(round(v + brightness)) * contrast))``.

    Each step is rounded and clipped to ``[0, 255]`` as Caffe's ``convertTo`` on uint8 does, so
    values never wrap; a missing step is the identity. Also the saturation table (``contrast`` =
    the saturation factor, applied to the S plane).
    """
    levels = _LEVELS
    if brightness is not None:
        levels = np.clip(np.rint(levels + brightness), 0, 255)
    if contrast is not None:
        levels = np.clip(np.rint(levels * contrast), 0, 255)
    return levels.astype(np.uint8)


def hue_lut(degrees: float) -> np.ndarray:
    """uint8 table shifting OpenCV's full-range uint8 hue (``COLOR_BGR2HSV_FULL``) by ``degrees``.

    Hue is stored in 256 steps per turn (1.41 degrees each, finer than the 2-degree steps of
    ``COLOR_BGR2HSV``); the shift ``degrees * 256 / 360`` is added, rounded and wrapped modulo 256.
    """
    return np.mod(np.rint(_LEVELS + degrees * 256.0 / 360.0), 256).astype(np.uint8)


@TRANSFORMS.register_module()
class PhotometricDistort(BaseTransform):
    """Caffe SSD's photometric distortion on uint8 BGR images, each step with its own probability.

    Steps: brightness ``+U(-brightness_delta, brightness_delta)``; contrast
    ``*U(contrast_range)`` before the HSV steps with probability ``contrast_first_prob``, else
    after them; saturation ``*U(saturation_range)``; hue ``+U(-hue_delta, hue_delta)`` degrees
    (wrapped); random channel order. The image stays uint8: every step rounds and clips to
    ``[0, 255]`` (Caffe does the same; mmdet's ``PhotoMetricDistortion`` returns float32 without
    clipping, so its values can leave ``[0, 255]``).

    Quantisation: brightness and contrast are exact uint8 Caffe arithmetic. The HSV steps use
    OpenCV's uint8 full-range HSV: the hue shift has a 1.41 degree resolution and the BGR-HSV-BGR
    round trip moves pixel values by a few levels (more in dark pixels), as in Caffe, which also
    converts uint8 images. Caffe applies its ``hue_delta=18`` to OpenCV's 180-step hue (36
    degrees) without wrapping; here it is degrees, as the paper's code intends and mmdet does.

    Required Keys:

    - img (np.uint8, ``(h, w, 3)``)

    Modified Keys:

    - img (np.uint8)

    Args:
        brightness_delta: Max absolute brightness shift, in grey levels (Caffe: 32).
        contrast_range: Contrast factor bounds (Caffe: ``(0.5, 1.5)``).
        saturation_range: Saturation factor bounds (Caffe: ``(0.5, 1.5)``).
        hue_delta: Max absolute hue shift in degrees (paper's code: 18).
        brightness_prob: Probability of the brightness step (Caffe: 0.5).
        contrast_prob: Probability of the contrast step (Caffe: 0.5).
        saturation_prob: Probability of the saturation step (Caffe: 0.5).
        hue_prob: Probability of the hue step (Caffe: 0.5).
        channel_swap_prob: Probability of a random channel order. Default 0.0 as Caffe's
            ``ssd_pascal.py`` (``random_order_prob: 0.0``); mmdet uses 0.5.
        contrast_first_prob: Probability that contrast comes before the HSV steps (Caffe: 0.5).
    """

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: Tuple[float, float] = (0.5, 1.5),
        saturation_range: Tuple[float, float] = (0.5, 1.5),
        hue_delta: float = 18,
        brightness_prob: float = 0.5,
        contrast_prob: float = 0.5,
        saturation_prob: float = 0.5,
        hue_prob: float = 0.5,
        channel_swap_prob: float = 0.0,
        contrast_first_prob: float = 0.5,
    ) -> None:
        probs = dict(
            brightness_prob=brightness_prob,
            contrast_prob=contrast_prob,
            saturation_prob=saturation_prob,
            hue_prob=hue_prob,
            channel_swap_prob=channel_swap_prob,
            contrast_first_prob=contrast_first_prob,
        )
        for name, value in probs.items():
            if not 0 <= value <= 1:
                raise ValueError(f'PhotometricDistort: {name} must be in [0, 1], got {value}')
        for name, (low, high) in (
            ('contrast_range', contrast_range),
            ('saturation_range', saturation_range),
        ):
            if not 0 <= low <= high:
                raise ValueError(
                    f'PhotometricDistort: {name} must satisfy 0 <= min <= max, got {(low, high)}'
                )
        if brightness_delta < 0 or hue_delta < 0:
            raise ValueError('PhotometricDistort: brightness_delta and hue_delta must be >= 0')
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta
        self.probs = probs

    @cache_randomness
    def _random_params(self) -> dict:
        """Every step's factor, or ``None`` when the step is skipped; and the channel order."""
        p = self.probs
        # Draw everything every time so the RNG stream does not depend on which steps fire.
        flags = random.uniform(0, 1, size=6)
        values = (
            random.uniform(-self.brightness_delta, self.brightness_delta),
            random.uniform(*self.contrast_range),
            random.uniform(*self.saturation_range),
            random.uniform(-self.hue_delta, self.hue_delta),
        )
        order = random.permutation(3)
        return dict(
            brightness=values[0] if flags[0] < p['brightness_prob'] else None,
            contrast=values[1] if flags[1] < p['contrast_prob'] else None,
            saturation=values[2] if flags[2] < p['saturation_prob'] else None,
            hue=values[3] if flags[3] < p['hue_prob'] else None,
            order=order if flags[4] < p['channel_swap_prob'] else None,
            contrast_first=bool(flags[5] < p['contrast_first_prob']),
        )

    def transform(self, results: dict) -> dict:
        """Distort ``results['img']`` in colour; see the class docstring."""
        img = results['img']
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                'PhotometricDistort expects a uint8 (h, w, 3) BGR image, got '
                f'{img.dtype} {img.shape} (image {results.get("img_path", "?")}); load with '
                "color_type='color' and place it before any float conversion"
            )
        params = self._random_params()
        first = params['contrast'] if params['contrast_first'] else None
        last = None if params['contrast_first'] else params['contrast']
        if params['brightness'] is not None or first is not None:
            img = cv2.LUT(img, affine_lut(params['brightness'], first))
        if params['hue'] is not None or params['saturation'] is not None:
            # Per-plane LUTs on the planes that change: cheaper than a 3-channel LUT.
            hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV_FULL))
            if params['hue'] is not None:
                hue = cv2.LUT(hue, hue_lut(params['hue']))
            if params['saturation'] is not None:
                sat = cv2.LUT(sat, affine_lut(None, params['saturation']))
            img = cv2.cvtColor(cv2.merge([hue, sat, val]), cv2.COLOR_HSV2BGR_FULL)
        if last is not None:
            img = cv2.LUT(img, affine_lut(None, last))
        if params['order'] is not None:
            planes = cv2.split(img)  # split + merge: about 7x faster than numpy fancy indexing
            img = cv2.merge([planes[c] for c in params['order']])
        results['img'] = img
        return results

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v}' for k, v in self.probs.items())
        return (
            f'{self.__class__.__name__}(brightness_delta={self.brightness_delta}, '
            f'contrast_range={self.contrast_range}, saturation_range={self.saturation_range}, '
            f'hue_delta={self.hue_delta}, {args})'
        )
