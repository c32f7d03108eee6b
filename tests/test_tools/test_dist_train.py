"""Distributed training and testing on CPUs (gloo): the dist_* and slurm_* scripts.

Two processes train SSDLite for two iterations on a tiny dataset; a probe hook
(``dist_probe.py``) records, per rank, its own losses, what the message hub logged and the
weights. Then ``slurm_test.sh`` (through stand-ins for ``srun``/``scontrol`` that start the tasks
with Slurm's variables) and ``dist_test.sh`` evaluate the checkpoint with two processes each.
The demo network, made deterministic, then trains on one global batch split over 1 process,
2 processes (``slurm_train.sh``) and 2 "nodes" (``dist_train.sh`` twice): the same weights, the
same log line and checkpoint meta.
"""

import copy
import glob
import os
import os.path as osp
import re
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

import mmengine
import numpy as np
import pytest
import torch
from mmengine.config import Config
from tool_runner import CONFIGS, TOOLS, load_tool, run, tiny_config

SSDLITE = osp.join(CONFIGS, 'ssdlite_mobilenetv2_8xb24-600e_coco.py')
FAKE_SRUN = r"""#!/usr/bin/env bash
# Stand-in for Slurm's srun: records its arguments, starts --ntasks copies of the command.
echo "$@" > "$(dirname "$0")/srun_args"
ntasks=1
while [[ $1 == -* ]]; do
    case $1 in --ntasks=*) ntasks=${1#*=} ;; -p) shift ;; esac
    shift
done
pids=()
for ((i = 0; i < ntasks; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NTASKS=$ntasks SLURM_NODELIST=node0 "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def fake_slurm(bin_dir) -> dict:
    """Stand-ins for ``srun`` and ``scontrol`` in ``bin_dir``; returns the environment to use."""
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text(FAKE_SRUN)
    (bin_dir / 'scontrol').write_text('#!/usr/bin/env bash\necho 127.0.0.1\n')
    for tool in ('srun', 'scontrol'):
        os.chmod(bin_dir / tool, 0o755)
    return dict(PATH=f'{bin_dir}:{os.environ["PATH"]}', PYTHON=sys.executable,
                MASTER_PORT=str(free_port()))  # fmt: skip


@pytest.fixture(scope='module')
def dist_run(tmp_path_factory):
    """Two-process training via tools/dist_train.sh; returns (config, work_dir, output)."""
    root = tmp_path_factory.mktemp('dist')
    config = tiny_config(
        SSDLITE, str(root),
        custom_imports=dict(imports=['ssd_plugin', 'dist_probe'], allow_failed_imports=False),
        custom_hooks=Config.fromfile(SSDLITE).custom_hooks + [dict(type='RankProbeHook')],
        train_cfg=dict(max_epochs=2, val_interval=5),  # 4 images / (2 ranks x 2) = 1 per epoch
        log_level='DEBUG',  # every rank writes its own log file
    )  # fmt: skip
    work_dir = str(root / 'work_dir')
    # no thread counts in the environment, as in a plain shell
    output = run(['bash', osp.join(TOOLS, 'dist_train.sh'), config, '2', '--work-dir', work_dir],
                 cwd=str(root), env=dict(PYTHON=sys.executable, PORT=str(free_port()),
                                         OMP_NUM_THREADS='', MKL_NUM_THREADS=''))  # fmt: skip
    return config, work_dir, output


def test_a_two_process_run_prints_one_line_instead_of_warnings(dist_run):
    """torchrun's and mmengine's thread-count notices, mmengine's start-method switch and
    torch's broadcast_buffers deprecation came once per process; one line says the counts."""
    output = dist_run[2]
    assert output.count('dist_train.sh: OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 per process') == 1
    for noise in ('Warning', 'Setting OMP_NUM_THREADS', 'start method', 'broadcast_buffers'):
        assert noise not in output


def test_ranks_log_the_mean_loss_and_end_with_the_same_weights(dist_run):
    _, work_dir, _ = dist_run
    probes = [torch.load(osp.join(work_dir, f'probe_rank{r}.pth')) for r in (0, 1)]
    own = np.array([p['own_losses'] for p in probes])  # (rank, iteration)
    assert own.shape == (2, 2)
    assert not np.allclose(own[0], own[1])  # each rank trains on its own images
    for probe in probes:  # the message hub (what the logs show) holds the mean over ranks
        np.testing.assert_allclose(probe['logged'], own.mean(axis=0), rtol=1e-6)
    for name, value in probes[0]['params'].items():
        assert torch.equal(value, probes[1]['params'][name]), name

    # and so does each rank's own log file
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*_rank[01].log')))
    assert len(logs) == 2
    logged = [[float(v) for v in re.findall(r'Epoch\(train\).* loss: ([\d.]+)', open(f).read())]
              for f in logs]  # fmt: skip
    assert logged[0] == logged[1]
    np.testing.assert_allclose(logged[0], own.mean(axis=0), atol=1e-4)


