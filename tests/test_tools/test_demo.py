"""The demo: its config, exact mid-epoch resume, the dataset CLI, the curves, and run_demo.sh."""

import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from ssd_plugin.datasets.demo_shapes import DEMO_CLASSES, DEMO_PALETTE, make_demo_dataset
from ssd_plugin.engine.checkpoint import weights_only_checkpoint_loading

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'ssd_demo_shapes.py')
COCO_NUMBERS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')  # mmdet's copypaste order


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo_shapes')
    make_demo_dataset(str(root), seed=0, num_train=12, num_val=4, image_size=96)
    return str(root)


def _tiny_cfg(data_root, work_dir, max_iters=8, ckpt_interval=3):
    """The demo config on tiny data: batch 2, one val at the end, no data loader workers."""
    cfg = Config.fromfile(CONFIG)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root + '/'
        cfg[loader].batch_size = 2
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = osp.join(data_root, 'annotations/instances_val.json')
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    cfg.param_scheduler[0].end = 2
    cfg.param_scheduler[1].end = max_iters
    cfg.default_hooks.checkpoint.interval = ckpt_interval
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.visualization = dict(type='DetVisualizationHook', draw=False)
    cfg.work_dir = str(work_dir)
    return cfg


class _Killed(Exception):
    pass


class _KillAt(Hook):
    """Stands for a SIGKILL: stops the run at the start of a 1-based iteration."""

    def __init__(self, iteration):
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.iteration:
            raise _Killed


def _train(cfg, name, kill_at=None):
    cfg.experiment_name = name
    runner = Runner.from_cfg(cfg)
    if kill_at is not None:
        runner.register_hook(_KillAt(kill_at))
    runner.train()
    return runner


def test_config_matches_the_generator():
    cfg = Config.fromfile(CONFIG)
    assert cfg.metainfo['classes'] == DEMO_CLASSES
    assert [tuple(c) for c in cfg.metainfo['palette']] == DEMO_PALETTE
    assert cfg.model.bbox_head.num_classes == len(DEMO_CLASSES)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.train_dataloader.sampler.type == 'InfiniteSampler'
    assert {h['type'] for h in cfg.custom_hooks} >= {'NumClassCheckHook', 'NonFiniteLossHook'}


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(tiny_data, tmp_path):
    """12 images at batch 2 are 6 iterations per pass: the kill at 5 is mid-epoch."""
    full = _train(_tiny_cfg(tiny_data, tmp_path / 'full'), 'full')
    full_metrics = full.val_loop.run()  # the last val again, for its return value
    full_state = {k: v.clone() for k, v in full.model.state_dict().items()}

    work_dir = tmp_path / 'killed'
    with pytest.raises(_Killed):
        _train(_tiny_cfg(tiny_data, work_dir), 'killed', kill_at=5)
    assert open(work_dir / 'last_checkpoint').read().strip().endswith('iter_3.pth')
    assert not (work_dir / 'iter_6.pth').exists()

    cfg = _tiny_cfg(tiny_data, work_dir)
    cfg.resume, cfg.load_from = True, None  # what `tools/train.py --resume` sets
    with weights_only_checkpoint_loading():  # as tools/train.py resumes
        resumed = _train(cfg, 'resumed')
    assert resumed.iter == 8
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, full_state[key], rtol=1e-5, atol=1e-6, msg=key)
    assert resumed.val_loop.run() == pytest.approx(full_metrics, abs=1e-4, nan_ok=True)
    assert {f'coco/bbox_{n}' for n in COCO_NUMBERS} <= full_metrics.keys()  # CocoMetric ran


def test_num_classes_not_matching_the_dataset_is_named(tiny_data, tmp_path):
    cfg = _tiny_cfg(tiny_data, tmp_path, max_iters=1)
    cfg.model.bbox_head.num_classes = 3
    with pytest.raises(AssertionError, match=r'The `num_classes` \(3\) in MultiBoxHead .* '
                       r'the length of `classes` 5\) in CheckedCocoDataset'):  # fmt: skip
        _train(cfg, 'num_classes')


def test_dataset_cli_rejects_bad_arguments_by_name(tmp_path, capsys):
    from tools.make_demo_dataset import main

    for argv, name in (
        (['--num-train', '0'], '--num-train'),
        (['--image-size', 'big'], '--image-size'),
        (['--size-range', '0.5', '1.5'], '--size-range'),
        (['--seed', '-2'], '--seed'),
    ):
        with pytest.raises(SystemExit) as exc:
            main(['--out', str(tmp_path / 'x'), *argv])
        assert exc.value.code == 2
        assert f'argument {name}' in capsys.readouterr().err
    # a value argparse accepts but the library refuses (the smallest shape would be < 2 px)
    with pytest.raises(SystemExit, match=r'size_range\[0\] \* image_size must be at least 2'):
        main(['--out', str(tmp_path / 'x'), '--size-range', '0.02', '0.5', '--image-size', '64'])


