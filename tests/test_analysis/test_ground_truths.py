"""Reading a config's training boxes: COCO filters, Resize as mmdet does it, wrappers, errors."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes

from ssd_plugin.analysis import load_config, load_ground_truths, resized_shapes

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_coco import tiny_config, write_synthetic_coco  # noqa: E402


def _coco(path, images, annotations, names=('a', 'b')):
    cats = [{'id': 10 + i, 'name': n} for i, n in enumerate(names)]
    images = [{'file_name': f'{img["id"]}.jpg', **img} for img in images]
    with open(path, 'w') as f:
        json.dump({'images': images, 'annotations': annotations, 'categories': cats}, f)
    return str(path)


def _ann(k, img, cat, bbox, **extra):
    return {
        'id': k,
        'image_id': img,
        'category_id': cat,
        'bbox': bbox,
        'area': bbox[2] * bbox[3],
        **extra,
    }


@pytest.mark.parametrize('keep_ratio', [False, True])
def test_boxes_are_resized_as_mmdet_resize_does(tmp_path, keep_ratio):
    images = [{'id': 7, 'width': 640, 'height': 427}, {'id': 3, 'width': 333, 'height': 500}]
    anns = [_ann(1, 7, 10, [10.5, 20.25, 100, 50]), _ann(2, 3, 11, [300, 400, 33, 100])]
    cfg = load_config(
        tiny_config(_coco(tmp_path / 'a.json', images, anns), ('a', 'b'), keep_ratio=keep_ratio)
    )
    gts = load_ground_truths(cfg)
    resize = TRANSFORMS.build(dict(type='Resize', scale=(300, 300), keep_ratio=keep_ratio))
    for i, (img, ann) in enumerate(zip(images, anns)):
        x, y, w, h = ann['bbox']
        results = resize(
            {
                'img': np.zeros((img['height'], img['width'], 3), np.uint8),
                'img_shape': (img['height'], img['width']),
                'gt_bboxes': HorizontalBoxes(
                    torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32)
                ),
            }
        )
        torch.testing.assert_close(gts.bboxes[i], results['gt_bboxes'].tensor[0].float())
        new_w, new_h = resized_shapes(
            np.array([img['width']]),
            np.array([img['height']]),
            dict(type='Resize', scale=(300, 300), keep_ratio=keep_ratio),
        )[0]
        assert (new_h, new_w) == results['img_shape']
    assert gts.labels.tolist() == [0, 1] and gts.num_images == 2
    assert gts.areas.tolist() == [5000.0, 3300.0]  # original pixels


def test_coco_filters_and_class_subset(tmp_path):
    images = [{'id': 1, 'width': 100, 'height': 100}, {'id': 2, 'width': 20, 'height': 100}]
    anns = [
        _ann(1, 1, 10, [0, 0, 10, 10]),
        _ann(2, 1, 10, [0, 0, 10, 10], iscrowd=1),  # crowd: dropped
        _ann(3, 1, 10, [0, 0, 0.5, 10]),  # w < 1, as CocoDataset
        _ann(4, 1, 10, [200, 0, 10, 10]),  # outside the image
        _ann(5, 1, 10, [0, 0, 10, 10], ignore=True),
        _ann(6, 1, 11, [5, 5, 10, 10]),  # class 'b' is not in metainfo.classes
        _ann(7, 2, 10, [0, 0, 10, 10]),  # image below filter_cfg.min_size
    ]
    cfg = tiny_config(_coco(tmp_path / 'a.json', images, anns), classes=('a',))
    cfg['train_dataloader']['dataset']['dataset']['filter_cfg'] = dict(min_size=32)
    gts = load_ground_truths(load_config(cfg))
    assert len(gts) == 1 and gts.classes == ('a',)
    torch.testing.assert_close(gts.bboxes[0], torch.tensor([0.0, 0.0, 30.0, 30.0]))


def test_concat_of_repeat_datasets_counts_each_file_once(tmp_path):
    write_synthetic_coco(str(tmp_path / 'x.json'), 5, 20, seed=0)
    write_synthetic_coco(str(tmp_path / 'y.json'), 7, 30, seed=1)
    cfg = tiny_config(str(tmp_path / 'x.json'))
    leaf = cfg['train_dataloader']['dataset']
    second = json.loads(json.dumps(leaf).replace('x.json', 'y.json'))
    cfg['train_dataloader']['dataset'] = dict(type='ConcatDataset', datasets=[leaf, second])
    gts = load_ground_truths(load_config(cfg))
    assert len(gts) == 50 and gts.num_images == 12
    assert gts.img_index[:20].max() < 5 and gts.img_index[20:].min() >= 5


def test_missing_and_empty_annotation_files_are_named(tmp_path):
    missing = str(tmp_path / 'nope.json')
    with pytest.raises(FileNotFoundError, match='nope.json'):
        load_ground_truths(load_config(tiny_config(missing)))
    empty = _coco(tmp_path / 'empty.json', [{'id': 1, 'width': 10, 'height': 10}], [])
    with pytest.raises(
        ValueError, match=r"no box of the classes \['a', 'b', 'c'\] in .*empty.json"
    ):
        load_ground_truths(load_config(tiny_config(empty)))
    other = _coco(
        tmp_path / 'other.json',
        [{'id': 1, 'width': 10, 'height': 10}],
        [_ann(1, 1, 10, [0, 0, 5, 5])],
        names=('z',),
    )
    with pytest.raises(
        ValueError, match=r"no box of the classes \['a', 'b', 'c'\] in .*other.json"
    ):
        load_ground_truths(load_config(tiny_config(other)))


def test_pipeline_without_resize_is_an_error(tmp_path):
    write_synthetic_coco(str(tmp_path / 'x.json'), 3, 5)
    cfg = tiny_config(str(tmp_path / 'x.json'))
    cfg['train_dataloader']['dataset']['dataset']['pipeline'] = [dict(type='LoadImageFromFile')]
    with pytest.raises(ValueError, match='has no Resize'):
        load_ground_truths(load_config(cfg))
    del cfg['train_dataloader']
    with pytest.raises(KeyError, match='train_dataloader.dataset'):
        load_ground_truths(load_config(cfg))


def test_voc_layout_boxes_are_the_xml_boxes_resized(tmp_path):
    """A VOC config (RepeatDataset of a ConcatDataset of two years) is read as mmdet reads it:
    XML coordinates minus one, difficult objects left out, then mmdet's Resize."""
    from xml.etree import ElementTree as ET

    from data_factory import make_voc_dataset

    from ssd_plugin.cli.data_root import load_config_with_data_root

    root = tmp_path / 'VOCdevkit'
    make_voc_dataset(str(root))
    config = str(Path(__file__).parents[2] / 'configs' / 'ssd300_vgg16_8xb8-240e_voc0712.py')
    cfg = load_config_with_data_root(config, str(root))
    gts = load_ground_truths(cfg)
    expected, num_images = [], 0
    for year in ('VOC2007', 'VOC2012'):  # the config's Concat order
        for stem in (root / year / 'ImageSets' / 'Main' / 'trainval.txt').read_text().split():
            xml = ET.parse(root / year / 'Annotations' / f'{stem}.xml')
            w, h = (int(xml.findtext(f'size/{k}')) for k in ('width', 'height'))
            for obj in xml.iter('object'):
                if obj.findtext('difficult') == '1':
                    continue
                x1, y1, x2, y2 = (float(obj.findtext(f'bndbox/{k}')) for k in
                                  ('xmin', 'ymin', 'xmax', 'ymax'))  # fmt: skip
                # mmdet's XMLDataset: every coordinate minus one
                box = [(x1 - 1) * 300 / w, (y1 - 1) * 300 / h, (x2 - 1) * 300 / w,
                       (y2 - 1) * 300 / h]  # fmt: skip
                expected.append((box, obj.findtext('name'), num_images))
            num_images += 1
    assert gts.num_images == num_images == 6 and len(gts) == len(expected)
    torch.testing.assert_close(gts.bboxes, torch.tensor([b for b, _, _ in expected]))
    assert [gts.classes[i] for i in gts.labels] == [n for _, n, _ in expected]
    assert gts.img_index.tolist() == [i for _, _, i in expected]


