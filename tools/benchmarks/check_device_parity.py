"""Does ours compute on ``--device`` what it computes on the CPU? Prints PASS or FAIL per check.

Usage::

    python tools/benchmarks/check_device_parity.py --device cuda
    python tools/benchmarks/check_device_parity.py --device cpu --quick   # tests

The same inputs (made on the CPU, seeded) run on the CPU and on the device, in float32 with
TF32 off (TF32 would round convolutions and matmuls to 10-bit mantissas on purpose):

- ``MultiBoxHead.loss_by_feat``: loss values (relative 1e-4) and the gradients of the class
  and box outputs (within 1e-4 of their largest magnitude);
- ``MultiBoxHead.predict_by_feat``: detections at the paper settings and at mmdet's test_cfg,
  ``trained`` and ``crowded`` regimes (see ``synthetic.py``; the score-prefix path) and
  ``fallback`` (one dominant class on boxes that all clip to the image: NMS keeps one box per
  class, so every prefix widens to the per-class top-k): counts and labels per image, scores
  within 1e-5, boxes within 1e-3 px. The ``untrained`` regime is left out: its scores are
  within 1e-7 of each other by construction, so which near-tied box NMS keeps depends on the
  last bit of the softmax, on every device;
- large candidate counts: SSD300-COCO's and SSDLite's worst case (every score above the
  threshold, every box the whole image: ``B x C x nms_pre`` candidates reach NMS, 256,000 for
  SSD300 at batch 8), predicted on the device in packed NMS calls; the largest call and its
  CUDA mask size are printed;
- the float32-threshold sliver: two boxes with IoU exactly 0.45 at ``iou_threshold=0.45``.
  The CPU keeps both; torchvision's CUDA kernel compares with float32(0.45) =
  0.44999998807907104 and suppresses one -- the one documented difference
  (``ssd_plugin/functional/postprocess.py``); IoUs 1e-5 either side agree;
- the whole detector's network outputs (``mode='tensor'``) of random images, SSD300 (``--quick``:
  SSDLite), random weights: within 1e-3 of their largest magnitude; the same in
  ``channels_last``; bf16 and fp16 autocast forward + loss against the float32 CPU loss
  (relative 5e-2 and 1e-2: the dtypes' rounding through the network); and one SGD step of
  SSDLite in training mode (BatchNorm batch statistics and running-stat updates): loss,
  updated weights and running statistics within 1e-3, the gradients within 1e-2 in relative L2
  norm (see ``GRAD_L2_TOL``).

With ``--device cpu`` the "device" run is the CPU with one thread (the reference uses torch's
default threads) and post-processing takes the CUDA branch's packed NMS calls (the reference:
the CPU's per-image calls): every regime runs end to end, and thread-count- or
call-packing-dependent results would show. Exit status 1 when any check fails.
"""

import argparse
import copy
import functools
import math
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Tuple

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
from mmdet.structures import DetDataSample
from mmengine.config import Config, ConfigDict
from synthetic import HeadInputs, random_ground_truths, to_levels
from torch import Tensor

import ssd_plugin  # noqa: F401  (registers the components)
from ssd_plugin.functional import postprocess
from ssd_plugin.models.dense_heads import multibox_head

LOSS_RTOL = 1e-4
GRAD_TOL = 1e-4  # of the largest gradient magnitude
SCORE_TOL, BOX_TOL = 1e-5, 1e-3
NET_TOL = 1e-3  # of the largest output magnitude
# A training step's gradients as a whole: summation-order rounding is amplified where batch
# statistics normalise near-constant channels (random init, batch 2), and a hard negative whose
# loss ties within rounding may be mined on one side only; a real fault is O(1).
GRAD_L2_TOL = 1e-2
AMP_TOL = {torch.bfloat16: 5e-2, torch.float16: 1e-2}  # of the float32 loss
PARITY_REGIMES = ('trained', 'crowded', 'fallback')
SSD300, SSDLITE = 'ssd300_vgg16_8xb8-120e_coco.py', 'ssdlite_mobilenetv2_8xb24-600e_coco.py'
DETECTORS = {False: (SSD300, 300), True: (SSDLITE, 320)}
SLIVER_THR = 0.45


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='CPU vs device parity of ours')
    parser.add_argument('--device', default='cuda', choices=['cpu', 'cuda'])
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--large-batch', type=int, default=8,
                        help='batch of the large-candidate-count checks')  # fmt: skip
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quick', action='store_true',
                        help='batch 2 (large checks: 1), SSDLite network')  # fmt: skip
    return parse_with_quick(parser, argv, batch=2, large_batch=1)


