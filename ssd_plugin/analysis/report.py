"""Coverage report of a config: load its ground truths and default boxes once, evaluate settings."""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

from mmengine.config import Config

from .coverage import best_default_box_overlaps, coverage_figures
from .default_box_setup import (
    build_prior_generator,
    level_priors,
    load_config,
    network_featmap_sizes,
    prior_generator_config,
)
from .ground_truths import GroundTruths, load_ground_truths
from .positives import positives_per_level

__all__ = ['CoverageProblem', 'prepare_coverage', 'evaluate_coverage', 'coverage_report']


@dataclass
class CoverageProblem:
    """What a default-box setting is evaluated against.

    Attributes:
        generator_cfg: The config's ``model.bbox_head.prior_generator``.
        featmap_sizes: ``(H, W)`` of each level at the input size.
        gts: The training set's ground truths in input pixels.
    """

    generator_cfg: dict
    featmap_sizes: List[Tuple[int, int]]
    gts: GroundTruths


def prepare_coverage(
    config: Union[str, Config, dict],
    cfg_options: Optional[dict] = None,
    featmap_sizes: Optional[List[Tuple[int, int]]] = None,
) -> CoverageProblem:
    """Load a config's default-box generator, feature-map sizes and training ground truths.

    Args:
        config: Config path, ``Config`` or dict.
        cfg_options: Overrides merged into the config (as ``--cfg-options``).
        featmap_sizes: ``(H, W)`` per level; None measures them on the built model.

    Returns:
        The problem to pass to :func:`evaluate_coverage` or
        :func:`~ssd_plugin.analysis.scale_search.search_scale_range`.
    """
    cfg = load_config(config, cfg_options)
    generator_cfg = prior_generator_config(cfg)
    gts = load_ground_truths(cfg)
    if featmap_sizes is None:
        featmap_sizes = network_featmap_sizes(cfg, build_prior_generator(generator_cfg))
    return CoverageProblem(generator_cfg, [tuple(s) for s in featmap_sizes], gts)


def evaluate_coverage(
    problem: CoverageProblem,
    overrides: Optional[dict] = None,
    with_positives: bool = True,
    iou_thr: float = 0.5,
) -> Dict:
    """All coverage figures of one default-box setting.

    Args:
        problem: From :func:`prepare_coverage`.
        overrides: ``prior_generator`` keys replacing the config's (e.g. ``scale_range``).
        with_positives: Also run the matcher for positives per ground truth and per level.
        iou_thr: Coverage threshold and the matcher's ``pos_iou_thr``.

    Returns:
        :func:`~ssd_plugin.analysis.coverage.coverage_figures` plus the setting
        (``prior_generator``, ``featmap_sizes``, ``num_priors``, ``num_images``).
    """
    generator_cfg = {**problem.generator_cfg, **(overrides or {})}
    priors = level_priors(build_prior_generator(generator_cfg), problem.featmap_sizes)
    best = best_default_box_overlaps(priors, problem.featmap_sizes, problem.gts.bboxes)
    positives = None
    if with_positives:
        positives = positives_per_level(priors, problem.featmap_sizes, problem.gts, iou_thr, best)
    figures = coverage_figures(problem.gts, best[0], positives, iou_thr)
    return {
        'prior_generator': generator_cfg,
        'featmap_sizes': [list(s) for s in problem.featmap_sizes],
        'num_priors': sum(len(p) for p in priors),
        'num_images': problem.gts.num_images,
        **figures,
    }


def coverage_report(
    config: Union[str, Config, dict],
    cfg_options: Optional[dict] = None,
    featmap_sizes: Optional[List[Tuple[int, int]]] = None,
    overrides: Optional[dict] = None,
    with_positives: bool = True,
) -> Dict:
    """Coverage figures of a config's default boxes on its training set (one call).

    Args:
        config: Config path, ``Config`` or dict.
        cfg_options: Overrides merged into the config.
        featmap_sizes: ``(H, W)`` per level; None measures them on the built model.
        overrides: ``prior_generator`` keys to try instead of the config's.
        with_positives: Also run the matcher (positives per ground truth and level).

    Returns:
        See :func:`evaluate_coverage`.
    """
    problem = prepare_coverage(config, cfg_options, featmap_sizes)
    return evaluate_coverage(problem, overrides, with_positives)
