"""Default boxes (priors) of SSD: scales, per-level sizes, base boxes and dense grids.

Paper (Liu et al., ECCV 2016, Sec. 2.2, Eq. 4): for ``m`` feature maps the scale of level ``k`` is
``s_k = s_min + (s_max - s_min) (k - 1) / (m - 1)``; each location gets boxes of width
``s_k sqrt(a)`` and height ``s_k / sqrt(a)`` for the aspect ratios ``a`` (width / height), plus an
extra square of scale ``s'_k = sqrt(s_k s_{k+1})``; box centres are ``((i + 0.5) / |f_k|,
(j + 0.5) / |f_k|)``. The released Caffe code (``ssd_pascal.py``, ``prior_box_layer.cpp``) uses a
different integer-percent schedule instead, which mmdet's ``SSDAnchorGenerator`` reproduces;
torchvision's ``DefaultBoxGenerator`` uses Eq. 4 with a last scale of 1.0 and sizes relative to
each image axis. All three are implemented here. Boxes are in input-image pixels (``xyxy``), the
convention of mmdet.
"""

import math
from numbers import Real
from typing import List, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    'paper_scales',
    'paper_sizes',
    'caffe_sizes',
    'torchvision_scales',
    'expand_aspect_ratios',
    'level_box_shapes',
    'relative_box_shapes',
    'grid_default_boxes',
]

# First-level (conv4_3) percents of the released settings, keyed by (input size, s_min percent).
# The rule used for every other setting, (s_min% // 2, s_min%), gives three of these four; the
# released SSD512-COCO model uses 4 % instead of 5 %.
_CAFFE_FIRST_LEVEL = {
    (300, 15): (7, 15),
    (300, 20): (10, 20),
    (512, 10): (4, 10),
    (512, 15): (7, 15),
}


def _check_scale_range(scale_range: Sequence[float]) -> Tuple[float, float]:
    if len(scale_range) != 2:
        raise ValueError(f'scale_range must be (s_min, s_max), got {scale_range!r}')
    s_min, s_max = float(scale_range[0]), float(scale_range[1])
    if not 0 < s_min < s_max:
        raise ValueError(f'scale_range must satisfy 0 < s_min < s_max, got {scale_range!r}')
    return s_min, s_max


def _check_eq4_args(scale_range: Sequence[float], num_levels: int) -> Tuple[float, float]:
    if num_levels < 1:
        raise ValueError(f'num_levels must be >= 1, got {num_levels}')
    return _check_scale_range(scale_range)


def paper_scales(scale_range: Sequence[float], num_levels: int) -> List[float]:
    """Scales ``s_1 .. s_{m+1}`` of the paper's Eq. 4.

    ``s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)`` for ``k = 1..m``. The extra square of the last
    level needs ``s_{m+1}``, which the paper leaves undefined; Eq. 4 is extrapolated one step
    (``s_max + (s_max - s_min)/(m - 1)``, e.g. 1.04 for SSD300), as the Caffe schedule also runs
    one step past ``s_max`` (315 px at 300). torchvision appends 1.0 instead. With one level,
    ``s_1 = s_min`` and ``s_2 = s_max``.

    Args:
        scale_range: ``(s_min, s_max)`` as fractions of the input size, ``0 < s_min < s_max``.
        num_levels: Number of feature maps ``m >= 1``.

    Returns:
        ``m + 1`` scales.
    """
    s_min, s_max = _check_eq4_args(scale_range, num_levels)
    if num_levels == 1:
        return [s_min, s_max]
    step = (s_max - s_min) / (num_levels - 1)
    return [s_min + step * k for k in range(num_levels + 1)]