@contextmanager
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def packed_nms_calls(call_sizes: List[int]) -> Iterator[None]:
    """The head's post-processing with the CUDA branch's packed NMS calls, recording each
    kernel call's size (patched for the block only)."""
    nms, batched = postprocess.nms, multibox_head.batched_multiclass_nms

    def recording_nms(boxes, scores, iou_thr):
        call_sizes.append(len(boxes))
        return nms(boxes, scores, iou_thr)

    postprocess.nms = recording_nms
    multibox_head.batched_multiclass_nms = functools.partial(batched, batch_calls=True)
    try:
        yield
    finally:
        postprocess.nms, multibox_head.batched_multiclass_nms = nms, batched


def on_device(device: str, fn: Callable[[str], object], calls: List[int] = None) -> object:
    """``fn(device)``; on the CPU with one thread. Post-processing makes packed NMS calls (the
    CUDA branch), whose sizes ``calls`` receives."""
    with packed_nms_calls([] if calls is None else calls):
        if device == 'cpu':
            with single_thread():
                return fn('cpu')
        return fn(device)


def on_both(device: str, fn: Callable[[str], object], calls: List[int] = None) -> Tuple:
    """``fn('cpu')`` (the reference) and :func:`on_device`."""
    return fn('cpu'), on_device(device, fn, calls)


def max_rel_diff(a: Tensor, b: Tensor) -> float:
    """Largest ``|a - b|`` over the largest ``|a|``."""
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    return float((a - b).abs().max() / a.abs().max().clamp(min=1e-12))


def rel_l2_diff(a: Tensor, b: Tensor) -> float:
    """``||a - b|| / ||a||``."""
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    return float((a - b).norm() / a.norm().clamp(min=1e-12))


def check(rows: List, name: str, value: float, tol: float, detail: str = '') -> None:
    rows.append([name, f'{value:.1e}', f'{tol:.0e}', 'PASS' if value <= tol else 'FAIL', detail])


def mask_bytes(n: int) -> int:
    """Bytes of torchvision's CUDA NMS mask for an ``n``-candidate call."""
    return n * math.ceil(n / 64) * 8


@contextmanager
def fallback_counter() -> Iterator[List[int]]:
    """Counts the rows that reach the per-class top-k (patched for the block only)."""
    rows: List[int] = []
    original = postprocess._per_class_candidates

    def counted(scores, pending, *args):
        rows.append(len(pending))
        return original(scores, pending, *args)

    postprocess._per_class_candidates = counted
    try:
        yield rows
    finally:
        postprocess._per_class_candidates = original


def worst_case_outputs(
    num_imgs: int, featmap_sizes, num_base_priors, num_channels: int, seed: int
) -> Tuple[List[Tensor], List[Tensor]]:
    """Level outputs where one class dominates every default box, every other class scores
    about ``1 / num_channels``, and every box decodes to (and clips at) the whole image."""
    gen = torch.Generator().manual_seed(seed)
    num_priors = sum(h * w * k for (h, w), k in zip(featmap_sizes, num_base_priors))
    logits = torch.randn(num_imgs, num_priors, num_channels, generator=gen) * 0.01
    logits[:, :, 0] += 1.0
    deltas = torch.zeros(num_imgs, num_priors, 4)
    deltas[..., 2:] = 50.0  # widths and heights far beyond the image (the coder clamps them)
    return (to_levels(logits, featmap_sizes, num_base_priors),
            to_levels(deltas, featmap_sizes, num_base_priors))  # fmt: skip


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
        if regime == 'fallback':
            cls_scores, bbox_preds = worst_case_outputs(
                args.batch, FEATMAP_SIZES, heads.num_base_priors, heads.num_classes + 1,
                args.seed + 2)  # fmt: skip
            inputs = HeadInputs(cls_scores, bbox_preds, base.gts, base.metas)
        else:
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

            calls: List[int] = []
            with fallback_counter() as fallback_rows:
                ref, got = on_both(args.device, predict, calls)
            diff = compare_detections(ref, got, SCORE_TOL)
            ok = detections_agree(diff, SCORE_TOL, BOX_TOL)
            path = f'per-class top-k for {sum(fallback_rows) // 2} image(s)'
            if regime != 'fallback':
                path = 'prefix path' + (f', then {path}' if fallback_rows else '')
            elif not fallback_rows:  # the regime exists to reach the fallback
                ok, path = False, 'FALLBACK NOT REACHED'
            rows.append([f'predict_by_feat, {label} test_cfg, {regime}', '-',
                         f'{SCORE_TOL:.0e} / {BOX_TOL:.0e} px', 'PASS' if ok else 'FAIL',
                         f'{describe(diff)}; {path}; {len(calls)} NMS calls'])  # fmt: skip


