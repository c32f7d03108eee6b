"""TASK_UTILS ``DefaultBoxGenerator``: SSD default boxes in mmdet's prior-generator protocol."""

import math
from numbers import Real
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.registry import TASK_UTILS
from torch import Tensor

from ssd_plugin.functional.default_boxes import (
    caffe_sizes,
    grid_default_boxes,
    level_box_shapes,
    paper_sizes,
    relative_box_shapes,
    torchvision_scales,
)

__all__ = ['DefaultBoxGenerator']

_Pair = Union[int, float, Tuple[float, float]]
_Sizes = Union[float, Sequence[float]]


def _fmt_pair(stride: Tuple[float, float]) -> str:
    """A stride as a config writes it: ``s`` when square, else ``(sw, sh)``; integers as such."""
    sw, sh = (int(v) if float(v).is_integer() else round(v, 3) for v in stride)
    return f'{sw}' if sw == sh else f'({sw}, {sh})'


def _pair(value: _Pair, key: str) -> Tuple[float, float]:
    pair = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if len(pair) != 2 or not all(v > 0 for v in pair):
        raise ValueError(f'{key} must be a positive number or a pair of them, got {value!r}')
    return pair


def _size_list(value: Optional[_Sizes]) -> List[Optional[float]]:
    """One level's min or max sizes as a list (None: no max size on that level)."""
    if value is None:
        return [None]
    return [float(value)] if isinstance(value, Real) else [float(v) for v in value]


