"""Default-box coverage analysis and scale search (see tools/analysis/default_box_coverage.py)."""

from .coverage import SIZE_BUCKETS, best_default_box_overlaps, coverage_figures
from .default_box_setup import (
    build_prior_generator,
    load_config,
    network_featmap_sizes,
    prior_generator_config,
)
from .grid_layout import GridLayout, grid_layouts, nearest_candidates, threshold_candidates
from .ground_truths import (
    GroundTruths,
    dataset_classes,
    dataset_metainfo,
    find_datasets,
    load_ground_truths,
    resized_shapes,
)
from .plot import plot_coverage
from .positives import matcher_positives, positives_per_level
from .report import CoverageProblem, coverage_report, evaluate_coverage, prepare_coverage
from .scale_search import RATIO_CANDIDATES, search_scale_range
from .synthetic_coco import use_synthetic_coco, write_synthetic_coco

__all__ = [
    'SIZE_BUCKETS',
    'RATIO_CANDIDATES',
    'GroundTruths',
    'CoverageProblem',
    'best_default_box_overlaps',
    'GridLayout',
    'grid_layouts',
    'nearest_candidates',
    'threshold_candidates',
    'positives_per_level',
    'matcher_positives',
    'coverage_figures',
    'load_config',
    'prior_generator_config',
    'build_prior_generator',
    'network_featmap_sizes',
    'find_datasets',
    'dataset_classes',
    'dataset_metainfo',
    'resized_shapes',
    'load_ground_truths',
    'prepare_coverage',
    'evaluate_coverage',
    'coverage_report',
    'search_scale_range',
    'plot_coverage',
    'write_synthetic_coco',
    'use_synthetic_coco',
]
