"""docs/own_data.md, "Train on your own data": its configs and commands, run as written, small.

The code blocks are read out of the page (``doc_blocks``). Each ``python`` block starting with
``# configs/<name>.py`` is written to that file of a temporary folder (next to links to the
repository's configs); each line of the worked example's ``bash`` block runs its tool in this
process, in that folder, with arguments appended that shrink it (8 training images of 96 px, 2
iterations) and the last checkpoint's name in place of ``iter_2000.pth``. Nothing else is changed.
"""

import glob
import os
import os.path as osp
import shlex

import mmengine
import pytest
from data_factory import make_voc_dataset
from doc_blocks import config_blocks, fenced_blocks, shell_commands
from mmdet.registry import DATASETS
from tool_runner import CONFIGS, load_tool

from ssd_plugin.cli.data_root import load_config_with_data_root

DOC = 'docs/own_data.md'
WORKFLOW = '## Worked example: COCO-format data'
CHECK = '## Check a dataset before a long run'
LOADER = ['batch_size=2', 'num_workers=0', 'persistent_workers=False']
TINY = {
    'make_demo_dataset.py': ['--num-train', '8', '--num-val', '4', '--image-size', '96'],
    'analysis/default_box_coverage.py': ['--search-gts', '500'],
    'train.py': [
        '--cfg-options',
        *(f'{s}_dataloader.{o}' for s in ('train', 'val') for o in LOADER),
        'train_cfg.max_iters=2',
        'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2',
    ],  # fmt: skip
    'test.py': ['--cfg-options', *(f'test_dataloader.{o}' for o in LOADER)],
}
CHECKPOINT = ('iter_2000.pth', 'iter_2.pth')  # the page's schedule, the tiny one's


def _commands(heading: str) -> list:
    """The argument lists of the commands in the page's ``bash`` block under ``heading``."""
    (block,) = fenced_blocks(DOC, heading, 'bash')
    return [shlex.split(command) for command in shell_commands(block)]


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    """A folder with configs/ (links to the repository's) and the page's configs in it."""
    os.makedirs(tmp_path / 'configs')
    for path in glob.glob(osp.join(CONFIGS, '*.py')):
        os.symlink(path, tmp_path / 'configs' / osp.basename(path))
    for rel, text in config_blocks(DOC).items():
        (tmp_path / rel).write_text(text)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_own_data_example_runs_as_written(workspace):
    commands = _commands(WORKFLOW)
    tools = [argv[1] for argv in commands]
    assert tools == ['tools/make_demo_dataset.py', 'tools/analysis/default_box_coverage.py',
                     'tools/train.py', 'tools/test.py']  # fmt: skip
    for argv in commands:
        assert argv[0] == 'python'
        tool = argv[1].removeprefix('tools/')
        args = [a.replace(*CHECKPOINT) for a in argv[2:]] + TINY[tool]
        load_tool(tool).main(args)

    coverage = mmengine.load(workspace / 'work_dirs/my_shapes_coverage/coverage.json')
    assert coverage['report']['num_images'] == 8  # the moved training set
    assert osp.isfile(workspace / 'work_dirs/my_shapes' / CHECKPOINT[1])
    (metrics,) = glob.glob(str(workspace / 'work_dirs/my_shapes/*/*.json'))  # the test run's
    names = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')
    assert {f'coco/bbox_{n}' for n in names} <= mmengine.load(metrics).keys()
    assert not osp.exists(workspace / 'data/demo_shapes')  # the config's own data_root unused


def test_own_voc_config_reads_its_classes(workspace):
    (voc_config,) = [rel for rel in config_blocks(DOC) if 'voc' in rel]
    cfg = load_config_with_data_root(voc_config)
    classes = cfg.train_dataloader.dataset.dataset.metainfo['classes']
    make_voc_dataset(str(workspace / 'my_voc'), classes=classes)
    cfg = load_config_with_data_root(voc_config, str(workspace / 'my_voc'))
    assert cfg.model.bbox_head.num_classes == len(classes)
    train = DATASETS.build(cfg.train_dataloader.dataset)
    val = DATASETS.build(cfg.val_dataloader.dataset)
    for dataset in (train, val):
        assert dataset.metainfo['classes'] == classes
        labels = {i['bbox_label'] for k in range(len(dataset))
                  for i in dataset.get_data_info(k)['instances']}  # fmt: skip
        assert labels and labels <= set(range(len(classes)))


def test_dataset_check_command_runs_as_written(workspace):
    """The "Check a dataset" command, on VOC-format data of the page's own classes."""
    (voc_config,) = [rel for rel in config_blocks(DOC) if 'voc' in rel]
    classes = load_config_with_data_root(voc_config).train_dataloader.dataset.dataset.metainfo[
        'classes'
    ]
    (argv,) = _commands(CHECK)
    assert argv[:3] == ['python', 'tools/analysis/check_dataset.py', voc_config]
    data_root = workspace / argv[argv.index('--data-root') + 1]
    make_voc_dataset(str(data_root), classes=classes)
    tool = load_tool('analysis/check_dataset.py')
    assert tool.main(argv[2:] + ['--workers', '1']) == 0
    os.remove(next((data_root / 'VOC2007' / 'JPEGImages').iterdir()))
    assert tool.main(argv[2:] + ['--workers', '1']) == 1  # a missing image is reported
