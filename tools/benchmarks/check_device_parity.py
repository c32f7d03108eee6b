"""Does ours compute on ``--device`` what it computes on the CPU? Prints PASS or FAIL per check.

Usage::

    python tools/benchmarks/check_device_parity.py --device cuda
    python tools/benchmarks/check_device_parity.py --device cpu --quick   # tests

The same inputs (made on the CPU, seeded) run on the CPU and on the device, in float32 with
TF32 off (TF32 would round convolutions and matmuls to 10-bit mantissas on purpose):

- ``MultiBoxHead.loss_by_feat``: loss values (relative 1e-4) and the gradients of the class
  and box outputs (within 1e-4 of their largest magnitude);
- ``MultiBoxHead.predict_by_feat``: detections at the paper settings and at mmdet's test_cfg,
  ``trained`` and ``crowded`` regimes (see ``synthetic.py``): counts and labels per image,
  scores within 1e-5, boxes within 1e-3 px. The ``untrained`` regime is left out: its scores are
  within 1e-7 of each other by construction, so which near-tied box NMS keeps depends on the
  last bit of the softmax, on every device;
- the whole detector's network outputs (``mode='tensor'``) of random images, SSD300 (``--quick``:
  SSDLite), random weights: within 1e-3 of their largest magnitude.

With ``--device cpu`` the "device" run is the CPU with one thread (the reference uses torch's
default threads): the harness runs end to end, and thread-count-dependent results would show.
Exit status 1 when any check fails.
"""

import argparse
import copy
from contextlib import contextmanager
from typing import Callable, Dict, List, Tuple

import torch
from bench_common import (
    begin,
    compare_detections,
    describe,
    detections_agree,
    parse_with_quick,
    print_table,
    repo_config,
)
from bench_head import FEATMAP_SIZES, OURS_CONFIG, SIZE, Peers
from mmdet.registry import MODELS
from mmengine.config import Config
from synthetic import HeadInputs
from torch import Tensor

import ssd_plugin  # noqa: F401  (registers the components)

LOSS_RTOL = 1e-4
GRAD_TOL = 1e-4  # of the largest gradient magnitude
SCORE_TOL, BOX_TOL = 1e-5, 1e-3
NET_TOL = 1e-3  # of the largest output magnitude
PARITY_REGIMES = ('trained', 'crowded')
DETECTORS = {False: ('ssd300_vgg16_8xb8-120e_coco.py', 300),
             True: ('ssdlite_mobilenetv2_8xb24-600e_coco.py', 320)}  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='CPU vs device parity of ours')
    parser.add_argument('--device', default='cuda', choices=['cpu', 'cuda'])
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quick', action='store_true', help='batch 2, SSDLite network')
    return parse_with_quick(parser, argv, batch=2)


@contextmanager
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def on_both(device: str, fn: Callable[[str], object]) -> Tuple[object, object]:
    """``fn('cpu')`` and ``fn(device)`` (the CPU with one thread when ``device`` is the CPU)."""
    reference = fn('cpu')
    if device == 'cpu':
        with single_thread():
            return reference, fn('cpu')
    return reference, fn(device)


def max_rel_diff(a: Tensor, b: Tensor) -> float:
    """Largest ``|a - b|`` over the largest ``|a|``."""
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    return float((a - b).abs().max() / a.abs().max().clamp(min=1e-12))


def check(rows: List, name: str, value: float, tol: float, detail: str = '') -> None:
    rows.append([name, f'{value:.1e}', f'{tol:.0e}', 'PASS' if value <= tol else 'FAIL', detail])