def test_dataset_cli_writes_the_dataset(tmp_path, capsys):
    from tools.make_demo_dataset import main

    main(['--out', str(tmp_path), '--num-train', '3', '--num-val', '2', '--image-size', '64'])
    out = capsys.readouterr().out
    assert 'train: 3 images' in out and 'val: 2 images' in out
    coco = json.load(open(tmp_path / 'annotations' / 'instances_val.json'))
    assert len(coco['images']) == 2 and len(os.listdir(tmp_path / 'val')) == 2


def test_plot_curves_reads_resumed_runs(tmp_path):
    from tools.analysis.plot_curves import load_scalars, plot_curves

    first, second = tmp_path / '20240101_000000', tmp_path / '20240101_010000'
    for run, lines in (
        (first, [dict(loss=3.0, loss_cls=2.0, step=10), dict(loss=2.5, step=20)]),
        (second, [dict(loss=2.4, step=20), dict(loss=2.0, step=30),
                  {'coco/bbox_mAP': 0.4, 'coco/bbox_mAP_50': 0.7, 'step': 30}]),
    ):  # fmt: skip
        os.makedirs(run / 'vis_data')
        with open(run / 'vis_data' / 'scalars.json', 'w') as f:
            f.writelines(json.dumps(line) + '\n' for line in lines)
    losses, metrics = load_scalars(str(tmp_path))
    assert losses['loss'] == {10: 3.0, 20: 2.4, 30: 2.0}  # the resumed run wins at step 20
    assert losses['loss_cls'] == {10: 2.0}
    assert metrics['coco/bbox_mAP'] == {30: 0.4}
    last = plot_curves(str(tmp_path), str(tmp_path / 'curves.png'))
    assert last == {'coco/bbox_mAP': 0.4, 'coco/bbox_mAP_50': 0.7}
    assert (tmp_path / 'curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(FileNotFoundError, match='no \\*/vis_data/scalars.json'):
        load_scalars(str(tmp_path / 'nothing'))


def test_run_demo_end_to_end(tmp_path):
    """The whole `make demo` path (`--amp`) on 8 images and 4 iterations, in this environment."""
    mim = shutil.which('mim', path=osp.dirname(sys.executable))
    assert mim, f'no mim next to {sys.executable}: install openmim (make setup does)'
    env = dict(
        os.environ,
        VENV=osp.dirname(osp.dirname(mim)),
        DEMO_DATA=str(tmp_path / 'data'),
        DEMO_NUM_TRAIN='8',
        DEMO_NUM_VAL='3',
        DEMO_CFG_OPTIONS='train_cfg.max_iters=4 train_cfg.val_interval=4 '
        'train_dataloader.batch_size=4 default_hooks.checkpoint.interval=2',
    )
    work_dir = tmp_path / 'demo'
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'run_demo.sh'), str(work_dir)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'pkg_resources' not in proc.stdout + proc.stderr  # mim's import warning
    metrics = json.load(open(work_dir / 'metrics.json'))
    table = open(work_dir / 'metrics.txt').read()
    assert 'Average Precision' in table and all(c in table for c in DEMO_CLASSES)
    # metrics.json (the test run's file) holds the numbers the log's summary printed
    copypaste = re.search(r'bbox_mAP_copypaste: (.*)', table).group(1).split()
    assert [f'{metrics[f"coco/bbox_{n}"]:.3f}' for n in COCO_NUMBERS] == copypaste
    assert f'done: COCO bbox mAP {metrics["coco/bbox_mAP"]} ' in proc.stdout
    assert (work_dir / 'curves.png').stat().st_size > 0
    assert len(list((work_dir / 'predictions').glob('*.png'))) == 3


def test_run_demo_rejects_a_bad_demo_amp(tmp_path):
    env = dict(os.environ, DEMO_AMP='yes', DEMO_DATA=str(tmp_path / 'data'))
    proc = subprocess.run(['bash', osp.join(REPO, 'tools', 'run_demo.sh'), str(tmp_path / 'w')],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "DEMO_AMP must be 0 or 1, got 'yes'" in proc.stderr
    assert not (tmp_path / 'data').exists()  # stopped before any work
