"""The report on the demo dataset agrees with a direct bbox_overlaps / matcher computation."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.structures.bbox import bbox_overlaps

from ssd_plugin.analysis import (
    build_prior_generator,
    coverage_report,
    evaluate_coverage,
    prepare_coverage,
    search_scale_range,
)
from ssd_plugin.datasets.demo_shapes import make_demo_dataset
from ssd_plugin.functional.matching import match_default_boxes

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_coco import SSD300_GENERATOR, tiny_config, write_synthetic_coco  # noqa: E402


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_shapes')
    make_demo_dataset(str(root), seed=0, num_train=40, num_val=1)
    options = {'train_dataloader.dataset.data_root': f'{root}/'}
    return prepare_coverage('configs/ssd_demo_shapes.py', options)


def test_demo_figures_equal_a_direct_computation(demo):
    report = evaluate_coverage(demo)
    gts = demo.gts
    assert report['featmap_sizes'] == [[24, 24], [12, 12], [6, 6], [3, 3], [2, 2], [1, 1]]
    generator = build_prior_generator(demo.generator_cfg)
    level_priors = generator.grid_priors(demo.featmap_sizes, device='cpu')
    priors = torch.cat(level_priors)
    assert report['num_priors'] == len(priors)
    best = bbox_overlaps(gts.bboxes, priors).max(dim=1).values.double()
    assert report['overall']['coverage'] == pytest.approx(float((best >= 0.5).double().mean()))
    assert report['overall']['mean_best_iou'] == pytest.approx(float(best.mean()), abs=1e-6)
    small = gts.areas < 32**2
    assert report['by_size']['small']['coverage'] == pytest.approx(
        float((best[small] >= 0.5).double().mean())
    )

    # positives: the matcher image by image
    level = torch.repeat_interleave(torch.arange(6), torch.tensor([len(p) for p in level_priors]))
    per_level = torch.zeros(6)
    num_pos = 0
    for img in range(gts.num_images):
        ids = torch.nonzero(gts.img_index == img).squeeze(1)
        if len(ids):
            matched, _ = match_default_boxes(
                priors, gts.bboxes[ids][None], torch.ones(1, len(ids), dtype=torch.bool)
            )
            pos = matched[0] >= 0
            num_pos += int(pos.sum())
            per_level += torch.bincount(level[pos], minlength=6)
    assert report['overall']['mean_positives'] == pytest.approx(num_pos / len(gts))
    np.testing.assert_allclose(
        report['overall']['level_share'], (per_level / per_level.sum()).numpy(), atol=1e-9
    )
    assert set(report['by_class']) == set(gts.classes)
    assert sum(report['by_class'][c]['num_gts'] for c in gts.classes) == len(gts)


def test_demo_optimised_setting_keeps_or_raises_coverage(demo):
    before = evaluate_coverage(demo, with_positives=False)
    search = search_scale_range(demo)
    after = evaluate_coverage(demo, search['overrides'], with_positives=False)
    assert after['overall']['coverage'] >= before['overall']['coverage']
    assert search['before'][0] == pytest.approx(before['overall']['coverage'])


def test_coverage_report_in_one_call(tmp_path):
    path = str(tmp_path / 'x.json')
    write_synthetic_coco(path, 10, 60, seed=4)
    sizes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    report = coverage_report(
        tiny_config(path), featmap_sizes=sizes, overrides={'scale_range': (0.1, 0.8)}
    )
    assert report['prior_generator'] == {**SSD300_GENERATOR, 'scale_range': (0.1, 0.8)}
    assert report['overall']['num_gts'] == 60 and report['num_images'] == 10