def test_metainfo_of_a_concat_of_two_voc_years(tmp_path):
    """Without ``ignore_keys`` mmdet keeps a list (VOC2007 and VOC2012 differ in dataset_type):
    the tools take the first part's once the classes agree, and name the parts when they do not."""
    from data_factory import make_voc_dataset
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    from ssd_plugin.analysis import dataset_metainfo

    init_default_scope('mmdet')
    make_voc_dataset(str(tmp_path))

    def part(year, classes):
        return dict(type='VOCDataset', data_root=str(tmp_path),
                    ann_file=f'{year}/ImageSets/Main/trainval.txt',
                    data_prefix=dict(sub_data_root=f'{year}/'), metainfo=dict(classes=classes),
                    pipeline=[])  # fmt: skip

    voc = DATASETS.get('VOCDataset').METAINFO['classes']
    both = DATASETS.build(
        dict(
            type='RepeatDataset',
            times=2,
            dataset=dict(
                type='ConcatDataset', datasets=[part('VOC2007', voc), part('VOC2012', voc)]
            ),
        )
    )
    assert [m['dataset_type'] for m in both.metainfo] == ['VOC2007', 'VOC2012']
    meta = dataset_metainfo(both, 'train_dataloader.dataset')
    assert meta['dataset_type'] == 'VOC2007' and meta['classes'] == voc
    odd = DATASETS.build(
        dict(type='ConcatDataset', datasets=[part('VOC2007', voc), part('VOC2012', voc[:3])])
    )
    with pytest.raises(ValueError, match=r"train_dataloader.dataset: .* part 1: \['aeroplane', "
                                         r"'bicycle', 'bird'\]"):  # fmt: skip
        dataset_metainfo(odd, 'train_dataloader.dataset')
