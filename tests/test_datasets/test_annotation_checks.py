"""Bad boxes and empty files at dataset load: one warning per file, errors where training is void.

COCO json (``CheckedCocoDataset``) and VOC xml (``CheckedVOCDataset``); the reference for the
boxes that remain is mmdet's own dataset on the same file without the bad boxes.
"""

import copy
import glob
import json
import logging
import math
import os.path as osp
import uuid
import xml.etree.ElementTree as ET

import pytest
from data_factory import VOC_CLASSES, make_voc_dataset
from mmdet.registry import DATASETS
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from ssd_plugin.datasets import checked_coco
from ssd_plugin.datasets.demo_shapes import DEMO_CLASSES, make_split

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs')]  # fmt: skip
IMAGE_SIZE = 96


@pytest.fixture()
def log():
    """A fresh current mmengine logger; returns a reader of what it logged since last read."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    MMLogger.get_instance(f'checks_{uuid.uuid4().hex}', log_level='INFO').addHandler(handler)

    def read() -> str:
        text = ''.join(f'{r.levelname} - {r.getMessage()}\n' for r in records)
        records.clear()
        return text

    return read


@pytest.fixture()
def coco(tmp_path):
    """A 6-image demo split: (root, parsed json)."""
    ann_file = make_split(str(tmp_path), 'train', 6, seed=0, image_size=IMAGE_SIZE)
    return tmp_path, json.load(open(ann_file))


def _coco_dataset(root, data, name='instances_train.json', **kwargs):
    with open(osp.join(root, 'annotations', name), 'w') as f:
        json.dump(data, f)
    cfg = dict(type='CheckedCocoDataset', data_root=str(root), ann_file=f'annotations/{name}',
               data_prefix=dict(img='train/'), metainfo=dict(classes=DEMO_CLASSES),
               filter_cfg=dict(filter_empty_gt=False), pipeline=PIPELINE)  # fmt: skip
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def _boxes(dataset):
    return {
        (info['img_id'], tuple(inst['bbox']))
        for info in (dataset.get_data_info(i) for i in range(len(dataset)))
        for inst in info['instances']
    }


def _break_coco(data):
    """Four broken boxes: negative width, NaN, wholly outside, partly outside (ids 1-4)."""
    anns = data['annotations']
    assert [a['id'] for a in anns[:4]] == [1, 2, 3, 4] and len(anns) > 6
    x, y, w, h = anns[0]['bbox']
    anns[0]['bbox'] = [x + w, y, -w, h]
    anns[1]['bbox'][1] = math.nan
    anns[2]['bbox'][0] = IMAGE_SIZE + 5
    anns[3]['bbox'][:2] = [-4.0, -2.5]  # 4 and 2.5 px outside: clipped
    return anns[3]['bbox'][2] - 4.0, anns[3]['bbox'][3] - 2.5


@pytest.fixture(params=[None, 2], ids=['one_chunk', 'chunks_of_2'])
def chunk(request, monkeypatch):
    """The file's boxes checked at once (default) or two at a time: the same result."""
    if request.param is not None:
        monkeypatch.setattr(checked_coco, '_CHUNK', request.param)


def test_coco_bad_boxes_are_dropped_and_clipped_with_one_warning(coco, log, chunk):
    root, data = coco
    total = len(data['annotations'])
    clipped_w, clipped_h = _break_coco(data)
    dataset = _coco_dataset(root, data)
    out = log()
    assert out.count('WARNING') == 1
    assert (
        f'instances_train.json: of its {total} boxes, 3 were dropped (1 non-finite coordinates: '
        'ids [2]; 1 non-positive width or height: ids [1]; 1 wholly outside the image: ids [3]) '
        'and 1 was kept after a fix (1 partly outside the image (clipped to it): ids [4]); '
        f'{total - 3} boxes remain'
    ) in out

    # the reference: mmdet's CocoDataset on the file without the dropped boxes, box 4 clipped
    data['annotations'][3]['bbox'] = [0.0, 0.0, clipped_w, clipped_h]
    data['annotations'] = data['annotations'][3:]
    plain = _coco_dataset(root, data, 'reference.json', type='CocoDataset')
    assert _boxes(dataset) == _boxes(plain)
    assert len(_boxes(dataset)) == total - 3
    img_id = data['annotations'][0]['image_id']
    assert (img_id, (0.0, 0.0, clipped_w, clipped_h)) in _boxes(dataset)


