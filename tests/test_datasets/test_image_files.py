"""Bad image files in the checked datasets: empty ones at load, undecodable ones in training."""

import glob
import json
import os.path as osp
import re

import pytest
from data_factory import make_voc_dataset
from mmdet.registry import DATASETS
from mmengine.config import Config
from mmengine.runner import Runner

from ssd_plugin.datasets.demo_shapes import DEMO_CLASSES, make_split

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs')]  # fmt: skip


@pytest.fixture()
def shapes(tmp_path):
    """A 4-image demo split: (root, parsed json)."""
    ann_file = make_split(str(tmp_path), 'train', 4, seed=0, image_size=64)
    return tmp_path, json.load(open(ann_file))


def _coco(root, **kwargs):
    cfg = dict(type='CheckedCocoDataset', data_root=str(root),
               ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
               metainfo=dict(classes=DEMO_CLASSES), filter_cfg=dict(filter_empty_gt=False),
               pipeline=PIPELINE)  # fmt: skip
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def test_empty_image_file_is_named_at_load(shapes):
    root, coco = shapes
    empty = root / 'train' / coco['images'][2]['file_name']
    empty.write_bytes(b'')
    with pytest.raises(ValueError, match=re.escape(
            f"1 of the 4 image files of {root}/annotations/instances_train.json are empty (0 "
            f"bytes), e.g. ['{empty}']")):  # fmt: skip
        _coco(root)
    _coco(root, check_image_files=False)  # the check can be turned off


def test_empty_image_file_is_named_at_load_voc(tmp_path):
    root = str(tmp_path / 'VOCdevkit')
    make_voc_dataset(root, images_per_split=3)
    stem = open(osp.join(root, 'VOC2007', 'ImageSets', 'Main', 'trainval.txt')).read().split()[1]
    image = osp.join(root, 'VOC2007', 'JPEGImages', f'{stem}.jpg')
    open(image, 'wb').close()
    with pytest.raises(ValueError, match=re.escape(f"are empty (0 bytes), e.g. ['{image}']")):
        DATASETS.build(
            dict(
                type='CheckedVOCDataset',
                data_root=root,
                ann_file='VOC2007/ImageSets/Main/trainval.txt',
                data_prefix=dict(sub_data_root='VOC2007/'),
                pipeline=PIPELINE,
            )
        )


def test_undecodable_image_is_named_with_the_reason(shapes):
    root, coco = shapes
    dataset = _coco(root)  # the file breaks after start-up (or was never an image)
    bad = root / 'train' / coco['images'][1]['file_name']
    bad.write_bytes(b'not a jpeg at all')
    with pytest.raises(ValueError, match=re.escape(f'cannot load image {bad} of ') + '.*'
                       + re.escape('OpenCV cannot decode it: UnidentifiedImageError: cannot '
                                   'identify image file')) as info:  # fmt: skip
        dataset[1]
    assert 'failed to load image' in str(info.value.__cause__)  # mmcv's error, chained
    bad.write_bytes(b'')  # emptied after the load-time check: OpenCV's !buf.empty()
    with pytest.raises(ValueError, match=re.escape(f'{bad} of ') + '.*the file is empty'):
        dataset[1]
    with pytest.raises(ValueError, match=re.escape(f'{bad}')):
        _coco(root, check_image_files=False, test_mode=True)[1]


def test_other_pipeline_errors_pass_unchanged(shapes):
    root, _ = shapes
    dataset = _coco(root)

    def pipeline(results):
        raise KeyError('nope')

    dataset.pipeline = pipeline
    with pytest.raises(KeyError, match='nope'):  # the image decodes: it is not blamed
        dataset[0]


def _train_cfg(root, tmp_path, **dataset):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'ssd_demo_shapes.py'))
    cfg.train_dataloader.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.update(data_root=str(root) + '/', **dataset)
    cfg.merge_from_dict(dict(
        train_cfg=dict(max_iters=2, val_interval=10), val_cfg=None, val_dataloader=None,
        val_evaluator=None, test_cfg=None, test_dataloader=None, test_evaluator=None,
        work_dir=str(tmp_path / 'work_dir'), default_hooks=dict(checkpoint=None),
    ))  # fmt: skip
    return cfg


def test_undecodable_image_during_training(tmp_path):
    make_split(str(tmp_path), 'train', 4, seed=0, image_size=64)
    bad = tmp_path / 'train' / '000002.jpg'
    bad.write_bytes(bad.read_bytes()[:300])  # a JPEG cut short in its header
    cfg = _train_cfg(tmp_path, tmp_path)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=re.escape(f'cannot load image {bad}') + '.*truncated '
                       'JPEG .*skip_bad_images=True'):  # fmt: skip
        runner.train()


def test_skipped_in_training_when_the_config_opts_in(tmp_path):
    make_split(str(tmp_path), 'train', 4, seed=0, image_size=64)
    bad = tmp_path / 'train' / '000002.jpg'
    bad.write_bytes(b'garbage')
    runner = Runner.from_cfg(_train_cfg(tmp_path, tmp_path, skip_bad_images=True))
    runner.train()
    assert runner.iter == 2
    (log_file,) = glob.glob(str(tmp_path / 'work_dir' / '*' / '*.log'))
    log = open(log_file).read()
    assert f'WARNING - skipped image {bad}: OpenCV cannot decode it' in log
    assert '(1 skipped by this process so far; skip_bad_images=True)' in log
