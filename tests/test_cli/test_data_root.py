"""``move_data_root`` (``--data-root``): every dataset root and evaluator file moves."""

import argparse
import os.path as osp

import pytest
from mmengine.config import Config

from ssd_plugin.cli.data_root import load_config_with_data_root, move_data_root
from ssd_plugin_cli.options import add_data_root_arg

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs')


def _config(name: str) -> Config:
    return Config.fromfile(osp.join(CONFIGS, name))


def test_coco_config_moves_datasets_and_evaluators():
    cfg = _config('ssd300_vgg16_8xb8-120e_coco.py')
    assert cfg.data_root == 'data/coco/'
    changed = move_data_root(cfg, '/mnt/my_coco')
    assert cfg.data_root == '/mnt/my_coco/'
    train = cfg.train_dataloader.dataset.dataset  # inside the RepeatDataset
    assert train.data_root == '/mnt/my_coco/'
    assert train.ann_file == 'annotations/instances_train2017.json'  # relative to the root
    assert train.data_prefix == dict(img='train2017/')
    for split in ('val', 'test'):
        assert cfg[f'{split}_dataloader'].dataset.data_root == '/mnt/my_coco/'
        assert cfg[f'{split}_evaluator'].ann_file == (
            '/mnt/my_coco/annotations/instances_val2017.json'
        )
    assert changed == [
        'train_dataloader.dataset.dataset.data_root',
        'val_dataloader.dataset.data_root',
        'test_dataloader.dataset.data_root',
        'val_evaluator.ann_file',
        'test_evaluator.ann_file',
    ]


def test_voc_config_moves_every_concatenated_dataset():
    cfg = _config('ssd300_vgg16_8xb8-240e_voc0712.py')
    move_data_root(cfg, 'elsewhere/VOCdevkit/')
    leaves = cfg.train_dataloader.dataset.dataset.datasets  # Repeat(Concat([07, 12]))
    assert [leaf.data_root for leaf in leaves] == ['elsewhere/VOCdevkit/'] * 2
    assert [leaf.data_prefix.sub_data_root for leaf in leaves] == ['VOC2007/', 'VOC2012/']
    assert cfg.val_dataloader.dataset.data_root == 'elsewhere/VOCdevkit/'
    assert 'ann_file' not in cfg.val_evaluator  # VOCMetric reads the samples


def test_test_dev_moves_the_annotation_file_not_the_output():
    cfg = _config('ssd300_vgg16_8xb8-120e_coco_test-dev.py')
    outfile = cfg.test_evaluator.outfile_prefix
    move_data_root(cfg, '/d')
    assert cfg.test_evaluator.ann_file == '/d/annotations/image_info_test-dev2017.json'
    assert cfg.test_dataloader.dataset.ann_file == 'annotations/image_info_test-dev2017.json'
    assert cfg.test_evaluator.outfile_prefix == outfile


def test_datasets_without_data_root_and_evaluator_lists():
    cfg = Config(
        dict(
            data_root='./data/x',
            train_dataloader=dict(
                dataset=dict(
                    type='ConcatDataset',
                    datasets=[
                        dict(type='A', ann_file='data/x/a.json', data_prefix=dict(img='data/x/a/')),
                        dict(type='B', data_root='data/x/b', ann_file='b.json'),
                    ],
                )
            ),
            val_dataloader=None,
            val_evaluator=[dict(type='M', ann_file='data/x/a.json'), dict(type='N')],
        )
    )
    move_data_root(cfg, '/y/')
    a, b = cfg.train_dataloader.dataset.datasets
    assert (a.ann_file, a.data_prefix.img) == ('/y/a.json', '/y/a/')  # trailing '/' kept
    assert (b.data_root, b.ann_file) == ('/y/b', 'b.json')
    assert cfg.val_evaluator[0].ann_file == '/y/a.json' and 'ann_file' not in cfg.val_evaluator[1]


def test_path_outside_the_root_is_named_and_nothing_moves():
    cfg = _config('ssd_demo_shapes.py')
    cfg.test_evaluator.ann_file = 'other/annotations/instances_val.json'
    with pytest.raises(
        ValueError,
        match=r"test_evaluator.ann_file = 'other/annotations/instances"
        r"_val.json' is not under the config's data_root 'data/demo_shapes/'",
    ):
        move_data_root(cfg, '/new')
    assert cfg.train_dataloader.dataset.data_root == 'data/demo_shapes/'
    assert cfg.data_root == 'data/demo_shapes/'


def test_config_without_data_root_is_an_error():
    with pytest.raises(KeyError, match='no top-level data_root'):
        move_data_root(Config(dict(train_dataloader=dict(dataset=dict(data_root='x/')))), '/y')


def test_command_line_data_root_comes_before_cfg_options():
    parser = argparse.ArgumentParser()
    add_data_root_arg(parser)
    args = parser.parse_args(['--data-root', '/my/shapes'])
    cfg = load_config_with_data_root(
        osp.join(CONFIGS, 'ssd_demo_shapes.py'),
        args.data_root,
        {'val_evaluator.ann_file': '/elsewhere/val.json'},
    )
    assert cfg.train_dataloader.dataset.data_root == '/my/shapes/'
    assert cfg.val_evaluator.ann_file == '/elsewhere/val.json'  # --cfg-options win
    assert cfg.test_evaluator.ann_file == '/my/shapes/annotations/instances_val.json'
