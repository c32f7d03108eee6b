"""Broken dataset inputs fail with one clear error naming the file, id or key."""

import json
import os
import re

import numpy as np
import pytest
from mmdet.registry import DATASETS

from ssd_plugin.datasets.demo_shapes import DEMO_CLASSES, make_split

PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs'),
]


@pytest.fixture()
def shapes(tmp_path):
    """A 4-image demo split; returns (root, annotation file, its parsed json)."""
    ann_file = make_split(str(tmp_path), 'train', 4, seed=0, image_size=96)
    return tmp_path, ann_file, json.load(open(ann_file))


def _build(root, coco=None, ann_name='instances_train.json', **kwargs):
    ann_file = os.path.join(root, 'annotations', ann_name)
    if coco is not None:
        json.dump(coco, open(ann_file, 'w'))
    cfg = dict(
        type='CheckedCocoDataset',
        data_root=str(root),
        ann_file=f'annotations/{ann_name}',
        data_prefix=dict(img='train/'),
        metainfo=dict(classes=DEMO_CLASSES),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=PIPELINE,
    )
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def test_valid_file_matches_plain_coco_dataset(shapes):
    root, _, coco = shapes
    checked = _build(root)
    plain = _build(root, type='CocoDataset')
    assert len(checked) == len(plain) == 4
    for i in range(4):
        a, b = checked.get_data_info(i), plain.get_data_info(i)
        assert a['instances'] == b['instances']
    labels = [
        inst['bbox_label'] for i in range(4) for inst in checked.get_data_info(i)['instances']
    ]
    expected = [a['category_id'] - 1 for a in coco['annotations']]
    assert labels == expected


def test_unknown_category_id_is_named(shapes):
    root, _, coco = shapes
    coco['annotations'][2]['category_id'] = 42
    ann = coco['annotations'][2]
    msg = (
        re.escape(f'annotation id {ann["id"]} of image id {ann["image_id"]} ')
        + re.escape(f'({coco["images"][ann["image_id"] - 1]["file_name"]})')
        + ' in .*instances_train.json has '
        + r'category_id 42, which is not in the file\'s categories \(ids \[1, 2, 3, 4, 5\]\)'
    )
    with pytest.raises(ValueError, match=msg):
        _build(root, coco)
    # plain mmdet drops that box without a word
    assert sum(len(_build(root, type='CocoDataset').get_data_info(i)['instances'])
               for i in range(4)) == len(coco['annotations']) - 1  # fmt: skip


def test_category_outside_the_config_classes_is_named(shapes):
    root, _, coco = shapes
    ann = next(a for a in coco['annotations'] if a['category_id'] == 5)  # 'cross'
    with pytest.raises(
        ValueError,
        match=rf"annotation id {ann['id']} .* category_id 5 \('cross'\)"
        r", which is not in the config's classes .*ignore_unlisted_categories",
    ):
        _build(root, metainfo=dict(classes=DEMO_CLASSES[:4]))
    subset = _build(root, metainfo=dict(classes=DEMO_CLASSES[:4]), ignore_unlisted_categories=True)
    labels = {inst['bbox_label'] for i in range(4) for inst in subset.get_data_info(i)['instances']}
    assert labels <= {0, 1, 2, 3}


@pytest.mark.parametrize(
    'classes, problem',
    [
        (('circle', 'sqare', 'triangle', 'star', 'cross'), r"the classes \['sqare'\] are not"),
        (('square', 'circle', 'triangle', 'star', 'cross'), 'the file lists them in another order'),
    ],
)
def test_config_classes_not_matching_the_file_are_named(shapes, classes, problem):
    root, _, _ = shapes
    with pytest.raises(ValueError, match=f'metainfo classes .* do not match the categories of '
                       f'.*instances_train.json: {problem}'):  # fmt: skip
        _build(root, metainfo=dict(classes=classes))


def test_missing_image_file_is_named_at_start(shapes):
    root, _, coco = shapes
    os.remove(root / 'train' / coco['images'][1]['file_name'])
    with pytest.raises(FileNotFoundError, match=r"1 of the 4 image files of .*instances_train"
                       r".json do not exist, e.g. \['.*train/000001.jpg'\]"):  # fmt: skip
        _build(root)


def test_missing_image_file_is_named_when_loaded(shapes):
    root, _, coco = shapes
    dataset = _build(root)  # the file goes missing after start-up
    os.remove(root / 'train' / coco['images'][1]['file_name'])
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / 'train' / '000001.jpg'))):
        dataset[1]


def test_corrupt_image_file_is_named(shapes):
    root, _, _ = shapes
    (root / 'train' / '000002.jpg').write_bytes(b'not a jpeg at all')
    dataset = _build(root)
    with pytest.raises(ValueError, match=r'cannot load image .*train/000002.jpg of .*: OpenCV '
                       r'cannot decode it: UnidentifiedImageError'):  # fmt: skip
        dataset[2]


def test_no_images_is_an_error(shapes):
    root, _, coco = shapes
    coco['images'], coco['annotations'] = [], []
    with pytest.raises(ValueError, match='instances_train.json lists no images'):
        _build(root, coco)


def test_image_without_boxes_is_kept_as_background(shapes):
    root, _, coco = shapes
    coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] != 2]
    dataset = _build(root, coco)
    assert len(dataset) == 4
    sample = dataset[1]
    assert sample['data_samples'].img_id == 2
    assert sample['data_samples'].gt_instances.bboxes.shape == (0, 4)
    assert np.asarray(sample['data_samples'].gt_instances.labels).shape == (0,)


def test_filtered_images_are_logged(shapes, capsys):
    from mmengine.logging import MMLogger

    root, _, coco = shapes
    coco['annotations'] = [a for a in coco['annotations'] if a['image_id'] != 2]
    MMLogger.get_instance('test_filter', log_level='INFO')
    dataset = _build(root, coco, filter_cfg=dict(filter_empty_gt=True, min_size=32))
    assert len(dataset) == 3
    out = capsys.readouterr().out
    assert 'leaves out 1 of 4 images (0 smaller than min_size, 1 without boxes' in out
