"""Which default boxes of a regular SSD grid can matter for a ground truth, without all IoUs.

On an unclipped grid every level is one set of box shapes translated over a product of column
and row centres. Two boxes of fixed sizes overlap by ``max(0, min(w1, w2, (w1 + w2)/2 - |dx|))``
along x (likewise y), non-increasing in ``|dx|`` and ``|dy|`` separately, and IoU grows with the
intersection. Hence, per shape:

- the best location is the column nearest to the box centre and the row nearest to it;
- IoU >= t needs ``I >= t (A + B) / (1 + t)``, so the x overlap must reach
  ``t (A + B) / ((1 + t) min(h1, h2))``: a window of columns (and of rows) around the centre.
"""

from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

__all__ = [
    'GridLayout',
    'grid_layouts',
    'nearest_candidates',
    'threshold_candidates',
    'plateau_candidates',
]

_TOL = 1e-3  # pixels: float32 grids are regular to this, and windows are widened by it


class GridLayout(NamedTuple):
    """One level: column centres ``(W,)``, row centres ``(H,)``, shapes ``(k, 2)`` (w, h), and
    the index of its first default box in the concatenated levels."""

    cols: Tensor
    rows: Tensor
    shapes: Tensor
    offset: int


def _layout(priors: Tensor, featmap_size: Tuple[int, int], offset: int) -> Optional[GridLayout]:
    feat_h, feat_w = featmap_size
    if feat_h * feat_w == 0 or len(priors) % (feat_h * feat_w):
        return None
    k = len(priors) // (feat_h * feat_w)
    boxes = priors.double().view(feat_h, feat_w, k, 4)
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    sizes = boxes[..., 2:] - boxes[..., :2]
    cols, rows = centres[0, :, 0, 0].contiguous(), centres[:, 0, 0, 1].contiguous()
    regular = (
        torch.allclose(sizes, sizes[:1, :1].expand_as(sizes), atol=_TOL)
        and torch.allclose(centres[..., 0], cols[None, :, None].expand(feat_h, -1, k), atol=_TOL)
        and torch.allclose(centres[..., 1], rows[:, None, None].expand(-1, feat_w, k), atol=_TOL)
        and bool((cols.diff() > 0).all() and (rows.diff() > 0).all())
    )
    return GridLayout(cols, rows, sizes[0, 0], offset) if regular else None


def grid_layouts(
    level_priors: Sequence[Tensor], featmap_sizes: Sequence[Tuple[int, int]]
) -> Optional[List[GridLayout]]:
    """Layouts of all levels, or None if one is not a translated grid (e.g. ``clip=True``)."""
    layouts, offset = [], 0
    for priors, size in zip(level_priors, featmap_sizes):
        layouts.append(_layout(priors, size, offset))
        offset += len(priors)
    return None if any(layout is None for layout in layouts) else layouts


def _nearest(centres: Tensor, values: Tensor) -> Tensor:
    """Index of the centre nearest to each value (``centres`` increasing; ties: the lower)."""
    right = torch.searchsorted(centres, values).clamp(max=len(centres) - 1)
    left = (right - 1).clamp(min=0)
    go_left = (values - centres[left]).abs() <= (centres[right] - values).abs()
    return torch.where(go_left, left, right)


def nearest_candidates(layouts: Sequence[GridLayout], boxes: Tensor) -> Tensor:
    """``(N, S)`` indices of the best-placed default box of each of the ``S`` shapes."""
    centre_x = ((boxes[:, 0] + boxes[:, 2]) / 2).double()
    centre_y = ((boxes[:, 1] + boxes[:, 3]) / 2).double()
    candidates = []
    for cols, rows, shapes, offset in layouts:
        first = offset + (_nearest(rows, centre_y) * len(cols) + _nearest(cols, centre_x)) * len(
            shapes
        )
        candidates.append(first[:, None] + torch.arange(len(shapes)))
    return torch.cat(candidates, dim=1)


def _window(centres: Tensor, centre: Tensor, reach: Tensor) -> Tuple[Tensor, Tensor]:
    """First index and count of the centres within ``centre +- reach``."""
    lo = torch.searchsorted(centres, (centre - reach).contiguous())
    hi = torch.searchsorted(centres, (centre + reach).contiguous(), right=True)
    return lo, (hi - lo).clamp(min=0)


