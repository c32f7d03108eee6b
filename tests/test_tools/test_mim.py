"""``mim train`` / ``mim test`` find the installed plugin's tools and configs from any folder.

This needs the regular install that ``make setup`` does (``pip install .`` copies ``configs/`` and
``tools/`` into ``ssd_plugin/.mim``); the test fails if that copy differs from this checkout.
Training runs two CPU processes (``--launcher pytorch --gpus 2``, gloo); the config is found by
its name and pointed at a tiny COCO dataset through ``--cfg-options``, as a user would.
"""

import filecmp
import glob
import os.path as osp
import shutil
import socket
import sys

import mmengine
import pytest
import torch
from data_factory import SPLITS, make_coco_dataset
from mmdet.datasets import CocoDataset
from mmengine.utils import get_installed_path
from tool_runner import REPO, run

CONFIG = 'ssdlite_mobilenetv2_8xb24-600e_coco.py'


def _installed_mim_root() -> str:
    mim_root = osp.join(get_installed_path('ssd_plugin'), '.mim')
    stale = [
        name for name in ('tools/train.py', 'tools/test.py', f'configs/{CONFIG}',
                          'configs/ssd300_vgg16_8xb8-120e_coco.py')
        if not osp.isfile(osp.join(mim_root, name))
        or not filecmp.cmp(osp.join(REPO, name), osp.join(mim_root, name), shallow=False)
    ]  # fmt: skip
    if stale:
        pytest.fail(f'the installed ssd_plugin ({mim_root}) is missing or has old copies of '
                    f'{stale}: run `make setup` (a regular `pip install .`)')  # fmt: skip
    return mim_root


def _data_options(split: str, root: str) -> list:
    dataset = f'{split}_dataloader.dataset' + ('.dataset' if split == 'train' else '')
    return [
        f'{split}_dataloader.batch_size=2', f'{split}_dataloader.num_workers=0',
        f'{split}_dataloader.persistent_workers=False', f'{dataset}.data_root={root}/',
        f'{dataset}.ann_file=annotations/{split}.json', f'{dataset}.data_prefix.img={split}/',
    ] + ([f'{split}_evaluator.ann_file={root}/annotations/{split}.json'] if split != 'train'
         else ['train_dataloader.dataset.times=1'])  # fmt: skip


def test_mim_train_distributed_and_test(tmp_path):
    _installed_mim_root()
    mim = shutil.which('mim', path=osp.dirname(sys.executable))
    assert mim, f'no mim next to {sys.executable}'
    root = str(tmp_path / 'coco')
    make_coco_dataset(root, CocoDataset.METAINFO['classes'], SPLITS)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]

    work_dir = str(tmp_path / 'work_dir')
    # 4 train images / (2 processes x 2) = one iteration, then validation
    output = run([mim, 'train', 'ssd_plugin', CONFIG, '--launcher', 'pytorch', '--gpus', '2',
                  '--port', str(port), '--work-dir', work_dir, '--cfg-options',
                  *_data_options('train', root), *_data_options('val', root),
                  'train_cfg.max_epochs=1', 'randomness.seed=0'],
                 cwd=str(tmp_path), checkout=False)  # fmt: skip
    assert osp.join('ssd_plugin', '.mim', 'configs', CONFIG) in output  # found by name
    log = open(glob.glob(osp.join(work_dir, '*', '*.log'))[0]).read()
    assert 'Distributed training: True' in log and 'AllReduceLossHook' in log
    # the recipe's lr (0.015) was tuned for 8 x 24 = 192 images: 4 per step take 4 / 192 of it
    assert ('global batch: 2 processes x 2 images = 4 (base 192): lr x 0.0208333 -> '
            'lr 0.0003125; seed 0') in log  # fmt: skip
    assert 'coco/bbox_mAP' in log
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    assert torch.load(checkpoint, weights_only=False)['meta']['iter'] == 1

    test_dir = str(tmp_path / 'test_dir')
    run([mim, 'test', 'ssd_plugin', CONFIG, '--checkpoint', checkpoint, '--work-dir', test_dir,
         '--cfg-options', *_data_options('test', root), 'test_evaluator.classwise=False'],
        cwd=str(tmp_path), checkout=False)  # fmt: skip
    (metrics_file,) = glob.glob(osp.join(test_dir, '*', '*.json'))
    assert 'coco/bbox_mAP' in mmengine.load(metrics_file)
