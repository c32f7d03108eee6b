"""Search SSD's ``scale_range`` (and ratios) for the best ground-truth coverage at IoU 0.5.

The objective is the share of ground truths whose best default box has IoU >= ``iou_thr``
(ties: the higher mean best IoU), measured with
:func:`~ssd_plugin.analysis.coverage.best_default_box_overlaps` on a fixed random subsample of
the ground truths. The search is coarse-to-fine over ``(s_min, s_max)`` in whole percents
(``scale_mode='caffe'`` works in percents anyway): a coarse grid (``s_min`` 0.02..0.58 step 0.04,
``s_max`` 0.20..1.20 step 0.10), then a fine one around the best (``s_min`` +-0.03 step 0.01,
``s_max`` +-0.08 step 0.02), about 200 evaluations. With ``search_ratios``, coordinate ascent
over the levels follows: each level tries every ratio set of a small family within the
default-box budget, then the scales are refined again; two rounds. Scales do not change the
default-box count; ratios do.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config

from .coverage import best_default_box_overlaps
from .default_box_setup import build_prior_generator, level_priors
from .report import CoverageProblem, prepare_coverage

__all__ = ['RATIO_CANDIDATES', 'search_scale_range']

# Per-level aspect-ratio sets tried by the ratio search (each r adds r and 1/r): SSD's two sets,
# and narrower/wider variants of the same sizes (4 or 6 boxes per location).
RATIO_CANDIDATES = ((2,), (3,), (2, 3), (1.5, 3), (2, 4))
_COARSE_MIN = np.arange(2, 61, 4) / 100
_COARSE_MAX = np.arange(20, 121, 10) / 100


class _Objective:
    """Coverage of one generator setting on the subsampled ground truths, counted."""

    def __init__(self, problem: CoverageProblem, boxes: torch.Tensor, iou_thr: float) -> None:
        self.problem, self.boxes, self.iou_thr = problem, boxes, iou_thr
        self.evaluations = 0

    def setting(self, scale_range: Tuple[float, float], ratios: Sequence[Sequence[float]]) -> Dict:
        overrides = {'scale_range': tuple(scale_range), 'ratios': [list(r) for r in ratios]}
        if self.problem.generator_cfg.get('min_sizes') is not None:
            overrides.update(min_sizes=None, max_sizes=None)  # explicit sizes would win
        return overrides

    def num_priors(self, overrides: Dict) -> int:
        generator = build_prior_generator(self.problem.generator_cfg, **overrides)
        return sum(
            h * w * k for (h, w), k in zip(self.problem.featmap_sizes, generator.num_base_priors)
        )

    def __call__(self, overrides: Optional[Dict]) -> Optional[Tuple[float, float]]:
        """``(coverage, mean best IoU)``, or None for a setting the generator rejects."""
        try:
            generator = build_prior_generator(self.problem.generator_cfg, **(overrides or {}))
        except ValueError:  # e.g. a scale range too narrow for integer-percent steps
            return None
        self.evaluations += 1
        priors = level_priors(generator, self.problem.featmap_sizes)
        best_iou, _ = best_default_box_overlaps(
            priors, self.problem.featmap_sizes, self.boxes, resolve_ties=False
        )
        return float((best_iou >= self.iou_thr).double().mean()), float(best_iou.double().mean())


def _search_scales(
    objective: _Objective,
    ratios: Sequence[Sequence[float]],
    s_mins: Sequence[float],
    s_maxs: Sequence[float],
    best: Tuple[Tuple[float, float], Optional[Tuple[float, float]]],
) -> Tuple[Tuple[float, float], Optional[Tuple[float, float]]]:
    """Best ``(score, scale_range)`` over a grid, starting from ``best``."""
    for s_min in s_mins:
        for s_max in s_maxs:
            if s_min <= 0 or s_max <= s_min:
                continue
            scale_range = (round(float(s_min), 2), round(float(s_max), 2))
            score = objective(objective.setting(scale_range, ratios))
            if score is not None and score > best[0]:
                best = (score, scale_range)
    return best


def _refine_scales(
    objective: _Objective,
    ratios: Sequence[Sequence[float]],
    best: Tuple[Tuple[float, float], Optional[Tuple[float, float]]],
    base_scale: Tuple[float, float],
) -> Tuple[Tuple[float, float], Optional[Tuple[float, float]]]:
    """A finer grid around the best scale range (the config's if it is still the best)."""
    s_min, s_max = best[1] or base_scale
    s_mins = np.round(s_min + np.arange(-3, 4) / 100, 2)
    s_maxs = np.round(s_max + np.arange(-8, 9, 2) / 100, 2)
    return _search_scales(objective, ratios, s_mins, s_maxs, best)


def search_scale_range(
    problem: Union[CoverageProblem, str, Config, dict],
    search_ratios: bool = False,
    max_priors: Optional[int] = None,
    max_gts: int = 50_000,
    iou_thr: float = 0.5,
    seed: int = 0,
    ratio_candidates: Sequence[Sequence[float]] = RATIO_CANDIDATES,
) -> Dict:
    """Find ``prior_generator`` keys that maximise the coverage of the ground truths.

    Args:
        problem: From :func:`~ssd_plugin.analysis.report.prepare_coverage`, or a config (path,
            ``Config`` or dict) to prepare it from.
        search_ratios: Also search per-level ratio sets from ``ratio_candidates``.
        max_priors: Bound on the total number of default boxes; None keeps the config's count.
        max_gts: Ground truths the search evaluates on (a seeded random subsample).
        iou_thr: Coverage threshold.
        seed: Subsample seed.
        ratio_candidates: Ratio sets each level may take.

    Returns:
        ``{'overrides': prior_generator keys (scale_range, ratios[, min_sizes/max_sizes=None]),
        'num_priors', 'max_priors', 'search_gts', 'evaluations', 'before', 'after'}``, where
        ``before``/``after`` are ``(coverage, mean best IoU)`` on the subsample.
    """
    if not isinstance(problem, CoverageProblem):
        problem = prepare_coverage(problem)
    boxes = problem.gts.bboxes
    if len(boxes) > max_gts:
        generator = torch.Generator().manual_seed(seed)
        boxes = boxes[torch.randperm(len(boxes), generator=generator)[:max_gts]]
    objective = _Objective(problem, boxes, iou_thr)
    cfg = problem.generator_cfg
    current = objective.num_priors({})
    budget = current if max_priors is None else int(max_priors)
    before = objective(None)

    ratios: List[List[float]] = [list(r) for r in build_prior_generator(cfg).ratios]
    base_scale = tuple(cfg.get('scale_range', (0.15, 0.9)))
    # The config's own setting is the one to beat (None: keep it), if it is within the budget.
    best = (before, None)
    if current > budget:
        if not search_ratios:
            raise ValueError(
                f'max_priors={budget} is below the {current} default boxes of the config; the '
                'scale search does not change the count (search the ratios too)'
            )
        ratios = [list(min(ratio_candidates, key=len))] * len(ratios)
        if objective.num_priors(objective.setting(base_scale, ratios)) > budget:
            raise ValueError(f'max_priors={budget} is below the smallest candidate setting')
        best = ((-1.0, -1.0), base_scale)

    best = _search_scales(objective, ratios, _COARSE_MIN, _COARSE_MAX, best)
    best = _refine_scales(objective, ratios, best, base_scale)
    for _ in range(2 if search_ratios else 0):
        for level in range(len(ratios)):
            for candidate in ratio_candidates:
                trial = [list(candidate) if i == level else r for i, r in enumerate(ratios)]
                setting = objective.setting(best[1] or base_scale, trial)
                if trial == ratios or objective.num_priors(setting) > budget:
                    continue
                score = objective(setting)
                if score is not None and score > best[0]:
                    best, ratios = (score, best[1] or base_scale), trial
        best = _refine_scales(objective, ratios, best, base_scale)

    if best[1] is None:  # nothing beat the config
        overrides = {}
    else:
        overrides = objective.setting(best[1], ratios)
        if not search_ratios:
            overrides.pop('ratios')
    return {
        'overrides': overrides,
        'num_priors': objective.num_priors(overrides),
        'max_priors': budget,
        'search_gts': len(boxes),
        'evaluations': objective.evaluations,
        'before': before,
        'after': best[0],
    }
