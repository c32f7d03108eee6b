"""What the checked datasets rely on in mmdet 3.3, pinned; and the loud failure if it changes.

``CheckedCocoDataset`` reads the whole file through ``self.coco`` while mmdet's
``CocoDataset.load_data_list`` parses the images; ``CheckedVOCDataset`` checks boxes in an
override of ``XMLDataset._parse_instance_info``. Should mmdet change either, loading must stop
with a ``RuntimeError`` rather than train on unchecked boxes.
"""

import inspect

import pytest
from data_factory import make_voc_dataset
from mmdet.datasets import CocoDataset
from mmdet.datasets.xml_style import XMLDataset
from mmdet.registry import DATASETS

from ssd_plugin.datasets.demo_shapes import DEMO_CLASSES, make_split

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs')]  # fmt: skip


@pytest.fixture()
def coco_cfg(tmp_path):
    make_split(str(tmp_path), 'train', 3, seed=0, image_size=64)
    return dict(type='CheckedCocoDataset', data_root=str(tmp_path),
                ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                metainfo=dict(classes=DEMO_CLASSES), pipeline=PIPELINE)  # fmt: skip


@pytest.fixture()
def voc_cfg(tmp_path):
    root = str(tmp_path / 'VOCdevkit')
    make_voc_dataset(root, images_per_split=3)
    return dict(type='CheckedVOCDataset', data_root=root,
                ann_file='VOC2007/ImageSets/Main/trainval.txt',
                data_prefix=dict(sub_data_root='VOC2007/'), pipeline=PIPELINE)  # fmt: skip


def test_mmdet_coco_sets_self_coco_while_parsing(coco_cfg):
    seen = []

    class Spy(CocoDataset):
        def parse_data_info(self, raw_data_info):
            seen.append(len(self.coco.imgs))  # the whole file, from the first image on
            return super().parse_data_info(raw_data_info)

    spy = Spy(**{k: v for k, v in coco_cfg.items() if k != 'type'})
    assert seen == [3, 3, 3] and not hasattr(spy, 'coco')  # and it is gone afterwards


def test_checked_coco_stops_when_self_coco_is_gone(coco_cfg, monkeypatch):
    dataset = DATASETS.build(coco_cfg)
    raw = dict(raw_ann_info=[], raw_img_info=dict(file_name='x.jpg'))
    with pytest.raises(RuntimeError, match=r"CocoDataset.load_data_list did not set self.coco "
                       r'.*mmdet newer than 3.3'):  # fmt: skip
        dataset.parse_data_info(raw)  # after loading: as if mmdet no longer set it
    monkeypatch.setattr(CocoDataset, 'load_data_list', lambda self: [dict(img_path='x.jpg')])
    with pytest.raises(RuntimeError, match='never called parse_data_info'):
        DATASETS.build(coco_cfg)


def test_mmdet_voc_parses_objects_through_parse_instance_info(voc_cfg):
    params = list(inspect.signature(XMLDataset._parse_instance_info).parameters)
    assert params == ['self', 'raw_ann_info', 'minus_one']
    dataset = DATASETS.build(voc_cfg)
    assert dataset._num_checked == dataset._num_parsed == 3


def test_checked_voc_stops_when_its_override_is_not_called(voc_cfg, monkeypatch):
    def parse_elsewhere(self, img_info):  # as if mmdet parsed the objects another way
        return dict(img_path=img_info['file_name'], instances=[], width=1, height=1)

    monkeypatch.setattr(XMLDataset, 'parse_data_info', parse_elsewhere)
    with pytest.raises(RuntimeError, match=r"XMLDataset.parse_data_info no longer calls "
                       r'_parse_instance_info \(checked 0 of 3 xml files\)'):  # fmt: skip
        DATASETS.build(voc_cfg)