def paper_sizes(
    base_size: float, scale_range: Sequence[float], num_levels: int
) -> Tuple[List[float], List[float]]:
    """Per-level min and max box sizes in pixels from the paper's Eq. 4 (no truncation).

    Args:
        base_size: Pixel size the scales are fractions of (``min(h, w)`` of the input).
        scale_range: ``(s_min, s_max)``.
        num_levels: Number of feature maps ``m``.

    Returns:
        ``(min_sizes, max_sizes)`` with ``min_sizes[k] = s_k * base_size`` and
        ``max_sizes[k] = s_{k+1} * base_size`` (so the extra square is ``sqrt(s_k s_{k+1})``).
    """
    scales = paper_scales(scale_range, num_levels)
    return [s * base_size for s in scales[:-1]], [s * base_size for s in scales[1:]]


def caffe_sizes(
    base_size: int, scale_range: Sequence[float], num_levels: int
) -> Tuple[List[int], List[int]]:
    """Per-level min and max box sizes in pixels, as the released Caffe scripts compute them.

    The paper's Eq. 4 is replaced by integer percents: the first level (conv4_3) gets its own
    smaller scale; the other ``m - 1`` levels start at ``s_min%`` with a step of
    ``floor((s_max% - s_min%)/(m - 2))`` percent; ``max = min + step``; sizes are truncated to
    whole pixels. This equals ``ssd_pascal.py`` / ``ssd_coco.py`` and mmdet's
    ``SSDAnchorGenerator`` for SSD300 and SSD512:

    - 300, ``(0.2, 0.9)`` (VOC): min sizes 30, 60, 111, 162, 213, 264; last max 315;
    - 300, ``(0.15, 0.9)`` (COCO): 21, 45, 99, 153, 207, 261; 315;
    - 512, ``(0.15, 0.9)`` (VOC): 35, 76, 153, 230, 307, 384, 460; 537;
    - 512, ``(0.1, 0.9)`` (COCO): 20, 51, 133, 215, 296, 378, 460; 542

    (each level's max size is the next level's min size). Unlike mmdet it works for any
    input size and level count: the first level is ``(s_min% // 2, s_min%)`` except for the four
    released settings, which keep their published percents (SSD512-COCO uses 4 % where halving
    gives 5 %). Percents are ``round(100 * s)``; only the first ``m - 1`` steps are used when the
    floored step fits more.

    Args:
        base_size: Pixel size the percents refer to (``min(h, w)`` of the input).
        scale_range: ``(s_min, s_max)`` as fractions; both must be whole percents in effect.
        num_levels: Number of feature maps ``m >= 3``.

    Returns:
        ``(min_sizes, max_sizes)`` in integer pixels.
    """
    s_min, s_max = _check_scale_range(scale_range)
    if num_levels < 3:
        raise ValueError(
            f"scale_mode='caffe' needs at least 3 levels, got {num_levels}; "
            "use scale_mode='paper' or explicit min_sizes/max_sizes"
        )
    min_pct, max_pct = round(100 * s_min), round(100 * s_max)
    step = (max_pct - min_pct) // (num_levels - 2)
    if step < 1 or min_pct < 2:
        raise ValueError(
            f'scale_range {tuple(scale_range)!r} is too narrow for {num_levels} levels in '
            "scale_mode='caffe' (integer percent steps)"
        )
    first = _CAFFE_FIRST_LEVEL.get((base_size, min_pct), (min_pct // 2, min_pct))
    pcts = [min_pct + step * k for k in range(num_levels - 1)]
    min_sizes = [base_size * first[0] // 100] + [base_size * p // 100 for p in pcts]
    max_sizes = [base_size * first[1] // 100] + [base_size * (p + step) // 100 for p in pcts]
    return min_sizes, max_sizes


def torchvision_scales(scale_range: Sequence[float], num_levels: int) -> List[float]:
    """Scales ``s_1 .. s_{m+1}`` as torchvision's ``DefaultBoxGenerator(min_ratio, max_ratio)``.

    Eq. 4, ``s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)``, evaluated in torchvision's order of
    operations (so the floats are identical), followed by ``s_{m+1} = 1.0``; with one level
    ``[s_min, s_max]``. E.g. ``(0.2, 0.95)`` and 6 levels (ssdlite320) give
    ``[0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0]``. Arguments and result as :func:`paper_scales`,
    ``scale_range`` being torchvision's ``(min_ratio, max_ratio)``.
    """
    s_min, s_max = _check_eq4_args(scale_range, num_levels)
    if num_levels == 1:
        return [s_min, s_max]
    span = s_max - s_min
    return [s_min + span * k / (num_levels - 1.0) for k in range(num_levels)] + [1.0]


def expand_aspect_ratios(
    ratios: Sequence[float], flip: bool = True, unique: bool = True
) -> List[float]:
    """Aspect ratios (width / height) of one level besides the squares, in Caffe's order.

    Caffe's ``PriorBoxLayer`` (``unique=True``) starts from ``[1]`` and, for each listed ``r``
    not within 1e-6 of a ratio already present, appends ``r`` and, with ``flip``, ``1/r``; so a
    listed 1 or a repeated ratio adds nothing. torchvision (``unique=False``) appends ``r`` and
    ``1/r`` for every listed ``r``, 1 and repeats included. mmdet's ratios are height / width and
    it lists ``1/r`` first, which is the same box order.

    Args:
        ratios: Positive aspect ratios, e.g. ``[2, 3]``.
        flip: Also add ``1/r`` for each added ``r`` (Caffe's ``flip``).
        unique: Skip 1 and duplicates as Caffe does; False keeps every listed ratio.

    Returns:
        Expanded ratios without the leading 1, e.g. ``[2, 0.5, 3, 1/3]``.
    """
    expanded: List[float] = []
    for r in ratios:
        r = float(r)
        if not r > 0 or not math.isfinite(r):
            raise ValueError(f'aspect ratios must be positive and finite, got {r}')
        if unique and any(abs(r - b) < 1e-6 for b in [1.0] + expanded):
            continue
        expanded += [r, 1.0 / r] if flip else [r]
    return expanded


_Sizes = Union[float, Sequence[float]]


def level_box_shapes(
    min_size: _Sizes,
    max_size: Union[_Sizes, None],
    ratios: Sequence[float],
    flip: bool = True,
    unique: bool = True,
) -> Tensor:
    """Widths and heights of the default boxes at one location of one level (paper Sec. 2.2).

    Caffe's ``PriorBoxLayer`` order: for each min size ``m`` (with its max size ``M``): the
    ``m`` square, the ``sqrt(m M)`` square when ``M`` is given, then one box
    ``(w, h) = (m sqrt(a), m / sqrt(a))`` per expanded ratio ``a``
    (:func:`expand_aspect_ratios`). One ``(m, M)`` pair and ``flip`` is mmdet's and the paper's
    ``[s_k, s'_k, r1, 1/r1, ...]``. Caffe truncates ``m`` and ``M`` to whole pixels
    (``int min_size_``); sizes are used as given here, so write a prototxt's truncated values.

    Args:
        min_size: ``s_k``, or several min sizes of one level (Caffe's repeated ``min_size``).
        max_size: ``s_{k+1}``, one per min size, or None for no ``sqrt(m M)`` square (Caffe's
            ``PriorBox`` without ``max_size``).
        ratios: Aspect ratios (width / height) before expansion, e.g. ``[2, 3]``.
        flip: See :func:`expand_aspect_ratios`.
        unique: See :func:`expand_aspect_ratios`.

    Returns:
        ``(k, 2)`` float64 tensor of ``(w, h)``; ``k = n (1 + [M given] + len(expanded))`` for
        ``n`` min sizes.
    """
    min_sizes = [float(min_size)] if isinstance(min_size, Real) else list(min_size)
    if max_size is None:
        max_sizes: List[Union[float, None]] = [None] * len(min_sizes)
    else:
        max_sizes = [float(max_size)] if isinstance(max_size, Real) else list(max_size)
    if not min_sizes or len(max_sizes) != len(min_sizes):
        raise ValueError(
            f'need one max size per min size (or None), got min {min_size!r}, max {max_size!r}'
        )
    expanded = expand_aspect_ratios(ratios, flip, unique)
    shapes: List[Tuple[float, float]] = []
    for lo, hi in zip(min_sizes, max_sizes):
        shapes.append((lo, lo))
        if hi is not None:
            shapes.append((math.sqrt(lo * hi),) * 2)
        shapes += [(lo * math.sqrt(a), lo / math.sqrt(a)) for a in expanded]
    return torch.tensor(shapes, dtype=torch.float64)


def relative_box_shapes(
    scale: float,
    next_scale: float,
    ratios: Sequence[float],
    image_size: Tuple[int, int],
    clip: bool,
    flip: bool = True,
) -> Tensor:
    """torchvision's default-box shapes of one level, in pixels of a ``(h, w)`` image.

    torchvision sizes boxes as fractions of each image axis: ``(s_k sqrt(a), s_k / sqrt(a))``
    times ``(w, h)``, with the ``sqrt(s_k s_{k+1})`` square after the ``s_k`` one and no
    de-duplication of ratios. Its ``clip`` clamps these fractions to ``[0, 1]`` (a box never
    exceeds the image's width or height; its corners may still lie outside the image).

    Args:
        scale: ``s_k``.
        next_scale: ``s_{k+1}``.
        ratios: Aspect ratios (width / height) before expansion.
        image_size: ``(h, w)`` in pixels.
        clip: Clamp the fractional widths and heights to ``[0, 1]``.
        flip: See :func:`expand_aspect_ratios` (torchvision always flips).

    Returns:
        ``(k, 2)`` float64 ``(w, h)`` in pixels.
    """
    shapes = level_box_shapes(scale, next_scale, ratios, flip, unique=False)
    if clip:
        shapes = shapes.clamp(0, 1)
    h, w = image_size
    return shapes * shapes.new_tensor([float(w), float(h)])


def grid_default_boxes(
    box_shapes: Tensor,
    featmap_size: Tuple[int, int],
    stride: Tuple[float, float],
    image_size: Union[Tuple[int, int], None] = None,
    dtype: torch.dtype = torch.float32,
    device: Union[torch.device, str] = 'cpu',
) -> Tensor:
    """Default boxes of one level on its whole feature map, ``xyxy`` pixels.

    Centres are ``((x + 0.5) sw, (y + 0.5) sh)`` (paper: ``(i + 0.5)/|f_k|`` with
    ``sw = W / |f_k|``; Caffe: ``offset = 0.5`` times its ``step``). Location-major: row ``y``
    outer, column ``x`` inner, the ``k`` boxes of a location contiguous.

    Args:
        box_shapes: ``(k, 2)`` widths and heights (:func:`level_box_shapes`).
        featmap_size: ``(H, W)`` of the feature map.
        stride: ``(sw, sh)`` in pixels.
        image_size: ``(h, w)`` to clamp the boxes to, or None for no clipping (Caffe, mmdet).
        dtype: Output dtype (computed in float64 first).
        device: Output device.

    Returns:
        ``(H * W * k, 4)`` boxes.
    """
    feat_h, feat_w = featmap_size
    ys = (torch.arange(feat_h, dtype=torch.float64) + 0.5) * stride[1]
    xs = (torch.arange(feat_w, dtype=torch.float64) + 0.5) * stride[0]
    cy, cx = torch.meshgrid(ys, xs, indexing='ij')
    centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)
    half = box_shapes.to(torch.float64)[None] / 2
    boxes = torch.cat([centres - half, centres + half], dim=-1).reshape(-1, 4)
    if image_size is not None:
        h, w = image_size
        boxes = torch.stack(
            [
                boxes[:, 0].clamp(0, w),
                boxes[:, 1].clamp(0, h),
                boxes[:, 2].clamp(0, w),
                boxes[:, 3].clamp(0, h),
            ],
            dim=1,
        )
    return boxes.to(dtype=dtype, device=device)