def large_candidate_checks(args, rows: List) -> None:
    """SSD300's and SSDLite's worst cases at ``--large-batch``: ``B x C x nms_pre`` candidates."""
    for config in (SSD300, SSDLITE):
        cfg = Config.fromfile(repo_config(config)).model
        head = MODELS.build(dict(cfg.bbox_head, test_cfg=cfg.test_cfg))
        heads = {'cpu': head, args.device: copy.deepcopy(head).to(args.device)}
        size = DETECTORS[config == SSDLITE][1]
        sizes = [tuple(s) for s in _featmap_sizes(config)]
        cls_scores, bbox_preds = worst_case_outputs(
            args.large_batch, sizes, head.num_base_priors, head.cls_out_channels, args.seed + 3
        )
        metas = [dict(img_shape=(size, size), scale_factor=(1.0, 1.0))] * args.large_batch
        test_cfg = ConfigDict(cfg.test_cfg)

        def predict(device: str, heads=heads, cls_scores=cls_scores, bbox_preds=bbox_preds,
                    metas=metas, test_cfg=test_cfg) -> List:  # fmt: skip
            with torch.no_grad():
                dets = heads[device].predict_by_feat(
                    [c.to(device) for c in cls_scores], [b.to(device) for b in bbox_preds],
                    batch_img_metas=metas, cfg=test_cfg)  # fmt: skip
            return [(d.bboxes, d.scores, d.labels) for d in dets]

        calls: List[int] = []
        ref, got = on_both(args.device, predict, calls)
        diff = compare_detections(ref, got, SCORE_TOL)
        ok = detections_agree(diff, SCORE_TOL, BOX_TOL)
        num_cand = args.large_batch * head.num_classes * test_cfg.nms_pre
        largest = max(calls, default=0)
        rows.append([f'large N: {config.split("_")[0]} worst case, batch {args.large_batch}', '-',
                     f'{SCORE_TOL:.0e} / {BOX_TOL:.0e} px', 'PASS' if ok else 'FAIL',
                     f'{describe(diff)}; {num_cand} candidates in {len(calls)} NMS calls, '
                     f'largest {largest} ({mask_bytes(largest) / 2**20:.1f} MiB mask; one call: '
                     f'{mask_bytes(sum(calls)) / 2**30:.2f} GiB)'])  # fmt: skip


@functools.cache
def _featmap_sizes(config: str) -> Tuple[Tuple[int, int], ...]:
    """The detector's level sizes, from one forward of its backbone and neck."""
    cfg = Config.fromfile(repo_config(config)).model
    size = DETECTORS[config == SSDLITE][1]
    model = MODELS.build(cfg).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.zeros(1, 3, size, size))
    return tuple(tuple(f.shape[-2:]) for f in feats)


def sliver_check(args, rows: List) -> None:
    """IoU exactly ``SLIVER_THR``: kept on the CPU, suppressed by torchvision's CUDA kernel."""
    f32_thr = float(torch.tensor(SLIVER_THR, dtype=torch.float32))
    results = {}
    for width, what in ((45.0, 'in'), (45.001, 'above'), (44.999, 'below')):
        boxes = torch.tensor([[[0.0, 0.0, 100.0, 100.0], [0.0, 0.0, width, 100.0]]])
        scores = torch.tensor([[[0.9], [0.8]]])

        def kept(device: str, boxes=boxes, scores=scores) -> int:
            out = postprocess.batched_multiclass_nms(boxes.to(device), scores.to(device), 0.01,
                                                     SLIVER_THR, 400, 10)  # fmt: skip
            return int(out[3].sum())

        results[what] = on_both(args.device, kept)
    cpu_in, dev_in = results['in']
    expected_in = {1} if args.device == 'cuda' else {cpu_in}  # the documented CUDA difference
    ok = cpu_in == 2 and dev_in in expected_in
    ok &= all(results[k][0] == results[k][1] for k in ('above', 'below'))
    rows.append([f'float32-threshold sliver (IoU {SLIVER_THR} at {SLIVER_THR})', '-',
                 'documented', 'PASS' if ok else 'FAIL',
                 f'kept: cpu {cpu_in}, {args.device} {dev_in} (CUDA compares IoU > {f32_thr!r}); '
                 f'IoU +-1e-5 kept: ' + ', '.join(f'{k} {results[k][0]}/{results[k][1]}'
                                                 for k in ('above', 'below'))])  # fmt: skip


def build_detector(config: str, seed: int):
    torch.manual_seed(seed)
    return MODELS.build(Config.fromfile(repo_config(config)).model)


def detector_batch(args, config: str, size: int) -> Tuple[Tensor, List[DetDataSample]]:
    gen = torch.Generator().manual_seed(args.seed + 4)
    images = torch.randn(args.batch, 3, size, size, generator=gen)
    meta = dict(img_shape=(size, size), pad_shape=(size, size), ori_shape=(size, size),
                batch_input_shape=(size, size), scale_factor=(1.0, 1.0))  # fmt: skip
    samples = [DetDataSample(metainfo=meta, gt_instances=gt)
               for gt in random_ground_truths(args.batch, size, 80, gen)]  # fmt: skip
    return images, samples


