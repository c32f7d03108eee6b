"""SSD300-COCO head work, ours against mmdet 3.3's SSDHead and torchvision's SSD, in one run.

Usage::

    python tools/benchmarks/bench_head.py --device cpu --repeats 5
    python tools/benchmarks/bench_head.py --cells paper --batches 32 --regimes crowded --seed 7
    python tools/benchmarks/bench_head.py --cells onnx --batches 1 8   # ONNX Runtime vs PyTorch
    python tools/benchmarks/bench_head.py --quick          # batch 1, one timed round (tests)

Heads: ours is ``MultiBoxHead`` from ``configs/ssd300_vgg16_8xb8-120e_coco.py``; mmdet's is
``SSDHead`` from its ``ssd/ssd300_coco.py`` (mmdet 3.3 never sets ``head.loss_cls`` and its
``predict_by_feat`` crashes reading it, so it is set to an empty object); torchvision's is
``torchvision.models.detection.SSD`` with a stand-in backbone, of which only ``compute_loss``
(after its ``proposal_matcher``) and ``postprocess_detections`` run. Every head starts from the
same per-level outputs (``synthetic.py``): ours and mmdet's take them as they are; torchvision's
get them with background moved from the last index to 0 (done once, untimed: its head emits
that order) and flattened by its own ``SSDScoringHead`` inside the timing, as its forward does.
Its anchors are our default boxes; labels are shifted by one (0 is its background).

Cells (``--cells``), each at every ``--batches`` size:

- ``loss``: forward and backward of matching, targets, hard-negative mining and losses, 1-20
  ground truths per image, ``trained`` logits;
- ``paper``: post-processing at the paper's settings (our config's test_cfg: score 0.01, NMS
  0.45, 400 per class, 200 per image), ours against torchvision with the same settings, per
  ``--regimes`` (trained, untrained, crowded); the run also checks that both give the same
  detections (count per image, labels, max score difference);
- ``mmdet``: post-processing at mmdet's SSD300 test_cfg (score 0.02, NMS 0.45, nms_pre 1000,
  200 per image, min_bbox_size 0), ours against mmdet's SSDHead. mmdet's ``nms_pre`` caps the
  candidates per level, ours per class;
- ``onnx`` (``--device cpu`` only; skipped, with the reason printed, on cuda or without
  onnxruntime): post-processing at the paper settings, ours (``predict_by_feat`` as in
  ``paper``) against ONNX Runtime (CPUExecutionProvider, ``intra_op_num_threads`` = torch's
  threads, idle pool threads not spinning, so that they leave the cores to the interleaved
  PyTorch calls) running our head's post-processing graph (``export_head_postprocess_onnx``:
  decoding and NMS) on the same per-level outputs as numpy arrays, bounded and unbounded, per
  ``--regimes``; the run also checks that each gives our detections. The graphs are built once
  per run, in a temporary directory.

Timing rules: see ``bench_common.py`` (interleaved, warm-up, best of ``--repeats``, ratios
``peer / ours``).
"""

import argparse
import os.path as osp
import sys
import tempfile
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from bench_common import (
    begin,
    compare_detections,
    describe,
    detections_agree,
    interleaved_best,
    mmdet_config,
    ms,
    ort_session_options,
    parse_with_quick,
    print_table,
    ratio,
    repo_config,
    synchronizer,
)
from mmdet.registry import MODELS
from mmengine.config import Config, ConfigDict
from synthetic import REGIMES, HeadInputs, background_first, head_inputs
from torch import Tensor
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator as TVDefaultBoxes
from torchvision.models.detection.ssd import SSD, SSDScoringHead
from torchvision.ops import box_iou

import ssd_plugin  # noqa: F401  (registers MultiBoxHead)

OURS_CONFIG = repo_config('ssd300_vgg16_8xb8-120e_coco.py')
MMDET_CONFIG = mmdet_config('ssd/ssd300_coco.py')
SIZE = 300
FEATMAP_SIZES = [(s, s) for s in (38, 19, 10, 5, 3, 1)]  # SSD300's six levels
CELLS = ('loss', 'paper', 'mmdet', 'onnx')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='SSD head loss and post-processing: ours, '
                                     "mmdet's SSDHead, torchvision's SSD")  # fmt: skip
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--repeats', type=int, default=3, help='timed rounds (best is reported)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
    parser.add_argument('--seed', type=int, default=0, help='seed of the synthetic inputs')
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 32])
    parser.add_argument('--regimes', nargs='+', choices=REGIMES, default=list(REGIMES))
    parser.add_argument('--cells', nargs='+', choices=CELLS, default=list(CELLS))
    parser.add_argument('--objects', type=int, default=300, help='objects per crowded image')
    parser.add_argument('--quick', action='store_true',
                        help='batch 1, one timed round: proves the script runs')  # fmt: skip
    return parse_with_quick(parser, argv, batches=[1], repeats=1)


