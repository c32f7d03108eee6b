"""Peak memory of a distributed run's datasets: the plugin's CheckedCocoDataset against mmdet's.

Each dataset is loaded the way a training run loads it: ``N`` processes started by
``torch.distributed.run`` (as ``tools/dist_train.sh`` starts them, gloo), each building the
dataset from one COCO-format annotation file and iterating its shard with ``W`` data loader
workers (mmengine's ``DefaultSampler``; annotations only, no images are read). Per process it
reports the peak resident set (``VmHWM``: the process's largest RSS so far) and, at the end with
the workers alive, the proportional set size (``Pss``: shared pages divided among the processes
that share them, so the sum over processes is the memory the run takes). The two datasets run
in turn, ``--rounds`` times. A memory figure, not a speed figure: the machine's load does not
change it, but the header prints it with the CPU for the record.

Example (the figure of docs/distributed.md: a file of COCO train2017's size)::

    python tools/benchmarks/dist_memory.py --synthetic-coco 118287 860001 --processes 2 --workers 2
"""

import argparse
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import tempfile
from typing import Dict, List

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from bench_common import REPO, cpu_name, print_table, versions  # noqa: E402

from ssd_plugin.utils import describe_isa  # noqa: E402

DATASETS = ('CocoDataset', 'CheckedCocoDataset')
CLASSES = ('a', 'b', 'c')  # write_synthetic_coco's default classes


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--ann-file', help='a COCO-format annotation file (classes a, b, c)')
    source.add_argument('--synthetic-coco', nargs=2, type=int, metavar=('IMAGES', 'BOXES'),
                        help='write a seeded synthetic file of this size first')  # fmt: skip
    parser.add_argument('--processes', type=int, default=2)
    parser.add_argument('--workers', type=int, default=2, help='data loader workers per process')
    parser.add_argument('--batches', type=int, default=20, help='batches each process reads')
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument('--rank-run', metavar='DATASET', choices=DATASETS, help=argparse.SUPPRESS)
    parser.add_argument('--out-dir', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _memory_kib(pid: int) -> Dict[str, int]:
    """``VmHWM`` and ``VmRSS`` (``/proc/<pid>/status``) and ``Pss`` (``smaps_rollup``), KiB."""
    found = {}
    for name, keys in (('status', ('VmHWM', 'VmRSS')), ('smaps_rollup', ('Pss',))):
        with open(f'/proc/{pid}/{name}') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key in keys:
                    found[key] = int(value.split()[0])
    return found


def rank_run(dataset_type: str, ann_file: str, args: argparse.Namespace) -> None:
    """One process of the launch: build the dataset, read its shard, record the memory."""
    import torch.distributed as dist
    from mmengine.dataset import DefaultSampler, pseudo_collate
    from mmengine.registry import init_default_scope
    from torch.utils.data import DataLoader

    import ssd_plugin  # noqa: F401  (registers CheckedCocoDataset)
    from ssd_plugin.engine.cpu_threads import descendant_pids

    dist.init_process_group('gloo')
    init_default_scope('mmdet')
    from mmdet.registry import DATASETS as REGISTRY

    before = _memory_kib(os.getpid())['VmRSS']
    extra = dict(check_image_files=False) if dataset_type == 'CheckedCocoDataset' else {}
    dataset = REGISTRY.build(dict(
        type=dataset_type, data_root='', ann_file=ann_file, data_prefix=dict(img=''),
        metainfo=dict(classes=CLASSES), filter_cfg=dict(filter_empty_gt=False),
        pipeline=[dict(type='LoadAnnotations', with_bbox=True), dict(type='PackDetInputs')],
        **extra,
    ))  # fmt: skip
    loader = DataLoader(dataset, batch_size=8, sampler=DefaultSampler(dataset, seed=0),
                        num_workers=args.workers, collate_fn=pseudo_collate,
                        persistent_workers=args.workers > 0)  # fmt: skip
    batches = iter(loader)
    for _ in range(args.batches):
        next(batches)
    own = _memory_kib(os.getpid())
    workers = [_memory_kib(pid) for pid in descendant_pids(os.getpid())]
    dist.barrier()  # every process measured with all workers alive
    result = dict(before_kib=before, own=own, workers=workers, images=len(dataset))
    with open(osp.join(args.out_dir, f'{dataset_type}_rank{dist.get_rank()}.json'), 'w') as f:
        json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


def launch(dataset_type: str, ann_file: str, args: argparse.Namespace, out_dir: str) -> List[dict]:
    """Run :func:`rank_run` in ``--processes`` processes; their results, by rank."""
    cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={args.processes}',
           '--standalone', osp.abspath(__file__), '--ann-file', ann_file,
           '--rank-run', dataset_type, '--out-dir', out_dir, '--workers', str(args.workers),
           '--batches', str(args.batches)]  # fmt: skip
    path = os.pathsep.join(filter(None, (REPO, os.environ.get('PYTHONPATH'))))
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS='1')
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    results = []
    for rank in range(args.processes):
        with open(osp.join(out_dir, f'{dataset_type}_rank{rank}.json')) as f:
            results.append(json.load(f))
    return results


def summary(results: List[dict]) -> Dict[str, float]:
    """MiB figures of one launch: peaks per process kind, and the PSS sum of the whole run."""
    mib = 1 / 1024
    workers = [w for r in results for w in r['workers']]
    return dict(
        rank_peak=max(r['own']['VmHWM'] for r in results) * mib,
        rank_dataset=max(r['own']['VmHWM'] - r['before_kib'] for r in results) * mib,
        worker_peak=max((w['VmHWM'] for w in workers), default=0) * mib,
        total_pss=sum(r['own']['Pss'] + sum(w['Pss'] for w in r['workers']) for r in results) * mib,
        workers=len(workers),
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.rank_run:
        return rank_run(args.rank_run, args.ann_file, args)
    # a memory figure: the load does not change it (no load warning, unlike the speed figures)
    print("# Peak memory of a distributed run's datasets")
    print(f'command: {shlex.join(["python", osp.relpath(__file__, REPO), *sys.argv[1:]])}')
    print(f'uptime: {subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}')
    print(f'CPU: {os.cpu_count()} logical CPUs, {cpu_name()}; ISA flags: {describe_isa()}')
    print('versions: ' + ', '.join(f'{k} {v}' for k, v in versions().items()))
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = args.ann_file
        if ann_file is None:
            from ssd_plugin.analysis.synthetic_coco import write_synthetic_coco

            ann_file = osp.join(tmp, 'synthetic_coco.json')
            write_synthetic_coco(ann_file, *args.synthetic_coco)
        size = osp.getsize(ann_file) / 2**20
        print(f'annotations: {ann_file} ({size:.0f} MiB), {args.processes} processes x '
              f'{args.workers} data loader workers, {args.batches} batches of 8 each')  # fmt: skip
        rows = []
        for round_ in range(args.rounds):
            for dataset_type in DATASETS:
                out = summary(launch(dataset_type, ann_file, args, tmp))
                rows.append([round_ + 1, dataset_type, f'{out["rank_peak"]:.0f}',
                             f'{out["rank_dataset"]:.0f}', f'{out["worker_peak"]:.0f}',
                             out['workers'], f'{out["total_pss"]:.0f}'])  # fmt: skip
    print_table('Memory (MiB)', ['round', 'dataset', 'process peak RSS',
                                 'of it, after the imports', 'worker peak RSS', 'workers',
                                 'whole run PSS'], rows)  # fmt: skip


if __name__ == '__main__':
    main()
