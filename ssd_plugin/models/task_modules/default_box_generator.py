"""TASK_UTILS ``DefaultBoxGenerator``: SSD default boxes in mmdet's prior-generator protocol."""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.registry import TASK_UTILS
from torch import Tensor

from ssd_plugin.functional.default_boxes import (
    caffe_sizes,
    grid_default_boxes,
    level_box_shapes,
    paper_sizes,
)

__all__ = ['DefaultBoxGenerator']

_Pair = Union[int, float, Tuple[float, float]]


def _pair(value: _Pair, key: str) -> Tuple[float, float]:
    pair = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if len(pair) != 2 or not all(v > 0 for v in pair):
        raise ValueError(f'{key} must be a positive number or a pair of them, got {value!r}')
    return pair


@TASK_UTILS.register_module()
class DefaultBoxGenerator:
    """SSD default boxes (paper Sec. 2.2, Eq. 4) in mmdet's prior-generator protocol.

    Boxes are ``xyxy`` input pixels, levels in order, location-major within a level, Caffe's order
    within a location (see :func:`~ssd_plugin.functional.default_boxes.level_box_shapes`).

    Args:
        input_size: Network input ``size`` or ``(h, w)``. Scales are fractions of ``min(h, w)``
            and the boxes stay square in pixels on non-square inputs, as in Caffe's ``min_dim``.
        strides: Per-level centre spacing in pixels (Caffe's ``step``), each ``s`` or
            ``(sw, sh)``. None derives ``(w / W_k, h / H_k)`` from the feature-map sizes at call
            time, the paper's ``(i + 0.5)/|f_k|``.
        ratios: Per-level aspect ratios (width / height); each ``r`` adds ``r`` and ``1/r``.
            Their count sets the number of levels.
        scale_range: ``(s_min, s_max)``.
        scale_mode: ``'caffe'``: the released integer-percent sizes (equal to mmdet's
            ``SSDAnchorGenerator``); ``'paper'``: Eq. 4 in floats.
        min_sizes: Explicit per-level ``s_k`` in pixels; overrides ``scale_range``/``scale_mode``.
        max_sizes: Explicit per-level ``s_{k+1}`` in pixels; required with ``min_sizes``.
        clip: Clamp the boxes to the image (torchvision/Caffe ``clip=True``); Caffe's SSD scripts
            and mmdet do not.
    """

    def __init__(
        self,
        input_size: Union[int, Tuple[int, int]] = 300,
        strides: Optional[Sequence[_Pair]] = (8, 16, 32, 64, 100, 300),
        ratios: Sequence[Sequence[float]] = ([2], [2, 3], [2, 3], [2, 3], [2], [2]),
        scale_range: Tuple[float, float] = (0.15, 0.9),
        scale_mode: str = 'caffe',
        min_sizes: Optional[Sequence[float]] = None,
        max_sizes: Optional[Sequence[float]] = None,
        clip: bool = False,
    ) -> None:
        self.input_size = tuple(int(v) for v in _pair(input_size, 'input_size'))
        num_levels = len(ratios)
        if num_levels == 0:
            raise ValueError('ratios must list the aspect ratios of at least one level')
        if strides is not None and len(strides) != num_levels:
            raise ValueError(
                f'strides has {len(strides)} levels but ratios has {num_levels}; they must match'
            )
        self.strides = None if strides is None else [_pair(s, 'strides') for s in strides]
        self.ratios = [list(r) for r in ratios]
        self.clip = clip

        if (min_sizes is None) != (max_sizes is None):
            raise ValueError('min_sizes and max_sizes must be given together')
        if min_sizes is None:
            base_size = min(self.input_size)
            if scale_mode == 'caffe':
                min_sizes, max_sizes = caffe_sizes(base_size, scale_range, num_levels)
            elif scale_mode == 'paper':
                min_sizes, max_sizes = paper_sizes(base_size, scale_range, num_levels)
            else:
                raise ValueError(f"scale_mode must be 'caffe' or 'paper', got {scale_mode!r}")
        for key, sizes in (('min_sizes', min_sizes), ('max_sizes', max_sizes)):
            if len(sizes) != num_levels:
                raise ValueError(
                    f'{key} has {len(sizes)} levels but ratios has {num_levels}; they must match'
                )
        for k, (lo, hi) in enumerate(zip(min_sizes, max_sizes)):
            if not 0 < lo < hi:
                raise ValueError(
                    f'level {k}: need 0 < min_sizes < max_sizes, got min {lo}, max {hi} '
                    '(check min_sizes/max_sizes or scale_range against input_size)'
                )
        self.min_sizes = [float(s) for s in min_sizes]
        self.max_sizes = [float(s) for s in max_sizes]
        self.box_shapes = [
            level_box_shapes(lo, hi, r)
            for lo, hi, r in zip(self.min_sizes, self.max_sizes, self.ratios)
        ]
        self._cache: Dict[tuple, List[Tensor]] = {}

    @property
    def num_levels(self) -> int:
        """Number of feature levels."""
        return len(self.box_shapes)

    @property
    def num_base_priors(self) -> List[int]:
        """Default boxes per location on each level (4 or 6 in SSD)."""
        return [len(s) for s in self.box_shapes]

    def _level_strides(self, featmap_sizes: Sequence[Tuple[int, int]]) -> List[Tuple[float, float]]:
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(
                f'got {len(featmap_sizes)} feature maps for a generator of {self.num_levels} levels'
            )
        if self.strides is not None:
            return self.strides
        h, w = self.input_size
        return [(w / fw, h / fh) for fh, fw in featmap_sizes]

    def grid_priors(
        self,
        featmap_sizes: Sequence[Tuple[int, int]],
        dtype: torch.dtype = torch.float32,
        device: Union[torch.device, str] = 'cuda',
    ) -> List[Tensor]:
        """Default boxes of every level, cached per (sizes, dtype, device); do not edit in place.

        Args:
            featmap_sizes: ``(H, W)`` of each level.
            dtype: Box dtype.
            device: Box device.

        Returns:
            One ``(H * W * k, 4)`` ``xyxy`` tensor per level.
        """
        sizes = tuple((int(h), int(w)) for h, w in featmap_sizes)
        key = (sizes, dtype, torch.device(device))
        if key not in self._cache:
            image_size = self.input_size if self.clip else None
            self._cache[key] = [
                grid_default_boxes(shapes, size, stride, image_size, dtype, device)
                for shapes, size, stride in zip(self.box_shapes, sizes, self._level_strides(sizes))
            ]
        return list(self._cache[key])

    def valid_flags(
        self,
        featmap_sizes: Sequence[Tuple[int, int]],
        pad_shape: Tuple[int, ...],
        device: Union[torch.device, str] = 'cuda',
    ) -> List[Tensor]:
        """Flags of the default boxes whose location lies on the unpadded image (mmdet semantics).

        Args:
            featmap_sizes: ``(H, W)`` of each level.
            pad_shape: ``(h, w, ...)`` of the image before batch padding.
            device: Flag device.

        Returns:
            One ``(H * W * k,)`` bool tensor per level.
        """
        flags = []
        for (fh, fw), (sw, sh), k in zip(
            featmap_sizes, self._level_strides(featmap_sizes), self.num_base_priors
        ):
            valid_h = min(int(-(-pad_shape[0] // sh)), fh)
            valid_w = min(int(-(-pad_shape[1] // sw)), fw)
            rows = torch.arange(fh, device=device) < valid_h
            cols = torch.arange(fw, device=device) < valid_w
            flags.append((rows[:, None] & cols[None, :]).reshape(-1, 1).expand(-1, k).reshape(-1))
        return flags

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(input_size={self.input_size}, strides={self.strides}, '
            f'ratios={self.ratios}, min_sizes={self.min_sizes}, max_sizes={self.max_sizes}, '
            f'clip={self.clip})'
        )
