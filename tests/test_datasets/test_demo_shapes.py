"""The demo shapes generator: determinism, valid COCO output, the promised geometry, bad args."""

import filecmp
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from ssd_plugin.datasets.demo_shapes import (
    DEMO_CLASSES,
    DEMO_PALETTE,
    make_demo_dataset,
    make_split,
    render_image,
)


def _files(root):
    return sorted(osp.relpath(osp.join(d, f), root) for d, _, names in os.walk(root) for f in names)


def test_same_seed_gives_byte_identical_files(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    make_demo_dataset(str(a), seed=3, num_train=4, num_val=2, image_size=96)
    make_demo_dataset(str(b), seed=3, num_train=4, num_val=2, image_size=96)
    names = _files(a)
    assert names == _files(b)
    assert len(names) == 4 + 2 + 2
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == []


def test_other_seed_differs_and_images_do_not_depend_on_the_count(tmp_path):
    make_split(str(tmp_path / 'a'), 'train', 3, seed=0, image_size=96)
    make_split(str(tmp_path / 'b'), 'train', 5, seed=0, image_size=96)
    make_split(str(tmp_path / 'c'), 'train', 3, seed=1, image_size=96)
    for name in ('000000.jpg', '000002.jpg'):
        assert filecmp.cmp(tmp_path / 'a/train' / name, tmp_path / 'b/train' / name, False)
        assert not filecmp.cmp(tmp_path / 'a/train' / name, tmp_path / 'c/train' / name, False)


def test_coco_file_is_consistent(tmp_path):
    ann_file = make_split(str(tmp_path), 'val', 6, seed=0, image_size=128)
    coco = json.load(open(ann_file))
    assert [c['name'] for c in coco['categories']] == list(DEMO_CLASSES)
    assert [c['id'] for c in coco['categories']] == [1, 2, 3, 4, 5]
    assert [im['id'] for im in coco['images']] == list(range(1, 7))
    assert len({a['id'] for a in coco['annotations']}) == len(coco['annotations'])
    per_image = {im['id']: 0 for im in coco['images']}
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128 and w >= 1 and h >= 1
        # the area is the visible pixel count, which fits in the box
        assert 0 < ann['area'] <= w * h
        assert ann['iscrowd'] == 0
        per_image[ann['image_id']] += 1
    assert min(per_image.values()) >= 1
    from pycocotools.coco import COCO

    assert len(COCO(ann_file).getAnnIds()) == len(coco['annotations'])


def _sample(n, **kwargs):
    rng = np.random.default_rng(0)
    return [render_image(rng, **kwargs) for _ in range(n)]


def test_sizes_span_the_range_and_boxes_are_tight():
    size = 200
    longest = []
    for image, boxes, labels, areas in _sample(120, image_size=size):
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        assert len(boxes) == len(labels) == len(areas) >= 1
        assert labels.min() >= 0 and labels.max() < len(DEMO_CLASSES)
        longest.extend((boxes[:, 2:] - boxes[:, :2]).max(1) / size)
    longest = np.array(longest)
    assert longest.max() <= 0.8 + 2 / size
    # uniform in [0.04, 0.8]: both ends are reached and about half lie below the midpoint
    # (a little more, since occlusion trims visible boxes; log-uniform would put 78 % there)
    assert longest.min() < 0.06 and longest.max() > 0.7
    assert 0.4 < np.mean(longest < 0.42) < 0.62


def test_shapes_are_what_the_labels_say():
    """Unoccluded single shapes: the fill ratio (area / box area) identifies the outline."""
    fill = {name: [] for name in DEMO_CLASSES}
    for _, boxes, labels, areas in _sample(200, image_size=256, size_range=(0.3, 0.6),
                                           max_objects=1):  # fmt: skip
        wh = boxes[0, 2:] - boxes[0, :2]
        fill[DEMO_CLASSES[labels[0]]].append(areas[0] / (wh[0] * wh[1]))
    mean = {k: float(np.mean(v)) for k, v in fill.items()}
    # an ellipse fills pi/4 of its box (less once rotated), a star about 0.35
    assert 0.6 < mean['circle'] < 0.8
    assert mean['star'] < 0.45
    assert mean['triangle'] < 0.55
    assert mean['star'] < mean['triangle'] < mean['circle']
    assert all(len(v) > 20 for v in fill.values())


def test_each_class_has_its_palette_hue():
    """The fill's hue stays within the class's palette hue +- 10 degrees (5 OpenCV units)."""
    palette_bgr = np.uint8([[[b, g, r] for r, g, b in DEMO_PALETTE]])
    palette_hue = cv2.cvtColor(palette_bgr, cv2.COLOR_BGR2HSV)[0, :, 0].astype(int)
    offsets = {name: [] for name in DEMO_CLASSES}
    for image, boxes, labels, _ in _sample(250, image_size=128, size_range=(0.3, 0.5),
                                           max_objects=1):  # fmt: skip
        x0, y0, x1, y1 = boxes[0].astype(int)
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        hue = int(cv2.cvtColor(image[cy : cy + 1, cx : cx + 1], cv2.COLOR_BGR2HSV)[0, 0, 0])
        offset = (hue - palette_hue[labels[0]] + 90) % 180 - 90  # circular, in [-90, 90)
        offsets[DEMO_CLASSES[labels[0]]].append(offset)
    for name, values in offsets.items():
        assert len(values) > 20, name
        assert np.mean(np.abs(values) <= 6) > 0.9, (name, values)
        assert np.std(values) > 1, name  # jittered, not one flat colour


def test_shapes_overlap_only_with_occlusion_allowed():
    """Default settings let shapes partly cover each other; min_visible=1 forbids any cover."""

    def overlapping_pairs(samples):
        count = 0
        for _, boxes, _, _ in samples:
            lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
            hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
            inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
            count += int(np.triu(inter > 0, 1).sum())
        return count

    assert overlapping_pairs(_sample(60, image_size=128)) >= 10
    # disjoint shapes can still have overlapping boxes, but far fewer of them
    assert overlapping_pairs(_sample(60, image_size=128, min_visible=1.0)) < overlapping_pairs(
        _sample(60, image_size=128)
    )


@pytest.mark.parametrize(
    'kwargs, name',
    [
        (dict(num_train=0), 'num_train'),
        (dict(num_val=-1), 'num_val'),
        (dict(num_train=2.5), 'num_train'),
        (dict(image_size=32), 'image_size'),
        (dict(image_size='256'), 'image_size'),
        (dict(seed=-1), 'seed'),
        (dict(size_range=(0.5, 0.2)), 'size_range'),
        (dict(size_range=(0.01, 0.5)), 'size_range'),
        (dict(max_objects=0), 'max_objects'),
        (dict(min_visible=0), 'min_visible'),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, kwargs, name):
    args = dict(num_train=1, num_val=1, image_size=96) | kwargs
    with pytest.raises(ValueError, match=name):
        make_demo_dataset(str(tmp_path), **args)
    assert not (tmp_path / 'annotations').exists()


def test_bad_split_is_named(tmp_path):
    with pytest.raises(ValueError, match="split must be one of \\['train', 'val'\\], got 'test'"):
        make_split(str(tmp_path), 'test', 1)