def test_coco_boxes_mmdet_drops_silently_are_counted_too(coco, log, chunk):
    root, data = coco
    anns = data['annotations']
    anns[0]['bbox'][2] = 0.5  # mmdet: w < 1, dropped
    anns[1]['area'] = 0  # mmdet: area <= 0, dropped; here the box is kept with its area
    anns[2]['image_id'] = 999  # no such image: mmdet never reads it
    anns[4]['bbox'][3] = 0.25  # in another chunk of 2 than box 1
    del anns[5]['area']
    dataset = _coco_dataset(root, data)
    out = log()
    assert '2 narrower or shorter than 1 px (after clipping): ids [1, 5]' in out
    assert "1 with an image_id not among the file's images: ids [3]" in out
    assert '2 with a missing or non-positive area (set to the box area): ids [2, 6]' in out
    assert len(_boxes(dataset)) == len(anns) - 3  # boxes 2 and 6 kept, unlike in mmdet


def test_coco_strict_turns_the_warning_into_an_error(coco):
    root, data = coco
    _break_coco(data)
    with pytest.raises(ValueError, match=r'instances_train.json: of its \d+ boxes, 3 were dropped'
                       r'.*\(strict=True: fix the file'):  # fmt: skip
        _coco_dataset(root, data, strict=True)


@pytest.mark.parametrize(
    'bbox, shown',
    [([1, 2, 3], r'\[1, 2, 3\]'), (None, 'None'), (5, '5'), ('abcd', "'abcd'"),
     ([1, 2, 3, 'x'], r"\[1, 2, 3, 'x'\]"), ([1, [2], 3, 4], r'\[1, \[2\], 3, 4\]')],
)  # fmt: skip
def test_coco_malformed_bbox_is_named(coco, chunk, bbox, shown):
    root, data = coco
    data['annotations'][5]['bbox'] = bbox
    with pytest.raises(ValueError, match=r'annotation id 6 of image id \d+ in .*instances_train'
                       rf'.json has bbox {shown}; expected 4 numbers'):  # fmt: skip
        _coco_dataset(root, data)


def test_coco_empty_annotation_list(coco, log):
    root, data = coco
    unusable = copy.deepcopy(data)
    data['annotations'] = []
    with pytest.raises(
        ValueError,
        match=r'instances_train.json has no usable boxes \(no annotati'
        r'ons at all\): training on it would learn nothing .*allow_empty=True',
    ):
        _coco_dataset(root, data)
    assert len(_coco_dataset(root, data, allow_empty=True)) == 6  # background images, intended
    assert 'WARNING' not in log()

    for ann in unusable['annotations']:  # all boxes unusable: the same error, saying so
        ann['bbox'][0] = IMAGE_SIZE
    n = len(unusable['annotations'])
    with pytest.raises(ValueError, match=rf'has no usable boxes \(all {n} were dropped\)'):
        _coco_dataset(root, unusable)


def test_coco_empty_val_annotation_list_warns(coco, log):
    root, data = coco
    data['annotations'] = []
    dataset = _coco_dataset(root, data, 'val.json', test_mode=True)
    assert len(dataset) == 6
    assert ('val.json has no usable boxes (no annotations at all): every metric will be -1; '
            'set allow_empty=True') in log()  # fmt: skip
    _coco_dataset(root, data, 'val.json', test_mode=True, allow_empty=True)
    assert 'WARNING' not in log()


def test_training_goes_on_with_the_good_boxes(coco, tmp_path):
    root, data = coco
    _break_coco(data)
    with open(osp.join(root, 'annotations', 'instances_train.json'), 'w') as f:
        json.dump(data, f)
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'ssd_demo_shapes.py'))
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.update(data_root=str(root) + '/')
    cfg.merge_from_dict(dict(
        train_cfg=dict(max_iters=2, val_interval=10), val_cfg=None, val_dataloader=None,
        val_evaluator=None, test_cfg=None, test_dataloader=None, test_evaluator=None,
        work_dir=str(tmp_path / 'work_dir'), default_hooks=dict(checkpoint=None),
    ))  # fmt: skip
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert 0 < loss < float('inf')
    (log_file,) = glob.glob(str(tmp_path / 'work_dir' / '*' / '*.log'))
    assert (
        'WARNING - ' + f'{root}/annotations/instances_train.json: of its' in open(log_file).read()
    )


# VOC ---------------------------------------------------------------------------------------


@pytest.fixture()
def voc(tmp_path):
    """A tiny VOCdevkit; returns (root, path of the first VOC2007 trainval xml)."""
    root = str(tmp_path / 'VOCdevkit')
    make_voc_dataset(root, images_per_split=3)
    stems = open(osp.join(root, 'VOC2007', 'ImageSets', 'Main', 'trainval.txt')).read().split()
    return root, [osp.join(root, 'VOC2007', 'Annotations', f'{s}.xml') for s in stems]


