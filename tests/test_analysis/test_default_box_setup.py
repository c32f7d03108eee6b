"""The config's default-box generator and feature-map sizes, and clear errors for bad configs."""

import sys
from pathlib import Path

import pytest

from ssd_plugin.analysis import (
    build_prior_generator,
    load_config,
    network_featmap_sizes,
    prior_generator_config,
)

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_coco import tiny_config  # noqa: E402


def test_demo_config_feature_maps_are_measured_on_the_model():
    cfg = load_config('configs/ssd_demo_shapes.py')
    generator = build_prior_generator(prior_generator_config(cfg))
    sizes = network_featmap_sizes(cfg, generator)
    assert sizes == [(24, 24), (12, 12), (6, 6), (3, 3), (2, 2), (1, 1)]


def test_unbuildable_model_falls_back_to_the_strides():
    cfg = load_config(tiny_config('unused.json'))  # SingleStageDetector without a backbone
    generator = build_prior_generator(prior_generator_config(cfg))
    with pytest.warns(UserWarning, match='ceil'):
        sizes = network_featmap_sizes(cfg, generator)
    assert sizes == [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]


def test_config_without_default_box_generator_is_named():
    cfg = tiny_config('unused.json')
    cfg['model']['bbox_head']['prior_generator'] = dict(
        type='SSDAnchorGenerator', scale_major=False, input_size=300,
        strides=[8, 16, 32, 64, 100, 300], ratios=([2], [2, 3], [2, 3], [2, 3], [2], [2]),
        basesize_ratio_range=(0.15, 0.9),
    )  # fmt: skip
    with pytest.raises(TypeError, match=r"model.bbox_head.prior_generator is 'SSDAnchorGenerator'"):
        prior_generator_config(load_config(cfg))
    del cfg['model']['bbox_head']['prior_generator']
    with pytest.raises(KeyError, match='model.bbox_head.prior_generator'):
        prior_generator_config(load_config(cfg))


def test_fpn_config_levels_are_measured_and_checked_as_the_head_checks_them(recwarn):
    """The SSD + FPN config's levels (38 .. 2 at 300 px) fit its strides; SSD300's are refused."""
    cfg = load_config('configs/ssd300_r18_fpn_8xb8-120e_coco.py')
    generator = build_prior_generator(prior_generator_config(cfg))
    sizes = network_featmap_sizes(cfg, generator)
    assert sizes == [(s, s) for s in (38, 19, 10, 5, 3, 2)]
    assert not [w for w in recwarn if 'could not run the model' in str(w.message)]  # measured
    ssd300 = build_prior_generator(prior_generator_config(cfg), strides=(8, 16, 32, 64, 100, 300))
    with pytest.raises(ValueError, match='level 5: the network gives 2x2, stride 300 expects 1x1'):
        network_featmap_sizes(cfg, ssd300)
