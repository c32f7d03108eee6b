"""Demo-config training speed on the CPU, idle and beside one busy process, per thread setting.

Usage::

    python tools/benchmarks/bench_cpu_threads.py                      # 40 timed iterations
    python tools/benchmarks/bench_cpu_threads.py --iters 10 --warmup 3 --settings policy

Each run is ``tools/train.py configs/ssd_demo_shapes.py`` in a fresh process, on a small demo
"shapes" set written to a temporary folder, with every iteration's time logged (mmengine's
``time``: data + step); s/iter is the mean of the ``--iters`` iterations after ``--warmup``.
Settings (``--settings``):

- ``default``: torch's default thread count (``OMP_NUM_THREADS`` set to it, which also keeps the
  plugin's thread policy out of the run);
- ``omp1``: ``OMP_NUM_THREADS=1``;
- ``policy``: no ``OMP_NUM_THREADS``: the plugin's ``CpuThreadsHook`` picks the threads from the
  free cores (``ssd_plugin/engine/cpu_threads.py``).

Loads (``--loads``): ``idle``, and ``busy``: one process spinning on a core, started before the
run and stopped after it by this script. The header shows ``uptime`` and the load average: the
figures mean something only when nothing else runs on the machine.
"""

import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

import torch
from bench_common import REPO, print_header, print_table

from ssd_plugin.datasets.demo_shapes import make_demo_dataset

CONFIG = osp.join(REPO, 'configs', 'ssd_demo_shapes.py')
SETTINGS = ('default', 'omp1', 'policy')
LOADS = ('idle', 'busy')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iters', type=int, default=40, help='timed iterations per run')
    parser.add_argument('--warmup', type=int, default=5, help='untimed first iterations')
    parser.add_argument('--num-train', type=int, default=64, help='demo training images')
    parser.add_argument('--settings', nargs='+', choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument('--loads', nargs='+', choices=LOADS, default=list(LOADS))
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 1:
        parser.error('--iters and --warmup must be >= 1')
    return args


def thread_env(setting: str) -> Dict[str, str]:
    """The environment of a run with ``setting``."""
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    env['PYTHONPATH'] = os.pathsep.join(p for p in (REPO, env.get('PYTHONPATH')) if p)
    if setting == 'default':
        env['OMP_NUM_THREADS'] = str(torch.get_num_threads())  # this process: torch's default
    elif setting == 'omp1':
        env['OMP_NUM_THREADS'] = '1'
    return env


def train_overrides(data_root: str, work_dir: str, max_iters: int) -> List[str]:
    """``--cfg-options`` that point the demo config at ``data_root`` and log every iteration."""
    ann = osp.join(data_root, 'annotations', 'instances_val.json')
    root = data_root.rstrip('/') + '/'
    return [
        '--work-dir', work_dir, '--cfg-options',
        *(f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')),
        f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
        f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters + 1}',
        f'default_hooks.checkpoint.interval={max_iters + 1}', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.save_last=False',
    ]  # fmt: skip


def iteration_times(work_dir: str) -> Dict[int, float]:
    """Each logged training iteration's ``time`` (s), from mmengine's ``vis_data/scalars.json``."""
    (scalars,) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    times = {}
    with open(scalars) as f:
        for line in f:
            record = json.loads(line)
            if 'time' in record and 'loss' in record:
                times[record['iter']] = record['time']
    return times


def run_once(setting: str, busy: bool, data_root: str, work_dir: str, args) -> Optional[float]:
    """Mean s/iter of the timed iterations of one training run (None when it failed)."""
    max_iters = args.warmup + args.iters
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), CONFIG,
           *train_overrides(data_root, work_dir, max_iters)]  # fmt: skip
    spinner = subprocess.Popen([sys.executable, '-c', 'while True: pass']) if busy else None
    try:
        proc = subprocess.run(cmd, env=thread_env(setting), capture_output=True, text=True)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if proc.returncode != 0:
        print(f'{setting}/{"busy" if busy else "idle"} failed:\n{proc.stderr[-3000:]}')
        return None
    times = iteration_times(work_dir)
    timed = [times[i] for i in range(args.warmup + 1, max_iters + 1) if i in times]
    return sum(timed) / len(timed) if timed else None


def main(argv=None) -> None:
    args = parse_args(argv)
    print_header('Demo-config training on the CPU: s/iter per thread setting and load', 'cpu')
    print('uptime: ' + subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory() as tmp:
        data_root = osp.join(tmp, 'data')
        make_demo_dataset(data_root, num_train=args.num_train, num_val=8)
        results = {}
        for setting in args.settings:
            for load in args.loads:
                work_dir = osp.join(tmp, f'{setting}_{load}')
                results[setting, load] = run_once(setting, load == 'busy', data_root, work_dir,
                                                  args)  # fmt: skip
                print(f'{setting:8s} {load:5s} {results[setting, load]}', flush=True)
    rows = []
    for setting in args.settings:
        row = [setting] + [_fmt(results[setting, load]) for load in args.loads]
        if set(LOADS) <= set(args.loads):
            idle, busy = results[setting, 'idle'], results[setting, 'busy']
            row.append(f'{busy / idle:.2f}x' if idle and busy else '-')
        rows.append(row)
    header = ['threads'] + [f'{load} s/iter' for load in args.loads]
    if set(LOADS) <= set(args.loads):
        header.append('busy / idle')
    print_table(f'{args.iters} iterations after {args.warmup} of warm-up', header, rows)
    print('uptime: ' + subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip())


def _fmt(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.3f}'


if __name__ == '__main__':
    main()
