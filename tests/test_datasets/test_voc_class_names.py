"""VOC-format data of one's own classes: mmdet's VOCMetric table names the config's classes.

mmdet's ``VOCDataset`` marks any dataset under a ``VOC2007``/``VOC2012`` folder as that VOC
year, and ``VOCMetric`` then labels the per-class table with VOC's 20 names. The reference is
the metric itself, run on the dataset's own boxes as predictions (every AP 1).
"""

import logging
import uuid

import pytest
import torch
from data_factory import VOC_CLASSES, make_voc_dataset
from mmdet.evaluation import VOCMetric
from mmdet.registry import DATASETS
from mmengine.evaluator import Evaluator
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs')]  # fmt: skip
OWN = ('redbox', 'greenbox', 'bluebox')


def _evaluate(dataset):
    """VOCMetric on the dataset's boxes as predictions: (returned metrics, logged text)."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    MMLogger.get_instance(f'voc_{uuid.uuid4().hex}', log_level='INFO').addHandler(handler)
    evaluator = Evaluator(VOCMetric(eval_mode='11points'))
    evaluator.dataset_meta = dataset.metainfo
    samples = []
    for i in range(len(dataset)):
        sample = dataset[i]['data_samples']
        gt = sample.gt_instances
        sample.pred_instances = InstanceData(bboxes=gt.bboxes.tensor if hasattr(gt.bboxes, 'tensor')
                                             else gt.bboxes, labels=gt.labels,
                                             scores=torch.ones(len(gt.labels)))  # fmt: skip
        samples.append(sample)
    evaluator.process(samples)
    metrics = evaluator.evaluate(len(samples))
    return metrics, '\n'.join(r.getMessage() for r in records)


@pytest.mark.parametrize('classes', [OWN, VOC_CLASSES])
def test_per_class_table_names_the_config_classes(tmp_path, classes):
    root = str(tmp_path / 'VOCdevkit')
    make_voc_dataset(root, images_per_split=3, classes=classes)
    dataset = DATASETS.build(dict(
        type='CheckedVOCDataset', data_root=root, ann_file='VOC2007/ImageSets/Main/test.txt',
        data_prefix=dict(sub_data_root='VOC2007/'), metainfo=dict(classes=classes),
        test_mode=True, pipeline=PIPELINE))  # fmt: skip
    own = classes == OWN
    # VOC's year only for VOC's own classes (its eval_mode warnings still apply there)
    assert dataset.metainfo['dataset_type'] == (None if own else 'VOC2007')
    metrics, log = _evaluate(dataset)
    assert metrics['pascal_voc/mAP'] == pytest.approx(1.0)
    rows = [line.split('|')[1].strip() for line in log.splitlines() if line.count('|') > 5]
    names = [r for r in rows if r and r not in ('class', 'mAP')]
    assert names == list(classes)
    if own:
        assert 'aeroplane' not in log
    # mmdet's plain VOCDataset on the same folder: VOC's names on the rows of one's own classes
    plain = DATASETS.build(dict(
        type='VOCDataset', data_root=root, ann_file='VOC2007/ImageSets/Main/test.txt',
        data_prefix=dict(sub_data_root='VOC2007/'), metainfo=dict(classes=classes),
        test_mode=True, pipeline=PIPELINE))  # fmt: skip
    _, plain_log = _evaluate(plain)
    assert 'aeroplane' in plain_log and 'redbox' not in plain_log