def test_slurm_test_and_dist_test_match_single_process_test(dist_run, tmp_path):
    config, work_dir, _ = dist_run
    checkpoint = osp.join(work_dir, 'epoch_2.pth')
    bin_dir = tmp_path / 'bin'
    slurm_env = fake_slurm(bin_dir)

    slurm_dir = str(tmp_path / 'slurm')
    run(['bash', osp.join(TOOLS, 'slurm_test.sh'), 'cpu', 'ssd-test', config, checkpoint,
         '--work-dir', slurm_dir],
        cwd=str(tmp_path),
        env=dict(slurm_env, GPUS='2', GPUS_PER_NODE='2'))  # fmt: skip
    srun_args = (bin_dir / 'srun_args').read_text().split()
    assert srun_args[:2] == ['-p', 'cpu'] and '--ntasks=2' in srun_args
    assert srun_args[srun_args.index('-u') + 2 :][:2] == [config, checkpoint]

    dist_dir = str(tmp_path / 'dist')
    run(['bash', osp.join(TOOLS, 'dist_test.sh'), config, checkpoint, '2', '--work-dir', dist_dir],
        cwd=str(tmp_path), env=dict(PYTHON=sys.executable, PORT=str(free_port())))  # fmt: skip

    single_dir = str(tmp_path / 'single')
    load_tool('test.py').main([config, checkpoint, '--work-dir', single_dir])
    slurm, dist, single = (mmengine.load(glob.glob(osp.join(d, '*', '*.json'))[0])
                           for d in (slurm_dir, dist_dir, single_dir))  # fmt: skip
    metrics = [k for k in single if k.startswith('coco/')]
    assert metrics and 'coco/bbox_mAP' in metrics
    for distributed in (slurm, dist):  # each process scores its shard; rank 0 merges them
        np.testing.assert_equal({k: distributed[k] for k in metrics},
                                {k: single[k] for k in metrics})  # fmt: skip


DEMO = osp.join(CONFIGS, 'ssd_demo_shapes.py')
GLOBAL_BATCH = 4
# The demo made deterministic: no flip, no photometric distortion, no shuffling, BatchNorm
# frozen in the backbone and none in the neck (training BN normalises over each process's own
# images), plain SGD at a constant lr, scaled by the global batch / the demo's base (8): 0.5.
# The stem (conv1 before the max pool) is frozen too: a batch of 4 and two of 2 sum a weight
# gradient in another order, and the float32 rounding difference left in a trained stem (~5e-7)
# flips near-ties of the 3x3 max pool, which moves whole gradient values and grew into a 4e-3
# difference of conv1 after 3 steps (measured); frozen, the pool sees the same bits in every run
DETERMINISTIC = dict(
    model=dict(backbone=dict(norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True,
                             frozen_stages=0),
               neck=dict(norm_cfg=None)),
    train_dataloader=dict(
        sampler=dict(type='InfiniteSampler', shuffle=False),
        dataset=dict(pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale=(192, 192), keep_ratio=False),
            dict(type='PackDetInputs'),
        ]),
    ),
    train_cfg=dict(_delete_=True, type='IterBasedTrainLoop', max_iters=3),
    val_dataloader=None, val_cfg=None, val_evaluator=None,
    test_dataloader=None, test_cfg=None, test_evaluator=None,
    optim_wrapper=dict(_delete_=True, type='OptimWrapper',
                       optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
    param_scheduler=[],
    default_hooks=dict(checkpoint=dict(interval=3)),
)  # fmt: skip


def _demo_config(root, processes: int) -> str:
    """The deterministic demo, each of ``processes`` processes taking its share of the batch."""
    folder = root / f'{processes}proc'
    folder.mkdir()
    cfg = copy.deepcopy(DETERMINISTIC)  # merging pops the `_delete_` keys
    cfg['train_dataloader']['batch_size'] = GLOBAL_BATCH // processes
    return tiny_config(DEMO, str(folder), **cfg)


def _log(work_dir: str) -> str:
    """Rank 0's log of the run in ``work_dir``."""
    (log,) = glob.glob(osp.join(work_dir, '*', '*[0-9].log'))
    return open(log).read()


@pytest.fixture(scope='module')
def global_batch_runs(tmp_path_factory):
    """Three iterations on a global batch of 4: 1 x 4 in this process, 2 x 2 through
    slurm_train.sh (with the srun stand-in), 2 "nodes" x 1 through dist_train.sh started twice
    on 127.0.0.1. Returns each launch's work dir."""
    root = tmp_path_factory.mktemp('global_batch')
    runs = {name: str(root / name) for name in ('1x4', '2x2', '2nodes')}
    load_tool('train.py').main([_demo_config(root, 1), '--work-dir', runs['1x4']])

    config = _demo_config(root, 2)
    env = dict(fake_slurm(root / 'bin'), GPUS='2', GPUS_PER_NODE='2')
    run(['bash', osp.join(TOOLS, 'slurm_train.sh'), 'cpu', 'ssd', config, runs['2x2']],
        cwd=str(root), env=env)  # fmt: skip

    port = str(free_port())

    def node(rank: int) -> str:
        return run(['bash', osp.join(TOOLS, 'dist_train.sh'), config, '1',
                    '--work-dir', runs['2nodes']], cwd=str(root),
                   env=dict(PYTHON=sys.executable, NNODES='2', NODE_RANK=str(rank),
                            MASTER_ADDR='127.0.0.1', PORT=port))  # fmt: skip

    with ThreadPoolExecutor(2) as pool:  # both "nodes" at once: each waits for the other
        list(pool.map(node, (0, 1)))
    return runs