def _expand(
    layout: GridLayout, col0: Tensor, num_x: Tensor, row0: Tensor, num_y: Tensor
) -> Tuple[Tensor, Tensor]:
    """Every (row of the ``(n, k)`` windows, default box) pair the column/row windows hold."""
    cols, _, shapes, offset = layout
    k = len(shapes)
    counts = (num_x * num_y).flatten()
    pair = torch.repeat_interleave(torch.arange(len(counts)), counts)
    local = torch.arange(len(pair)) - (torch.cumsum(counts, 0) - counts)[pair]
    num_x = num_x.flatten()[pair]
    col = col0.flatten()[pair] + local % num_x
    row = row0.flatten()[pair] + local // num_x
    return pair // k, offset + (row * len(cols) + col) * k + pair % k


def _box_geometry(boxes: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    box = boxes.double()
    w, h = (box[:, 2] - box[:, 0])[:, None], (box[:, 3] - box[:, 1])[:, None]
    return w, h, ((box[:, 0] + box[:, 2]) / 2)[:, None], ((box[:, 1] + box[:, 3]) / 2)[:, None]


def threshold_candidates(
    layouts: Sequence[GridLayout], boxes: Tensor, iou_thr: float
) -> Tuple[Tensor, Tensor]:
    """All (ground truth, default box) pairs that may reach IoU ``>= iou_thr`` (a superset).

    Args:
        layouts: From :func:`grid_layouts`.
        boxes: ``(N, 4)`` ground truths.
        iou_thr: IoU threshold, ``> 0``.

    Returns:
        ``(gt, prior)`` long index pairs, gt into ``boxes``, prior into the concatenated levels.
    """
    w1, h1, cx, cy = _box_geometry(boxes)
    gts, priors = [], []
    for layout in layouts:
        w2, h2 = layout.shapes[None, :, 0], layout.shapes[None, :, 1]
        need = iou_thr * (w1 * h1 + w2 * h2) / (1 + iou_thr)
        need_x, need_y = need / torch.minimum(h1, h2), need / torch.minimum(w1, w2)
        possible = (need_x <= torch.minimum(w1, w2) + _TOL) & (
            need_y <= torch.minimum(h1, h2) + _TOL
        )
        col0, num_x = _window(layout.cols, cx.expand_as(need), (w1 + w2) / 2 - need_x + _TOL)
        row0, num_y = _window(layout.rows, cy.expand_as(need), (h1 + h2) / 2 - need_y + _TOL)
        gt, prior = _expand(layout, col0, num_x * possible, row0, num_y)
        gts.append(gt)
        priors.append(prior)
    return torch.cat(gts), torch.cat(priors)


def plateau_candidates(
    layouts: Sequence[GridLayout], boxes: Tensor, nearest: Tensor, shapes: Tensor
) -> Tuple[Tensor, Tensor]:
    """The default boxes of the given shapes that overlap a box as much as the nearest one.

    Overlap stays at its maximum while ``|dx| <= (w1 + w2)/2 - overlap_x`` (one box inside the
    other along x), so a small box inside large default boxes has many equally good ones; the
    matcher takes the lowest index among them, which needs them all.

    Args:
        layouts: From :func:`grid_layouts`.
        boxes: ``(N, 4)`` ground truths.
        nearest: ``(N, S)`` from :func:`nearest_candidates`.
        shapes: ``(N, S)`` bool, the shapes to expand.

    Returns:
        ``(gt, prior)`` long index pairs.
    """
    w1, h1, cx, cy = _box_geometry(boxes)
    gts, priors, first = [], [], 0
    for layout in layouts:
        k = len(layout.shapes)
        w2, h2 = layout.shapes[None, :, 0], layout.shapes[None, :, 1]
        near = nearest[:, first : first + k]
        local = near - layout.offset
        col_c = layout.cols[local // k % len(layout.cols)]
        row_c = layout.rows[local // k // len(layout.cols)]
        # overlap at the nearest centre, then every centre reaching the same overlap
        ox = torch.minimum(torch.minimum(w1, w2), (w1 + w2) / 2 - (col_c - cx).abs())
        oy = torch.minimum(torch.minimum(h1, h2), (h1 + h2) / 2 - (row_c - cy).abs())
        col0, num_x = _window(layout.cols, cx.expand_as(ox), (w1 + w2) / 2 - ox + _TOL)
        row0, num_y = _window(layout.rows, cy.expand_as(oy), (h1 + h2) / 2 - oy + _TOL)
        gt, prior = _expand(layout, col0, num_x * shapes[:, first : first + k], row0, num_y)
        gts.append(gt)
        priors.append(prior)
        first += k
    return torch.cat(gts), torch.cat(priors)