def head_checks(args, rows: List) -> None:
    heads = Peers('cpu')
    heads_on = {'cpu': heads.ours}
    if args.device == 'cuda':
        heads_on['cuda'] = copy.deepcopy(heads.ours).to('cuda')
    base = heads.inputs(args.batch, 'trained', args.seed, 300)

    def loss(device: str) -> Dict[str, Tensor]:
        inputs: HeadInputs = base.to(device, requires_grad=True)
        losses = heads_on[device].loss_by_feat(inputs.cls_scores, inputs.bbox_preds, inputs.gts,
                                               inputs.metas)  # fmt: skip
        sum(losses.values()).backward()
        out = {k: v.detach() for k, v in losses.items()}
        out['grad cls'] = torch.cat([t.grad.flatten() for t in inputs.cls_scores])
        out['grad box'] = torch.cat([t.grad.flatten() for t in inputs.bbox_preds])
        return out

    ref, got = on_both(args.device, loss)
    for key in ref:
        tol = GRAD_TOL if key.startswith('grad') else LOSS_RTOL
        check(rows, f'loss_by_feat {key}', max_rel_diff(ref[key], got[key]), tol,
              f'{float(ref[key].abs().max()):.4g} (cpu)')  # fmt: skip

    for regime in PARITY_REGIMES:
        inputs = heads.inputs(args.batch, regime, args.seed + 1, 300)
        for label, cfg, rescale in (('paper', heads.paper_cfg, False),
                                    ("mmdet's", heads.mmdet_cfg, True)):  # fmt: skip

            def predict(device: str, inputs=inputs, cfg=cfg, rescale=rescale) -> List:
                moved = inputs.to(device)
                with torch.no_grad():
                    dets = heads_on[device].predict_by_feat(
                        moved.cls_scores, moved.bbox_preds, batch_img_metas=moved.metas,
                        cfg=cfg, rescale=rescale)  # fmt: skip
                return [(d.bboxes, d.scores, d.labels) for d in dets]

            ref, got = on_both(args.device, predict)
            diff = compare_detections(ref, got, SCORE_TOL)
            ok = detections_agree(diff, SCORE_TOL, BOX_TOL)
            rows.append([f'predict_by_feat, {label} test_cfg, {regime}', '-',
                         f'{SCORE_TOL:.0e} / {BOX_TOL:.0e} px', 'PASS' if ok else 'FAIL',
                         describe(diff)])  # fmt: skip


def network_check(args, rows: List) -> None:
    config, size = DETECTORS[args.quick]
    torch.manual_seed(args.seed)
    model = MODELS.build(Config.fromfile(repo_config(config)).model).eval()
    models = {'cpu': model}
    if args.device == 'cuda':
        models['cuda'] = copy.deepcopy(model).to('cuda')
    images = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(1))

    def forward(device: str) -> Tensor:
        with torch.no_grad():
            cls_scores, bbox_preds = models[device](images.to(device), mode='tensor')
        return torch.cat([t.flatten() for t in list(cls_scores) + list(bbox_preds)])

    ref, got = on_both(args.device, forward)
    check(rows, f'network outputs ({config}, batch {args.batch})', max_rel_diff(ref, got),
          NET_TOL, f'{float(ref.abs().max()):.4g} (cpu)')  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    with exact_float32():
        return run_checks(args, argv)


@contextmanager
def exact_float32():
    """TF32 off within the block (restored after: other report sections run in this process)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_checks(args, argv) -> int:
    begin(
        f'Parity: ours on {args.device} vs on cpu (float32, TF32 off)', args.device, __file__, argv
    )
    other = 'cpu with 1 thread' if args.device == 'cpu' else args.device
    print(f'reference: cpu, threads: {torch.get_num_threads()}; compared: {other}; head '
          f'{OURS_CONFIG.split("/")[-1]} at {SIZE} px, featmaps {[s for s, _ in FEATMAP_SIZES]}, '
          f'batch {args.batch}, seed {args.seed}')  # fmt: skip
    rows: List = []
    head_checks(args, rows)
    network_check(args, rows)
    print_table('Device parity (difference; PASS when within tolerance)',
                ['check', 'max rel. diff', 'tolerance', 'result', 'detail'], rows)  # fmt: skip
    failed = [row[0] for row in rows if row[3] != 'PASS']
    print(f'\nPARITY {"FAIL: " + ", ".join(failed) if failed else "PASS"}')
    return 1 if failed else 0


if __name__ == '__main__':
    raise SystemExit(main())
