"""How often does a head's loss or post-processing wait for the device? Counts, not times.

Usage::

    python tools/benchmarks/count_syncs.py --device cuda
    python tools/benchmarks/count_syncs.py --device cpu --quick

A host sync stalls the Python thread until the device has run everything queued before it, so
each one on a hot path costs a pipeline drain. Counted per call of the SSD300 head's
``loss_by_feat`` + backward (a training step's head work) and ``predict_by_feat`` (paper and
mmdet test_cfg), for ours, mmdet's SSDHead and torchvision's SSD on the same synthetic inputs
(``synthetic.py``, ``trained`` / ``crowded`` regimes):

- ``--device cuda``: exactly, with ``torch.cuda.set_sync_debug_mode('warn')`` (one warning per
  synchronising CUDA call);
- ``--device cpu``: the operators that synchronise on CUDA, counted as they run (a
  ``TorchDispatchMode``, plus ``Tensor.tolist`` patched for the run only): ``nonzero`` and
  boolean-mask indexing, ``item()``/``int()``/``bool()`` of a tensor, ``tolist``,
  ``unique_consecutive``, ``repeat_interleave`` and ``bincount`` (their output sizes), and
  torchvision's ``nms`` (its CUDA kernel copies the mask to the host). Host-to-device copies of
  new tensors (``torch.tensor(..., device=...)``) are not visible on the CPU.

Nothing here is asserted by the tests; ratios are ``peer / ours`` (above 1: ours syncs less).
"""

import argparse
import sys
import warnings
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List

import torch
from bench_common import begin, parse_with_quick, print_table, ratio
from bench_head import Peers, backward
from synthetic import HeadInputs
from torch.utils._python_dispatch import TorchDispatchMode

import ssd_plugin  # noqa: F401  (registers MultiBoxHead)

# Operators whose CUDA implementations read a value back to the host.
SYNCING = {'nonzero', '_local_scalar_dense', 'masked_select', 'unique_consecutive', '_unique2',
           'bincount', 'nms'}  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='host syncs of the SSD head: ours and peers')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--objects', type=int, default=30, help='objects per crowded image')
    parser.add_argument('--quick', action='store_true', help='batch 2')
    return parse_with_quick(parser, argv, batch=2)


class _SyncOps(TorchDispatchMode):
    """Counts the operators that would synchronise on CUDA, by name."""

    def __init__(self, counts: Counter) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING:
            self.counts[name] += 1
        elif name in ('index', 'index_put', 'index_put_'):
            indices = args[1] if len(args) > 1 else ()
            if any(t is not None and t.dtype == torch.bool for t in indices):
                self.counts[f'{name} (bool mask)'] += 1
        elif name == 'repeat_interleave' and (kwargs or {}).get('output_size') is None:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def counting(device: str) -> Iterator[Counter]:
    """Count the syncs of the block into the yielded Counter (see the module docstring)."""
    counts: Counter = Counter()
    if device == 'cuda':
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            torch.cuda.set_sync_debug_mode('warn')
            try:
                yield counts
            finally:
                torch.cuda.set_sync_debug_mode('default')
        for w in caught:
            if 'synchroniz' in str(w.message):
                counts[str(w.message).split('\n')[0][:60]] += 1
        return
    tolist = torch.Tensor.tolist

    def counted_tolist(self):
        counts['tolist'] += 1
        return tolist(self)

    torch.Tensor.tolist = counted_tolist
    try:
        with _SyncOps(counts):
            yield counts
    finally:
        torch.Tensor.tolist = tolist


def count(device: str, fn: Callable[[], object]) -> Counter:
    fn()  # warm-up: lazy initialisation is not the hot path
    with counting(device) as counts:
        fn()
    return counts


def cells(peers: Peers, args) -> Dict[str, Dict[str, Callable[[], object]]]:
    """Per task, each implementation's call on the same inputs."""
    base = peers.inputs(args.batch, 'trained', args.seed, args.objects)
    ours_in, mm_in = base.to(args.device, True), base.to(args.device, True)
    tv_in = HeadInputs(peers.tv_logits(base), base.bbox_preds, base.gts, base.metas)
    tv_in = tv_in.to(args.device, True)
    targets = peers.tv_targets(tv_in)
    crowded = peers.inputs(args.batch, 'crowded', args.seed + 1, args.objects).to(args.device)
    tv_cls = [c.to(args.device) for c in peers.tv_logits(crowded)]

    def loss(head, inputs):
        return lambda: backward(
            head.loss_by_feat(inputs.cls_scores, inputs.bbox_preds, inputs.gts, inputs.metas),
            inputs.cls_scores + inputs.bbox_preds,
        )

    def predict(head, cfg):
        @torch.no_grad()
        def run():
            return head.predict_by_feat(
                crowded.cls_scores,
                crowded.bbox_preds,
                batch_img_metas=crowded.metas,
                cfg=cfg,
                rescale=True,
            )

        return run

    tv_post = torch.no_grad()(lambda: peers.tv_postprocess(tv_cls, crowded.bbox_preds))
    return {
        'loss + backward (trained)': {
            'ours': loss(peers.ours, ours_in),
            'mmdet': loss(peers.mmdet, mm_in),
            'torchvision': lambda: backward(
                peers.tv_loss(tv_in.cls_scores, tv_in.bbox_preds, targets),
                tv_in.cls_scores + tv_in.bbox_preds,
            ),
        },
        'predict, paper test_cfg (crowded)': {
            'ours': predict(peers.ours, peers.paper_cfg),
            'torchvision': tv_post,
        },
        "predict, mmdet's test_cfg (crowded)": {
            'ours': predict(peers.ours, peers.mmdet_cfg),
            'mmdet': predict(peers.mmdet, peers.mmdet_cfg),
        },
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    begin('Host syncs per call (counts, not times)', args.device, __file__, argv)
    mode = 'set_sync_debug_mode' if args.device == 'cuda' else 'CUDA-syncing operators on the CPU'
    print(f'SSD300 head, batch {args.batch}, {args.objects} objects per crowded image; '
          f'counted: {mode}')  # fmt: skip
    peers = Peers(args.device)
    rows: List = []
    for task, fns in cells(peers, args).items():
        counts = {name: count(args.device, fn) for name, fn in fns.items()}
        ours = sum(counts['ours'].values())
        peer_cells = []
        for name in ('mmdet', 'torchvision'):
            total = sum(counts[name].values()) if name in counts else None
            peer_cells += ['-' if total is None else total, ratio(total, ours)]
        detail = ', '.join(f'{k} {v}' for k, v in sorted(counts['ours'].items()))
        rows.append([task, ours] + peer_cells + [detail])
    print_table('Host syncs per call (ratios: peer / ours)',
                ['task', 'ours', 'mmdet', 'mmdet / ours', 'torchvision', 'torchvision / ours',
                 'ours by operator'], rows)  # fmt: skip
    return 0


if __name__ == '__main__':
    sys.exit(main())