def network_checks(args, rows: List) -> None:
    config, size = DETECTORS[args.quick]
    model = build_detector(config, args.seed).eval()
    models = {'cpu': model}
    if args.device == 'cuda':
        models['cuda'] = copy.deepcopy(model).to('cuda')
    images, samples = detector_batch(args, config, size)

    def outputs(device: str, channels_last: bool = False) -> Tensor:
        net, x = models[device], images.to(device)
        if channels_last:
            net = copy.deepcopy(net).to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            cls_scores, bbox_preds = net(x, mode='tensor')
        return torch.cat([t.float().flatten() for t in list(cls_scores) + list(bbox_preds)])

    ref, got = on_both(args.device, outputs)
    check(rows, f'network outputs ({config}, batch {args.batch})', max_rel_diff(ref, got),
          NET_TOL, f'{float(ref.abs().max()):.4g} (cpu)')  # fmt: skip
    got = on_device(args.device, functools.partial(outputs, channels_last=True))
    check(rows, 'network outputs, channels_last', max_rel_diff(ref, got), NET_TOL)

    def loss(device: str, dtype=None) -> Tensor:
        data = [s.to(device) for s in samples]
        with torch.no_grad(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            losses = models[device].loss(images.to(device), data)
        return torch.stack([sum(v) if isinstance(v, list) else v for v in losses.values()])

    ref = loss('cpu')
    for dtype, tol in AMP_TOL.items():
        got = on_device(args.device, functools.partial(loss, dtype=dtype))
        finite = bool(torch.isfinite(got).all())
        value = max_rel_diff(ref, got) if finite else float('inf')
        check(rows, f'{str(dtype)[6:]} autocast forward + loss vs float32', value, tol,
              f'loss_cls, loss_bbox {[round(float(v), 4) for v in got]} '
              f'(float32 {[round(float(v), 4) for v in ref]})')  # fmt: skip


def train_step_check(args, rows: List) -> None:
    """One SGD step of SSDLite in training mode: BatchNorm uses and updates batch statistics."""
    model = build_detector(SSDLITE, args.seed).train()
    models = {'cpu': model}
    if args.device == 'cuda':
        models['cuda'] = copy.deepcopy(model).to('cuda')
    images, samples = detector_batch(args, SSDLITE, 320)

    def step(device: str) -> Dict[str, Tensor]:
        net = copy.deepcopy(models[device])
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        losses = net.loss(images.to(device), [s.to(device) for s in samples])
        total = sum(sum(v) if isinstance(v, list) else v for v in losses.values())
        total.backward()
        grads = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
        opt.step()
        stats = [b for n, b in net.named_buffers() if n.endswith(('running_mean', 'running_var'))]
        return {'loss': total.detach(), 'gradients': grads,
                'weights after the step': torch.cat([p.detach().flatten()
                                                     for p in net.parameters()]),
                'BatchNorm running stats': torch.cat([b.flatten() for b in stats])}  # fmt: skip

    ref, got = on_both(args.device, step)
    for key in ref:
        if key == 'gradients':
            check(rows, f'SSDLite training step (BatchNorm train mode): {key} (relative L2)',
                  rel_l2_diff(ref[key], got[key]), GRAD_L2_TOL)  # fmt: skip
        else:
            check(rows, f'SSDLite training step (BatchNorm train mode): {key}',
                  max_rel_diff(ref[key], got[key]), NET_TOL)  # fmt: skip


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
    other = 'cpu with 1 thread, packed NMS calls' if args.device == 'cpu' else args.device
    print(f'reference: cpu, threads: {torch.get_num_threads()}; compared: {other}; head '
          f'{OURS_CONFIG.split("/")[-1]} at {SIZE} px, featmaps {[s for s, _ in FEATMAP_SIZES]}, '
          f'batch {args.batch}, seed {args.seed}')  # fmt: skip
    rows: List = []
    head_checks(args, rows)
    large_candidate_checks(args, rows)
    sliver_check(args, rows)
    network_checks(args, rows)
    train_step_check(args, rows)
    print_table('Device parity (difference; PASS when within tolerance)',
                ['check', 'max rel. diff', 'tolerance', 'result', 'detail'], rows)  # fmt: skip
    failed = [row[0] for row in rows if row[3] != 'PASS']
    print(f'\nPARITY {"FAIL: " + ", ".join(failed) if failed else "PASS"}')
    return 1 if failed else 0


if __name__ == '__main__':
    raise SystemExit(main())