@pytest.mark.parametrize('launch', ['2x2', '2nodes'])
def test_the_global_batch_decides_the_model_not_the_process_count(global_batch_runs, launch):
    single, other = (torch.load(osp.join(global_batch_runs[name], 'iter_3.pth'),
                                weights_only=False)['state_dict']
                     for name in ('1x4', launch))  # fmt: skip
    assert single.keys() == other.keys()
    for key, value in single.items():
        if value.is_floating_point():  # float32 sums in another order: 1e-5 of the tensor's scale
            atol = 1e-5 * float(value.abs().max())
            torch.testing.assert_close(other[key], value, rtol=0, atol=atol, msg=key)
        else:
            assert torch.equal(other[key], value), key


@pytest.mark.parametrize('launch,processes', [('1x4', 1), ('2x2', 2), ('2nodes', 2)])
def test_each_launch_states_and_records_its_global_batch(global_batch_runs, launch, processes):
    work_dir = global_batch_runs[launch]
    per_process = GLOBAL_BATCH // processes
    word = 'process' if processes == 1 else 'processes'
    # the demo's lr 0.01 was tuned for 8 images: 4 images per step take half of it
    assert (f'global batch: {processes} {word} x {per_process} images = 4 (base 8): '
            f'lr x 0.5 -> lr 0.005; seed 0') in _log(work_dir)  # fmt: skip
    assert 'LR is set based on batch size' not in _log(work_dir)  # mmengine's line, replaced
    checkpoint = torch.load(osp.join(work_dir, 'iter_3.pth'), weights_only=False)
    assert checkpoint['meta']['global_batch'] == dict(
        world_size=processes, batch_per_process=per_process, total_batch=4, base_batch_size=8,
        lr_scaled=True, lr_factor=0.5, seed=0, deterministic=False)  # fmt: skip
    assert [g['lr'] for g in checkpoint['optimizer']['param_groups']] == [0.005]


@pytest.mark.parametrize('switch', [
    ['--no-auto-scale-lr', '--cfg-options', 'train_cfg.max_iters=1'],
    ['--cfg-options', 'auto_scale_lr.enable=False', 'train_cfg.max_iters=1'],
])  # fmt: skip
def test_scaling_off_warns_that_the_lr_does_not_follow_the_batch(tmp_path, switch):
    work_dir = str(tmp_path / 'work_dir')
    load_tool('train.py').main([_demo_config(tmp_path, 1), '--work-dir', work_dir, *switch])
    log = _log(work_dir)
    assert 'global batch: 1 process x 4 images = 4 (base 8): lr not scaled -> lr 0.01' in log
    assert ('WARNING - the learning rate is not scaled to the global batch: 4 images per step, '
            'but the config tuned it for 8') in log  # fmt: skip
    checkpoint = torch.load(osp.join(work_dir, 'iter_1.pth'), weights_only=False)
    assert [g['lr'] for g in checkpoint['optimizer']['param_groups']] == [0.01]
    assert checkpoint['meta']['global_batch']['lr_factor'] == 1.0


def test_resuming_with_another_global_batch_warns_that_the_lr_is_the_checkpoints(
    global_batch_runs, tmp_path
):
    """The 1 x 4 run's checkpoint resumed by 1 x 2: the optimiser keeps the lr scaled for 4."""
    checkpoint = osp.join(global_batch_runs['1x4'], 'iter_3.pth')
    work_dir = str(tmp_path / 'work_dir')
    load_tool('train.py').main([_demo_config(tmp_path, 2), '--work-dir', work_dir,
                                '--resume', checkpoint, '--cfg-options',
                                'train_cfg.max_iters=4'])  # fmt: skip
    log = _log(work_dir)
    assert 'global batch: 1 process x 2 images = 2 (base 8): lr x 0.25 -> lr 0.0025' in log
    assert (f'WARNING - {checkpoint} was trained with a global batch of 4 images (1 x 4, lr x '
            f'0.5); this run has 2 (1 x 2): the resumed optimiser keeps the checkpoint\'s '
            'learning rate') in log  # fmt: skip
    resumed = torch.load(osp.join(work_dir, 'iter_4.pth'), weights_only=False)
    assert [g['lr'] for g in resumed['optimizer']['param_groups']] == [0.005]