class _StandInBackbone(nn.Module):
    """torchvision's SSD reads only ``out_channels`` from its backbone to build a head."""

    def __init__(self, num_levels: int) -> None:
        super().__init__()
        self.out_channels = [1] * num_levels


def torchvision_ssd(num_base_priors: Sequence[int], num_classes: int, cfg: ConfigDict) -> SSD:
    """torchvision's SSD with ``cfg``'s post-processing settings and our boxes per location."""
    # torchvision puts 2 + 2 * len(ratios) boxes at a location: 4 -> [2], 6 -> [2, 3]
    ratios = [[2, 3][: (k - 2) // 2] for k in num_base_priors]
    model = SSD(
        _StandInBackbone(len(ratios)), TVDefaultBoxes(ratios), (SIZE, SIZE), num_classes + 1,
        score_thresh=cfg.score_thr, nms_thresh=cfg.nms.iou_threshold,
        detections_per_img=cfg.max_per_img, topk_candidates=cfg.nms_pre)  # fmt: skip
    if model.anchor_generator.num_anchors_per_location() != list(num_base_priors):
        raise RuntimeError('torchvision SSD: boxes per location differ from ours')
    return model.eval()


class Peers:
    """The three heads, their settings, and torchvision's flatteners."""

    def __init__(self, device: str) -> None:
        ours_cfg = Config.fromfile(OURS_CONFIG)
        self.paper_cfg = ConfigDict(ours_cfg.model.test_cfg)
        self.ours = MODELS.build(dict(ours_cfg.model.bbox_head, test_cfg=self.paper_cfg))
        self.ours.to(device)
        ref = Config.fromfile(MMDET_CONFIG)
        self.mmdet_cfg = ConfigDict(ref.model.test_cfg)
        self.mmdet = MODELS.build(dict(ref.model.bbox_head, train_cfg=ref.model.train_cfg,
                                       test_cfg=self.mmdet_cfg)).to(device)  # fmt: skip
        self.mmdet.loss_cls = SimpleNamespace()  # mmdet 3.3: predict_by_feat reads it, never set
        self.num_classes = self.ours.num_classes
        self.num_base_priors = list(self.ours.num_base_priors)
        self.tv = torchvision_ssd(self.num_base_priors, self.num_classes, self.paper_cfg)
        levels = len(self.num_base_priors)
        self.tv_flat_cls = SSDScoringHead(nn.ModuleList([nn.Identity()] * levels),
                                          self.num_classes + 1)  # fmt: skip
        self.tv_flat_reg = SSDScoringHead(nn.ModuleList([nn.Identity()] * levels), 4)
        self.priors = torch.cat(self.ours.prior_generator.grid_priors(FEATMAP_SIZES, device='cpu'))
        self.anchors = self.priors.to(device)  # torchvision's anchors: our default boxes

    def inputs(self, batch: int, regime: str, seed: int, objects: int) -> HeadInputs:
        return head_inputs(batch, regime, self.priors, FEATMAP_SIZES, self.num_base_priors,
                           self.num_classes, SIZE, seed, objects)  # fmt: skip

    def tv_logits(self, inputs: HeadInputs) -> List[Tensor]:
        return [background_first(c, self.num_classes + 1) for c in inputs.cls_scores]

    def tv_targets(self, inputs: HeadInputs) -> List[Dict[str, Tensor]]:
        return [dict(boxes=gt.bboxes, labels=gt.labels + 1) for gt in inputs.gts]

    def tv_loss(self, cls_levels, reg_levels, targets) -> Dict[str, Tensor]:
        """torchvision's matching (``proposal_matcher`` on ``box_iou``) and ``compute_loss``."""
        outputs = dict(cls_logits=self.tv_flat_cls(cls_levels),
                       bbox_regression=self.tv_flat_reg(reg_levels))  # fmt: skip
        matched = [self.tv.proposal_matcher(box_iou(t['boxes'], self.anchors)) for t in targets]
        return self.tv.compute_loss(targets, outputs, [self.anchors] * len(targets), matched)

    def tv_postprocess(self, cls_levels, reg_levels) -> List[Dict[str, Tensor]]:
        outputs = dict(cls_logits=self.tv_flat_cls(cls_levels),
                       bbox_regression=self.tv_flat_reg(reg_levels))  # fmt: skip
        num_imgs = len(cls_levels[0])
        return self.tv.postprocess_detections(outputs, [self.anchors] * num_imgs,
                                              [(SIZE, SIZE)] * num_imgs)  # fmt: skip


def backward(losses: Dict[str, object], leaves: Sequence[Tensor]) -> Dict[str, Tensor]:
    """Backpropagate the sum of ``losses`` (tensors or lists of them) into fresh ``.grad``."""
    for leaf in leaves:
        leaf.grad = None
    parts = {k: sum(v) if isinstance(v, (list, tuple)) else v for k, v in losses.items()}
    sum(parts.values()).backward()
    return {k: v.detach() for k, v in parts.items()}


def loss_cell(peers: Peers, batch: int, args) -> List[str]:
    base = peers.inputs(batch, 'trained', args.seed + batch, args.objects)
    ours_in, mm_in = base.to(args.device, True), base.to(args.device, True)
    tv_in = HeadInputs(peers.tv_logits(base), base.bbox_preds, base.gts, base.metas)
    tv_in = tv_in.to(args.device, True)
    targets = peers.tv_targets(tv_in)

    def leaves(inputs):
        return inputs.cls_scores + inputs.bbox_preds

    fns = {
        'ours': lambda: backward(peers.ours.loss_by_feat(
            ours_in.cls_scores, ours_in.bbox_preds, ours_in.gts, ours_in.metas), leaves(ours_in)),
        'mmdet': lambda: backward(peers.mmdet.loss_by_feat(
            mm_in.cls_scores, mm_in.bbox_preds, mm_in.gts, mm_in.metas), leaves(mm_in)),
        'torchvision': lambda: backward(peers.tv_loss(
            tv_in.cls_scores, tv_in.bbox_preds, targets), leaves(tv_in)),
    }  # fmt: skip
    best, results = interleaved_best(fns, args.repeats, args.warmup, synchronizer(args.device))
    values = ', '.join(
        f'{name} ' + ' + '.join(f'{k} {float(v):.4f}' for k, v in result.items())
        for name, result in results.items()
    )
    num_gts = sum(len(gt) for gt in base.gts)
    times = ', '.join(f'{k} {ms(v)} ms' for k, v in best.items())
    print(f'loss, batch {batch} ({num_gts} ground truths): {times}\n  values: {values}', flush=True)
    ours = best['ours']
    return [batch, num_gts, ms(ours), ms(best['mmdet']), ms(best['torchvision']),
            ratio(best['mmdet'], ours), ratio(best['torchvision'], ours)]  # fmt: skip


AGREE_SCORE_TOL, AGREE_BOX_TOL = 1e-5, 1e-3  # float32 rounding of the two decodes


def agreement(first, second) -> str:
    """Do two sets of per-image ``(boxes, scores, labels)`` agree (see ``compare_detections``)?"""
    diff = compare_detections(first, second, AGREE_SCORE_TOL)
    verdict = 'agree' if detections_agree(diff, AGREE_SCORE_TOL, AGREE_BOX_TOL) else 'DIFFER'
    return f'{verdict}: {describe(diff)}'


def ours_detections(results) -> List[tuple]:
    """``predict_by_feat``'s results as per-image ``(boxes, scores, labels)``."""
    return [(d.bboxes, d.scores, d.labels) for d in results]


def ort_detections(outputs) -> List[tuple]:
    """ONNX Runtime's padded ``(dets, labels)`` as per-image ``(boxes, scores, labels)``
    (label -1 marks padding)."""
    out = []
    for dets, labels in zip(*outputs):
        valid = labels >= 0
        dets = torch.from_numpy(dets[valid])
        out.append((dets[:, :4], dets[:, 4], torch.from_numpy(labels[valid])))
    return out


def ort_sessions(peers: Peers, device: str) -> Optional[Dict[str, Any]]:
    """ONNX Runtime sessions of our head's post-processing graph, ``bounded`` and ``unbounded``,
    at the paper settings (None, with the reason printed, where the ``onnx`` cell cannot run)."""
    if device != 'cpu':
        print(f'onnx cell skipped: it runs with --device cpu only (ONNX Runtime on the CPU '
              f'against ours on the same device), got --device {device}')  # fmt: skip
        return None
    try:
        import onnxruntime as ort

        from ssd_plugin.deploy import export_head_postprocess_onnx  # needs onnx
    except ImportError as exc:
        print(f'onnx cell skipped: {exc} (pip install onnx onnxruntime)')
        return None
    options = ort_session_options()
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, bounded in (('bounded', True), ('unbounded', False)):
            path = osp.join(tmp, f'ssd300_head_{name}.onnx')
            export_head_postprocess_onnx(peers.ours, FEATMAP_SIZES, (SIZE, SIZE), path,
                                         peers.paper_cfg, bounded)  # fmt: skip
            sessions[name] = ort.InferenceSession(path, options,
                                                  providers=['CPUExecutionProvider'])  # fmt: skip
    print(f'onnx cell: onnxruntime {ort.__version__}, CPUExecutionProvider, intra_op_num_threads '
          f'{options.intra_op_num_threads}, no spinning; head graphs (decode + NMS, bounded and '
          'unbounded) built once for this run')  # fmt: skip
    return sessions


def candidates_per_image(inputs: HeadInputs, cls_out_channels: int, score_thr: float) -> float:
    """Mean number of (default box, class) scores above ``score_thr`` per image."""
    total = 0
    for level in inputs.cls_scores:
        num_imgs, channels, h, w = level.shape
        logits = level.detach().view(num_imgs, channels // cls_out_channels, cls_out_channels, h, w)
        total += int((logits.softmax(2)[:, :, :-1] > score_thr).sum())
    return total / len(inputs.cls_scores[0])


def post_cells(
    peers: Peers, batch: int, regime: str, args, sessions: Optional[Dict[str, Any]] = None
) -> Dict[str, List[str]]:
    """The ``paper``, ``mmdet`` and (given ONNX Runtime ``sessions``) ``onnx`` rows of one batch
    size and score regime."""
    base = peers.inputs(batch, regime, args.seed + 1000 * (1 + REGIMES.index(regime)) + batch,
                        args.objects)  # fmt: skip
    inputs = base.to(args.device)
    tv_cls = [c.to(args.device) for c in peers.tv_logits(base)]
    sync = synchronizer(args.device)
    rows = {}

    def predict(head, cfg, rescale):
        return lambda: head.predict_by_feat(
            inputs.cls_scores, inputs.bbox_preds, batch_img_metas=inputs.metas, cfg=cfg,
            rescale=rescale)  # fmt: skip

    with torch.no_grad():
        if 'paper' in args.cells:
            fns = {
                'ours': predict(peers.ours, peers.paper_cfg, False),
                'torchvision': lambda: peers.tv_postprocess(tv_cls, inputs.bbox_preds),
            }
            best, results = interleaved_best(fns, args.repeats, args.warmup, sync)
            tv_dets = [(d['boxes'], d['scores'], d['labels'] - 1) for d in results['torchvision']]
            agree = agreement(ours_detections(results['ours']), tv_dets)
            cand = candidates_per_image(base, peers.num_classes + 1, peers.paper_cfg.score_thr)
            dets = sum(len(d.scores) for d in results['ours']) / batch
            rows['paper'] = [batch, regime, f'{cand:.0f}', ms(best['ours']),
                             ms(best['torchvision']), ratio(best['torchvision'], best['ours']),
                             f'{dets:.1f}', agree]  # fmt: skip
            print(f'paper settings, batch {batch}, {regime}: ours {ms(best["ours"])} ms, '
                  f'torchvision {ms(best["torchvision"])} ms; {agree}', flush=True)  # fmt: skip
        if 'mmdet' in args.cells:
            fns = {'ours': predict(peers.ours, peers.mmdet_cfg, True),
                   'mmdet': predict(peers.mmdet, peers.mmdet_cfg, True)}  # fmt: skip
            best, results = interleaved_best(fns, args.repeats, args.warmup, sync)
            cand = candidates_per_image(base, peers.num_classes + 1, peers.mmdet_cfg.score_thr)
            dets = [sum(len(d.scores) for d in results[k]) / batch for k in fns]
            rows['mmdet'] = [batch, regime, f'{cand:.0f}', ms(best['ours']), ms(best['mmdet']),
                             ratio(best['mmdet'], best['ours']),
                             f'{dets[0]:.1f} / {dets[1]:.1f}']  # fmt: skip
            print(f"mmdet's test_cfg, batch {batch}, {regime}: ours {ms(best['ours'])} ms, "
                  f'mmdet {ms(best["mmdet"])} ms', flush=True)  # fmt: skip
        if sessions:
            names = [i.name for i in sessions['bounded'].get_inputs()]
            feeds = {n: t.numpy() for n, t in zip(names, inputs.cls_scores + inputs.bbox_preds)}
            fns = {'ours': predict(peers.ours, peers.paper_cfg, False)}
            for name, session in sessions.items():
                fns[f'ort {name}'] = lambda session=session: session.run(None, feeds)
            best, results = interleaved_best(fns, args.repeats, args.warmup, sync)
            ours_dets = ours_detections(results['ours'])
            agree = [f'{name} ' + agreement(ours_dets, ort_detections(results[f'ort {name}']))
                     for name in sessions]  # fmt: skip
            cand = candidates_per_image(base, peers.num_classes + 1, peers.paper_cfg.score_thr)
            ours, bounded, unbounded = best['ours'], best['ort bounded'], best['ort unbounded']
            rows['onnx'] = [batch, regime, f'{cand:.0f}', ms(ours), ms(bounded), ms(unbounded),
                            ratio(bounded, ours), ratio(unbounded, ours),
                            '; '.join(agree)]  # fmt: skip
            print(f'onnx, batch {batch}, {regime}: ours {ms(ours)} ms, ONNX Runtime bounded '
                  f'{ms(bounded)} ms, unbounded {ms(unbounded)} ms; {"; ".join(agree)}',
                  flush=True)  # fmt: skip
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    begin('SSD300-COCO head: loss and post-processing, ours vs mmdet SSDHead vs '
                 'torchvision SSD', args.device, __file__, argv)  # fmt: skip
    print(f'repeats {args.repeats} (best reported) after {args.warmup} warm-up round(s), '
          f'interleaved; seed {args.seed}; batches {args.batches}; regimes {args.regimes}; '
          f'cells {args.cells}')  # fmt: skip
    peers = Peers(args.device)
    print("mmdet SSDHead: head.loss_cls set to an empty object (mmdet 3.3's predict_by_feat "
          'reads it and the head never sets it)')  # fmt: skip
    print('paper settings (ours: our config test_cfg; torchvision: score_thresh, nms_thresh, '
          'topk_candidates, detections_per_img the same): '
          f'{peers.paper_cfg.to_dict()}')  # fmt: skip
    print(f"mmdet's SSD300 test_cfg (ours and mmdet): {peers.mmdet_cfg.to_dict()}; nms_pre is "
          'per level in mmdet, per class in ours')  # fmt: skip
    sys.stdout.flush()

    sessions = ort_sessions(peers, args.device) if 'onnx' in args.cells else None
    sys.stdout.flush()

    loss_rows, paper_rows, mmdet_rows, onnx_rows = [], [], [], []
    for batch in args.batches:
        if 'loss' in args.cells:
            loss_rows.append(loss_cell(peers, batch, args))
        if {'paper', 'mmdet'} & set(args.cells) or sessions:
            for regime in args.regimes:
                rows = post_cells(peers, batch, regime, args, sessions)
                paper_rows += [rows['paper']] if 'paper' in rows else []
                mmdet_rows += [rows['mmdet']] if 'mmdet' in rows else []
                onnx_rows += [rows['onnx']] if 'onnx' in rows else []

    if loss_rows:
        print_table('Loss forward + backward (ms, best of repeats; ratio = peer / ours)',
                    ['batch', 'ground truths', 'ours', 'mmdet', 'torchvision', 'mmdet / ours',
                     'torchvision / ours'], loss_rows)  # fmt: skip
    if paper_rows:
        print_table('Post-processing at the paper settings (ms): ours vs torchvision '
                    'postprocess_detections',
                    ['batch', 'regime', 'scores > thr per image', 'ours', 'torchvision',
                     'torchvision / ours', 'ours dets / image', 'same detections'],
                    paper_rows)  # fmt: skip
    if mmdet_rows:
        print_table("Post-processing at mmdet's test_cfg (ms): ours vs mmdet SSDHead",
                    ['batch', 'regime', 'scores > thr per image', 'ours', 'mmdet',
                     'mmdet / ours', 'dets / image (ours / mmdet)'], mmdet_rows)  # fmt: skip
    if onnx_rows:
        print_table('Post-processing at the paper settings in ONNX Runtime (ms): ours PyTorch '
                    'predict_by_feat vs the head graph (decode + NMS) on the same outputs',
                    ['batch', 'regime', 'scores > thr per image', 'ours PyTorch', 'ORT bounded',
                     'ORT unbounded', 'ORT bounded / ours', 'ORT unbounded / ours',
                     'same detections'], onnx_rows)  # fmt: skip
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
