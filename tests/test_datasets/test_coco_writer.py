"""The one COCO-format writer: what pycocotools and mmdet's CocoDataset read back."""

import json

import numpy as np
import pytest
from mmdet.datasets import CocoDataset
from pycocotools.coco import COCO

from ssd_plugin.datasets.coco_writer import write_coco

IMAGES = [(7, 'a.jpg', 64, 48), (3, 'b.jpg', 32, 32)]
CATEGORIES = [(5, 'cat'), (2, 'dog')]


def test_annotations_read_back_by_pycocotools_and_cocodataset(tmp_path):
    path = write_coco(str(tmp_path / 'x.json'), IMAGES, CATEGORIES, image_ids=[7, 7, 3],
                      category_ids=[2, 5, 2], bboxes=[[1, 2, 10, 20], [0.5, 0, 4, 4], [3, 3, 5, 6]],
                      iscrowd=[False, True, False])  # fmt: skip
    coco = COCO(path)
    assert sorted(coco.getImgIds()) == [3, 7] and coco.loadImgs(7)[0]['width'] == 64
    anns = coco.loadAnns(coco.getAnnIds())
    assert [a['id'] for a in anns] == [1, 2, 3]
    assert [a['bbox'] for a in anns] == [[1, 2, 10, 20], [0.5, 0, 4, 4], [3, 3, 5, 6]]
    assert [a['area'] for a in anns] == [200.0, 16.0, 30.0]  # w * h by default
    assert [a['iscrowd'] for a in anns] == [0, 1, 0]
    dataset = CocoDataset(ann_file=path, metainfo=dict(classes=('cat', 'dog')),
                          data_prefix=dict(img=''), pipeline=[], serialize_data=False)  # fmt: skip
    info = {d['img_id']: d for d in dataset.data_list}
    # the file's category order: cat (id 5) is label 0; the crowd box is ignored
    assert [(i['bbox'], i['bbox_label'], i['ignore_flag']) for i in info[7]['instances']] == [
        ([1.0, 2.0, 11.0, 22.0], 1, 0),
        ([0.5, 0.0, 4.5, 4.0], 0, 1),
    ]


def test_options_areas_rounding_supercategory_and_info(tmp_path):
    path = write_coco(str(tmp_path / 'x.json'), IMAGES[:1], CATEGORIES, image_ids=[7],
                      category_ids=[5], bboxes=np.array([[1.234567, 2.0, 3.333333, 4.5]]),
                      areas=[9.87654], decimals=2, supercategory='pet',
                      info=dict(description='t'))  # fmt: skip
    coco = json.load(open(path))
    assert list(coco) == ['info', 'images', 'annotations', 'categories']
    assert coco['annotations'][0]['bbox'] == [1.23, 2.0, 3.33, 4.5]
    assert coco['annotations'][0]['area'] == 9.88
    assert coco['categories'] == [dict(id=5, name='cat', supercategory='pet'),
                                  dict(id=2, name='dog', supercategory='pet')]  # fmt: skip
    plain = json.load(open(write_coco(str(tmp_path / 'y.json'), IMAGES, CATEGORIES, [], [],
                                      np.zeros((0, 4)))))  # fmt: skip
    assert list(plain) == ['images', 'annotations', 'categories'] and plain['annotations'] == []


def test_one_id_per_box_or_an_error(tmp_path):
    with pytest.raises(ValueError, match='2 image ids, 1 category ids and 2 boxes'):
        write_coco(str(tmp_path / 'x.json'), IMAGES, CATEGORIES, [7, 7], [5], np.ones((2, 4)))
