"""Distributed training and testing on CPUs (gloo): tools/dist_train.sh and tools/slurm_test.sh.

Two processes train SSDLite for two iterations on a tiny dataset; a probe hook
(``dist_probe.py``) records, per rank, its own losses, what the message hub logged and the
weights. Then ``slurm_test.sh`` (through stand-ins for ``srun``/``scontrol`` that start the tasks
with Slurm's variables) evaluates the checkpoint with two processes.
"""

import glob
import os
import os.path as osp
import re
import socket
import sys

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


@pytest.fixture(scope='module')
def dist_run(tmp_path_factory):
    """Two-process training via tools/dist_train.sh; returns (config, work_dir)."""
    root = tmp_path_factory.mktemp('dist')
    config = tiny_config(
        SSDLITE, str(root),
        custom_imports=dict(imports=['ssd_plugin', 'dist_probe'], allow_failed_imports=False),
        custom_hooks=Config.fromfile(SSDLITE).custom_hooks + [dict(type='RankProbeHook')],
        train_cfg=dict(max_epochs=2, val_interval=5),  # 4 images / (2 ranks x 2) = 1 per epoch
        log_level='DEBUG',  # every rank writes its own log file
    )  # fmt: skip
    work_dir = str(root / 'work_dir')
    run(['bash', osp.join(TOOLS, 'dist_train.sh'), config, '2', '--work-dir', work_dir],
        cwd=str(root), env=dict(PYTHON=sys.executable, PORT=str(free_port())))  # fmt: skip
    return config, work_dir


def test_ranks_log_the_mean_loss_and_end_with_the_same_weights(dist_run):
    _, work_dir = dist_run
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


def test_slurm_test_matches_single_process_test(dist_run, tmp_path):
    config, work_dir = dist_run
    checkpoint = osp.join(work_dir, 'epoch_2.pth')
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text(FAKE_SRUN)
    (bin_dir / 'scontrol').write_text('#!/usr/bin/env bash\necho 127.0.0.1\n')
    for tool in ('srun', 'scontrol'):
        os.chmod(bin_dir / tool, 0o755)

    dist_dir = str(tmp_path / 'slurm')
    run(['bash', osp.join(TOOLS, 'slurm_test.sh'), 'cpu', 'ssd-test', config, checkpoint,
         '--work-dir', dist_dir],
        cwd=str(tmp_path),
        env=dict(PATH=f'{bin_dir}:{os.environ["PATH"]}', GPUS='2', GPUS_PER_NODE='2',
                 PYTHON=sys.executable, MASTER_PORT=str(free_port())))  # fmt: skip
    srun_args = (bin_dir / 'srun_args').read_text().split()
    assert srun_args[:2] == ['-p', 'cpu'] and '--ntasks=2' in srun_args
    assert srun_args[srun_args.index('-u') + 2 :][:2] == [config, checkpoint]

    single_dir = str(tmp_path / 'single')
    load_tool('test.py').main([config, checkpoint, '--work-dir', single_dir])
    distributed, single = (mmengine.load(glob.glob(osp.join(d, '*', '*.json'))[0])
                           for d in (dist_dir, single_dir))  # fmt: skip
    metrics = [k for k in single if k.startswith('coco/')]
    assert metrics and 'coco/bbox_mAP' in metrics
    np.testing.assert_equal({k: distributed[k] for k in metrics}, {k: single[k] for k in metrics})