@TASK_UTILS.register_module()
class DefaultBoxGenerator:
    """SSD default boxes (paper Sec. 2.2, Eq. 4) in mmdet's prior-generator protocol.

    A superset of Caffe's ``PriorBox`` layers, mmdet's ``SSDAnchorGenerator`` and torchvision's
    ``DefaultBoxGenerator``. Boxes are ``xyxy`` input pixels, levels in order, location-major
    within a level, Caffe's order within a location (see
    :func:`~ssd_plugin.functional.default_boxes.level_box_shapes`).

    Two ways to size the boxes:

    - **Pixel sizes** (Caffe, mmdet, the paper): ``scale_mode='caffe'`` or ``'paper'`` from
      ``scale_range``, or explicit ``min_sizes``/``max_sizes``. Sizes are pixels, fractions refer
      to ``min(h, w)``, boxes are square in pixels on non-square inputs (Caffe's ``min_dim``).
      ``clip=True`` clamps the box corners to the image (Caffe's ``clip``).
    - **Relative scales** (torchvision): explicit ``scales`` or ``scale_mode='torchvision'``
      (from ``scale_range`` as torchvision's ``min_ratio``/``max_ratio``). Widths are fractions of
      the image width and heights of the image height, ratios are not de-duplicated, and
      ``clip=True`` clamps those fractions to ``[0, 1]`` as torchvision does (its default is
      ``clip=True``; write it explicitly here). Equal to torchvision's boxes times ``(w, h)``.

    Args:
        input_size: Network input ``size`` or ``(h, w)``.
        strides: Per-level centre spacing in pixels (Caffe's ``step``, torchvision's ``steps``),
            each ``s`` or ``(sw, sh)``. None derives ``(w / W_k, h / H_k)`` from the feature-map
            sizes at call time, the paper's ``(i + 0.5)/|f_k|``.
        ratios: Per-level aspect ratios (width / height); each ``r`` adds ``r`` and, with
            ``flip``, ``1/r``. In pixel mode a listed 1 or a repeat adds nothing (Caffe). Their
            count sets the number of levels.
        scale_range: ``(s_min, s_max)``.
        scale_mode: ``'caffe'``: the released integer-percent sizes (equal to mmdet's
            ``SSDAnchorGenerator``); ``'paper'``: Eq. 4 in floats; ``'torchvision'``: Eq. 4 plus
            a last scale of 1.0, relative scales.
        min_sizes: Explicit per-level ``s_k`` in pixels, each a number or a list (Caffe's
            ``PriorBox`` with several ``min_size``); overrides ``scale_range``/``scale_mode``.
        max_sizes: Per-level ``s_{k+1}`` in pixels, required with ``min_sizes``: each a number,
            a list with one max per min size, or None for a level without the ``sqrt(min*max)``
            square (Caffe's ``PriorBox`` without ``max_size``).
        scales: Explicit relative scales ``s_1 .. s_{m+1}`` (torchvision's ``scales``);
            overrides ``scale_range``/``scale_mode``.
        flip: Add ``1/r`` for each ratio ``r`` (Caffe's ``flip``); one bool or one per level.
        clip: Clamp as Caffe (pixel mode: box corners to the image) or as torchvision (relative
            mode: widths and heights to the image's); Caffe's SSD scripts and mmdet do not clip.
    """

    def __init__(
        self,
        input_size: Union[int, Tuple[int, int]] = 300,
        strides: Optional[Sequence[_Pair]] = (8, 16, 32, 64, 100, 300),
        ratios: Sequence[Sequence[float]] = ([2], [2, 3], [2, 3], [2, 3], [2], [2]),
        scale_range: Tuple[float, float] = (0.15, 0.9),
        scale_mode: str = 'caffe',
        min_sizes: Optional[Sequence[_Sizes]] = None,
        max_sizes: Optional[Sequence[Optional[_Sizes]]] = None,
        scales: Optional[Sequence[float]] = None,
        flip: Union[bool, Sequence[bool]] = True,
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
        flips = [flip] * num_levels if isinstance(flip, bool) else list(flip)
        if len(flips) != num_levels:
            raise ValueError(f'flip has {len(flips)} levels but ratios has {num_levels}')
        self.flip = flips
        self.clip = clip
        if scale_mode not in ('caffe', 'paper', 'torchvision'):
            raise ValueError(
                f"scale_mode must be 'caffe', 'paper' or 'torchvision', got {scale_mode!r}"
            )
        if scales is not None and min_sizes is not None:
            raise ValueError('give either scales (relative) or min_sizes/max_sizes (pixels)')
        if min_sizes is None and max_sizes is not None:
            raise ValueError('max_sizes needs min_sizes')
        self.scales: Optional[List[float]] = None
        self.min_sizes: Optional[list] = None
        self.max_sizes: Optional[list] = None
        if scales is not None or (min_sizes is None and scale_mode == 'torchvision'):
            if scales is None:
                scales = torchvision_scales(scale_range, num_levels)
            self.box_shapes = self._relative_shapes(scales)
        else:
            self.box_shapes = self._pixel_shapes(scale_range, scale_mode, min_sizes, max_sizes)
        self._cache: Dict[tuple, List[Tensor]] = {}

    def _relative_shapes(self, scales: Sequence[float]) -> List[Tensor]:
        if len(scales) != self.num_levels + 1 or not all(s > 0 for s in scales):
            raise ValueError(
                f'scales must be {self.num_levels + 1} positive fractions (one per '
                f'level plus the last one), got {list(scales)!r}'
            )
        self.scales = [float(s) for s in scales]
        return [
            relative_box_shapes(lo, hi, r, self.input_size, self.clip, f)
            for lo, hi, r, f in zip(self.scales, self.scales[1:], self.ratios, self.flip)
        ]

    def _pixel_shapes(
        self,
        scale_range: Tuple[float, float],
        scale_mode: str,
        min_sizes: Optional[Sequence[_Sizes]],
        max_sizes: Optional[Sequence[Optional[_Sizes]]],
    ) -> List[Tensor]:
        num_levels = self.num_levels
        if min_sizes is not None and max_sizes is None:
            raise ValueError(
                'max_sizes must be given with min_sizes: one entry per level, None for a level '
                'without the sqrt(min*max) square'
            )
        if min_sizes is None:
            base_size = min(self.input_size)
            if scale_mode == 'caffe':
                min_sizes, max_sizes = caffe_sizes(base_size, scale_range, num_levels)
            else:
                min_sizes, max_sizes = paper_sizes(base_size, scale_range, num_levels)
        for key, sizes in (('min_sizes', min_sizes), ('max_sizes', max_sizes)):
            if len(sizes) != num_levels:
                raise ValueError(
                    f'{key} has {len(sizes)} levels but ratios has {num_levels}; they must match'
                )
        self.min_sizes, self.max_sizes = [], []
        for k, (lo, hi) in enumerate(zip(min_sizes, max_sizes)):
            los, his = _size_list(lo), _size_list(hi)
            if his == [None]:
                his = [None] * len(los)
            if not los or len(his) != len(los):
                raise ValueError(
                    f'level {k}: {len(his)} max_sizes for {len(los)} min_sizes; give one max '
                    'size per min size or None'
                )
            for m, big in zip(los, his):
                if m is None or not m > 0 or (big is not None and not big > m):
                    raise ValueError(
                        f'level {k}: need 0 < min_sizes < max_sizes, got min {lo}, max {hi} '
                        '(check min_sizes/max_sizes or scale_range against input_size)'
                    )
            self.min_sizes.append(los[0] if isinstance(lo, Real) else los)
            self.max_sizes.append(his[0] if hi is None or isinstance(hi, Real) else his)
        return [
            level_box_shapes(lo, hi, r, f)
            for lo, hi, r, f in zip(self.min_sizes, self.max_sizes, self.ratios, self.flip)
        ]

    @property
    def num_levels(self) -> int:
        """Number of feature levels (set by ``ratios``)."""
        return len(self.ratios)

    @property
    def num_base_priors(self) -> List[int]:
        """Default boxes per location on each level (4 or 6 in SSD)."""
        return [len(s) for s in self.box_shapes]

    def expected_featmap_sizes(self, input_shape: Sequence[int]) -> Optional[List[Tuple[int, int]]]:
        """``(H, W)`` per level that the strides place on an ``(h, w)`` input, ``ceil(h / s)``.

        A grid of stride ``s`` covers the input with ``ceil(h / s)`` cells: with fewer its far
        side gets no default box, with more the extra cells are centred off the image (at
        ``(H - 0.5) * s > h``). None with ``strides=None``: centres follow any map's size.
        """
        if self.strides is None:
            return None
        h, w = (int(v) for v in input_shape[:2])
        # rounded first: a stride written as input / cells (320 / 3) must give those cells
        return [
            (math.ceil(round(h / sh, 6)), math.ceil(round(w / sw, 6))) for sw, sh in self.strides
        ]

    def check_featmap_sizes(
        self, featmap_sizes: Sequence[Tuple[int, int]], input_shape: Sequence[int]
    ) -> None:
        """Raise if the feature maps are not the levels these default boxes are laid out for.

        Args:
            featmap_sizes: ``(H, W)`` of each level the network gives.
            input_shape: ``(h, w)`` of the network input they come from.

        Raises:
            ValueError: Another level count, or (with ``strides``) a level whose size is not
                :meth:`expected_featmap_sizes`: that level's default boxes would be centred
                off the image or leave part of it without any. The message names each such
                level, both sizes and the settings to change.
        """
        sizes = [(int(h), int(w)) for h, w in featmap_sizes]
        h, w = (int(v) for v in input_shape[:2])
        if len(sizes) != self.num_levels:
            raise ValueError(
                f'the network gives {len(sizes)} feature maps {sizes} on a {h}x{w} input but '
                f'model.bbox_head.prior_generator has {self.num_levels} levels (one per entry '
                "of ratios and strides); make them agree (the neck's num_outs, the generator's "
                "ratios/strides and the head's in_channels)"
            )
        expected = self.expected_featmap_sizes((h, w))
        if expected is None or expected == sizes:
            return
        wrong = [i for i, (got, want) in enumerate(zip(sizes, expected)) if got != want]
        levels = '; '.join(
            f'level {i}: the network gives {sizes[i][0]}x{sizes[i][1]}, stride '
            f'{_fmt_pair(self.strides[i])} expects {expected[i][0]}x{expected[i][1]}'
            for i in wrong
        )
        fitted = [
            _fmt_pair((w / fw, h / fh)) if i in wrong else _fmt_pair(s)
            for i, ((fh, fw), s) in enumerate(zip(sizes, self.strides))
        ]
        raise ValueError(
            f'feature maps do not match the default boxes on a {h}x{w} input ({levels}): those '
            'default boxes would be centred off the image or leave part of it uncovered. Set '
            f'model.bbox_head.prior_generator.strides=({", ".join(fitted)}) (input / map size), '
            f'or strides=None, or change the network (neck strides/paddings/num_outs) or '
            f'input_size {self.input_size[0]}x{self.input_size[1]} so that each level is '
            'ceil(input / stride) cells'
        )

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
            # Relative mode clamped the box sizes already (torchvision's clip).
            image_size = self.input_size if self.clip and self.scales is None else None
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
            f'scales={self.scales}, flip={self.flip}, clip={self.clip})'
        )