def _voc_dataset(root, **kwargs):
    cfg = dict(
        type='CheckedVOCDataset',
        data_root=root,
        ann_file='VOC2007/ImageSets/Main/trainval.txt',
        data_prefix=dict(sub_data_root='VOC2007/'),
        pipeline=PIPELINE,
    )
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def _set_objects(xml_path, boxes, name=None):
    """Give the xml file's objects these (xmin, ymin, xmax, ymax) texts."""
    tree = ET.parse(xml_path)
    objects = tree.getroot().findall('object')
    assert len(objects) >= len(boxes)
    for obj, box in zip(objects, boxes):
        for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), box):
            obj.find(f'bndbox/{tag}').text = value
        if name is not None:
            obj.find('name').text = name
    tree.write(xml_path)


def test_voc_bad_boxes_are_dropped_and_clipped_with_one_warning(voc, log):
    root, xmls = voc
    plain = _voc_dataset(root, type='VOCDataset')
    before = [plain.get_data_info(i)['instances'] for i in range(3)]
    assert [len(b) for b in before] == [1, 2, 3]
    # image 1 (120 x 150): negative width, partly outside; image 2 (144 x 144): NaN, outside
    _set_objects(xmls[1], [('50', '10', '40', '20'), ('-9', '3', '30', '200')])
    _set_objects(xmls[2], [('nan', '1', '5', '5'), ('150', '150', '160', '160')])
    dataset = _voc_dataset(root)
    out = log()
    assert out.count('WARNING') == 1
    assert (
        f'WARNING - {root}/VOC2007/ImageSets/Main/trainval.txt: of its 6 boxes, 3 were dropped '
        f"(1 non-positive width or height: ids ['{xmls[1]} object 0']; 1 non-finite "
        f"coordinates: ids ['{xmls[2]} object 0']; 1 wholly outside the image: ids ['{xmls[2]} "
        "object 1']) and 1 was kept after a fix (1 partly outside the image (clipped to it): "
        f"ids ['{xmls[1]} object 1']); 3 boxes remain\n"
    ) == out
    got = [dataset.get_data_info(i)['instances'] for i in range(3)]
    assert got[0] == before[0]
    # mmdet's frame is 0-based: xmin - 1; the clipped box spans the image, 0 .. 150 (height)
    assert [i['bbox'] for i in got[1]] == [[0, 2, 29, 150]]
    assert got[1][0]['ignore_flag'] == before[1][1]['ignore_flag']  # difficult stays difficult
    assert got[2] == [before[2][2]]


def test_voc_strict_and_unknown_names(voc):
    root, xmls = voc
    _set_objects(xmls[0], [('50', '10', '40', '20')])
    with pytest.raises(ValueError, match=r'trainval.txt: of its 6 boxes, 1 was dropped .*strict'):
        _voc_dataset(root, strict=True)
    _set_objects(xmls[0], [('5', '10', '40', '20')], name='unicorn')
    with pytest.raises(ValueError, match=rf"{xmls[0]}: object 0 is named 'unicorn', which is not "
                       r"in the config's classes .*ignore_unlisted_categories=True"):  # fmt: skip
        _voc_dataset(root)
    dataset = _voc_dataset(root, ignore_unlisted_categories=True)
    assert dataset.get_data_info(0)['instances'] == []


def test_voc_empty_split(voc, log):
    root, xmls = voc
    for xml_path in xmls:
        tree = ET.parse(xml_path)
        for obj in tree.getroot().findall('object'):
            tree.getroot().remove(obj)
        tree.write(xml_path)
    with pytest.raises(ValueError, match=r'trainval.txt has no usable boxes \(no annotations at '
                       r'all\): training on it would learn nothing'):  # fmt: skip
        _voc_dataset(root)
    assert len(_voc_dataset(root, allow_empty=True)) == 3
    _voc_dataset(root, test_mode=True)
    assert 'every metric will be -1' in log()


def test_voc_configs_use_the_checked_datasets():
    for name in ('ssd300_vgg16_8xb8-240e_voc0712.py', 'ssd512_vgg16_8xb8-240e_voc0712.py'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', name))
        leaves = cfg.train_dataloader.dataset.dataset.datasets
        assert {leaf.type for leaf in leaves} == {cfg.val_dataloader.dataset.type}
        assert cfg.val_dataloader.dataset.type == 'CheckedVOCDataset'
    assert VOC_CLASSES == DATASETS.get('CheckedVOCDataset').METAINFO['classes']


def test_coco_configs_use_the_checked_dataset():
    for path in glob.glob(osp.join(REPO, 'configs', '*coco*.py')):
        cfg = Config.fromfile(path)
        leaf = cfg.train_dataloader.dataset.dataset
        types = {leaf.type, cfg.val_dataloader.dataset.type, cfg.test_dataloader.dataset.type}
        assert types == {'CheckedCocoDataset'}, path
