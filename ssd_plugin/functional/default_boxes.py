"""Default boxes (priors) of SSD: scales, per-level sizes, base boxes and dense grids.

Paper (Liu et al., ECCV 2016, Sec. 2.2, Eq. 4): for ``m`` feature maps the scale of level ``k`` is
``s_k = s_min + (s_max - s_min) (k - 1) / (m - 1)``; each location gets boxes of width
``s_k sqrt(a)`` and height ``s_k / sqrt(a)`` for the aspect ratios ``a`` (width / height), plus an
extra square of scale ``s'_k = sqrt(s_k s_{k+1})``; box centres are ``((i + 0.5) / |f_k|,
(j + 0.5) / |f_k|)``. The released Caffe code (``ssd_pascal.py``, ``prior_box_layer.cpp``) uses a
different integer-percent schedule instead, which mmdet's ``SSDAnchorGenerator`` reproduces; both
are implemented here. Everything is in input-image pixels (``xyxy``), the convention of mmdet.
"""

import math
from typing import List, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    'paper_scales',
    'paper_sizes',
    'caffe_sizes',
    'expand_aspect_ratios',
    'level_box_shapes',
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
    s_min, s_max = _check_scale_range(scale_range)
    if num_levels < 1:
        raise ValueError(f'num_levels must be >= 1, got {num_levels}')
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
    ``SSDAnchorGenerator`` for SSD300 and SSD512 (see SSD_SPEC.md). Unlike mmdet it works for any
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


def expand_aspect_ratios(ratios: Sequence[float]) -> List[float]:
    """Aspect ratios (width / height) of one level besides the squares, in Caffe's order.

    Each ``r`` adds ``r`` then ``1/r`` (Caffe's ``flip``); ratios equal to 1 or to one already
    present (within 1e-6) are skipped, as in Caffe's ``PriorBoxLayer``. mmdet's ratios are
    height / width and it lists ``1/r`` first, which is the same box order.

    Args:
        ratios: Positive aspect ratios, e.g. ``[2, 3]``.

    Returns:
        Expanded ratios, e.g. ``[2, 0.5, 3, 1/3]``.
    """
    expanded: List[float] = []
    for r in ratios:
        r = float(r)
        if not r > 0 or not math.isfinite(r):
            raise ValueError(f'aspect ratios must be positive and finite, got {r}')
        for a in (r, 1.0 / r):
            if all(abs(a - b) >= 1e-6 for b in [1.0] + expanded):
                expanded.append(a)
    return expanded


def level_box_shapes(min_size: float, max_size: float, ratios: Sequence[float]) -> Tensor:
    """Widths and heights of the default boxes at one location of one level (paper Sec. 2.2).

    Order (Caffe, mmdet): ``[min square, sqrt(min*max) square, then for each ratio r:
    (w = min sqrt(r), h = min / sqrt(r)), then the flipped box]``.

    Args:
        min_size: ``s_k`` in pixels.
        max_size: ``s_{k+1}`` in pixels (``> min_size``).
        ratios: Aspect ratios (width / height) before expansion, e.g. ``[2, 3]``.

    Returns:
        ``(k, 2)`` float64 tensor of ``(w, h)``, ``k = 2 + 2 len(ratios)``.
    """
    shapes = [(min_size, min_size), (math.sqrt(min_size * max_size),) * 2]
    shapes += [
        (min_size * math.sqrt(a), min_size / math.sqrt(a)) for a in expand_aspect_ratios(ratios)
    ]
    return torch.tensor(shapes, dtype=torch.float64)


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
