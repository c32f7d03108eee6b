"""Best default-box IoU, positives per level and figures, against brute force and the matcher."""

import sys
from pathlib import Path

import pytest
import torch
from mmdet.structures.bbox import bbox_overlaps

from ssd_plugin.analysis import (
    GroundTruths,
    best_default_box_overlaps,
    build_prior_generator,
    coverage_figures,
    matcher_positives,
    positives_per_level,
)

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_coco import SSD300_GENERATOR  # noqa: E402

SSD300_SIZES = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]


def _random_boxes(num, size=300, lo=1.0, hi=300.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    side = torch.exp(
        torch.empty(num, 2).uniform_(
            float(torch.tensor(lo).log()), float(torch.tensor(hi).log()), generator=g
        )
    )
    side = side.clamp(max=size)
    xy = torch.rand(num, 2, generator=g) * (size - side)
    boxes = torch.cat([xy, xy + side], dim=1)
    # grid-aligned centres and exact plateaus (boxes inside default boxes) stress the ties
    boxes[: num // 8] = boxes[: num // 8].round()
    return boxes


def _lowest_best(boxes, priors):
    ious = bbox_overlaps(boxes, priors)
    best = ious.max(dim=1).values
    index = torch.where(ious == best[:, None], torch.arange(len(priors)), len(priors)).min(dim=1)
    return best, index.values


GENERATORS = [
    (SSD300_GENERATOR, SSD300_SIZES),
    ({**SSD300_GENERATOR, 'scale_mode': 'paper', 'scale_range': (0.05, 0.6)}, SSD300_SIZES),
    (
        {**SSD300_GENERATOR, 'strides': None, 'input_size': (240, 320)},
        [(30, 40), (15, 20), (8, 10), (4, 5), (2, 3), (1, 1)],
    ),
]


@pytest.mark.parametrize('generator_cfg,sizes', GENERATORS)
def test_best_iou_is_the_exhaustive_maximum_and_lowest_index(generator_cfg, sizes):
    priors = build_prior_generator(generator_cfg).grid_priors(sizes, device='cpu')
    boxes = _random_boxes(1500, size=240, lo=1.0, hi=320.0)
    best, index = best_default_box_overlaps(priors, sizes, boxes, chunk_size=700)
    ref_best, ref_index = _lowest_best(boxes, torch.cat(priors))
    torch.testing.assert_close(best, ref_best, rtol=0, atol=1e-6)
    assert (index == ref_index).float().mean() > 0.999  # float-rounding ties only
    fast, _ = best_default_box_overlaps(priors, sizes, boxes, resolve_ties=False)
    torch.testing.assert_close(fast, ref_best, rtol=0, atol=1e-6)


def test_clipped_default_boxes_use_the_exhaustive_path():
    generator = build_prior_generator({**SSD300_GENERATOR, 'clip': True})
    priors = generator.grid_priors(SSD300_SIZES, device='cpu')
    boxes = _random_boxes(500, seed=1)
    best, index = best_default_box_overlaps(priors, SSD300_SIZES, boxes)
    ref_best, _ = _lowest_best(boxes, torch.cat(priors))
    torch.testing.assert_close(best, ref_best)
    torch.testing.assert_close(
        bbox_overlaps(boxes, torch.cat(priors)[index], is_aligned=True), best
    )


def _gts(boxes, img_index, num_images, labels=None, areas=None):
    n = len(boxes)
    return GroundTruths(
        boxes,
        torch.zeros(n, dtype=torch.long) if labels is None else labels,
        (boxes[:, 2:] - boxes[:, :2]).prod(1).double() if areas is None else areas,
        img_index,
        num_images,
        ('a', 'b'),
    )


@pytest.mark.parametrize('per_image,lo,hi', [(3, 4, 300), (30, 2, 16), (40, 2, 600)])
def test_positives_equal_the_matcher(per_image, lo, hi):
    priors = build_prior_generator(SSD300_GENERATOR).grid_priors(SSD300_SIZES, device='cpu')
    num_images = 40
    boxes = _random_boxes(num_images * per_image, lo=lo, hi=hi, seed=per_image)
    img_index = torch.randint(
        0, num_images, (len(boxes),), generator=torch.Generator().manual_seed(2)
    )
    gts = _gts(boxes, img_index, num_images + 5)  # some images without boxes
    positives = positives_per_level(priors, SSD300_SIZES, gts)
    owner, prior = matcher_positives(torch.cat(priors), gts, torch.arange(gts.num_images))
    level = torch.repeat_interleave(torch.arange(6), torch.tensor([len(p) for p in priors]))
    expected = torch.bincount(owner * 6 + level[prior], minlength=len(gts) * 6).view(-1, 6)
    assert torch.equal(positives, expected)
    assert positives.sum() >= len(gts) // 2  # not vacuous


def test_matcher_positives_follow_match_default_boxes_per_image():
    from ssd_plugin.functional.matching import match_default_boxes

    priors = torch.cat(
        build_prior_generator(SSD300_GENERATOR).grid_priors(SSD300_SIZES, device='cpu')
    )
    boxes = _random_boxes(12, seed=5)
    gts = _gts(boxes, torch.tensor([0] * 5 + [2] * 7), 3)
    owner, prior = matcher_positives(priors, gts, torch.arange(3), max_pairs=1)
    for ids in (torch.arange(5), torch.arange(5, 12)):  # images 0 and 2
        matched, _ = match_default_boxes(
            priors, boxes[ids][None], torch.ones(1, len(ids), dtype=torch.bool)
        )
        got = {(int(o), int(p)) for o, p in zip(owner, prior) if int(o) in ids.tolist()}
        want = {(int(ids[m]), p) for p, m in enumerate(matched[0].tolist()) if m >= 0}
        assert got == want


def test_figures_split_by_size_and_class():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 200, 200], [5, 5, 20, 20]]).float()
    areas = torch.tensor([100.0, 2500.0, 40000.0, 32.0**2])  # 32**2 is medium, as COCO
    gts = _gts(boxes, torch.zeros(4, dtype=torch.long), 1, torch.tensor([0, 1, 1, 0]), areas)
    best_iou = torch.tensor([0.2, 0.6, 0.5, 0.4])
    positives = torch.tensor([[1, 0], [2, 1], [0, 3], [0, 0]])
    fig = coverage_figures(gts, best_iou, positives)
    assert fig['overall']['coverage'] == 0.5
    assert fig['overall']['mean_best_iou'] == pytest.approx(0.425)
    assert fig['overall']['mean_positives'] == 1.75
    assert fig['overall']['no_positive_share'] == 0.25
    assert fig['overall']['level_share'] == [3 / 7, 4 / 7]
    assert fig['by_size']['small']['num_gts'] == 1 and fig['by_size']['small']['coverage'] == 0.0
    assert fig['by_size']['medium']['num_gts'] == 2 and fig['by_size']['medium']['coverage'] == 0.5
    assert fig['by_size']['large']['coverage'] == 1.0
    assert fig['by_class']['a']['coverage'] == 0.0 and fig['by_class']['b']['coverage'] == 1.0
    assert sum(fig['best_iou_histogram']['counts']) == 4
