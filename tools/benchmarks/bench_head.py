"""Time MultiBoxHead's loss and post-processing against mmdet 3.3's SSDHead on the same inputs.

Usage::

    python tools/benchmarks/bench_head.py --device cpu --repeats 5

Both heads get the same SSD300-COCO outputs for a batch of ``--batch`` images (default 32): logits
where most default boxes are confidently background and a few hundred per image are objects,
offsets ~ N(0, 0.5), and 1 to 20 random plausible ground truths per image (fixed seed).

- loss: ``loss_by_feat`` forward only (matching, targets, hard negative mining, losses), from
  the same cls/reg tensors (requiring grad, as in training).
- post-processing: ``predict_by_feat`` with ``rescale=True``. mmdet 3.3's SSDHead crashes there
  (no ``loss_cls`` attribute, mmdet issue #11063); the benchmark sets ``head.loss_cls`` to an
  empty object so it runs. Both use score_thr 0.01, NMS IoU 0.45, 200 per image,
  min_bbox_size 0; pre-NMS top-k differs by design: mmdet keeps 1000 (default box, class) pairs
  per *level*, ours 400 per *class* (Caffe).
- NMS stage alone, on the same decoded boxes: our ``batched_multiclass_nms``; with
  ``--offset-nms`` also the same candidate selection followed by one coordinate-offset call of
  torchvision's ``nms`` over the whole batch (the alternative our padded per-group NMS replaces;
  quadratic in the batch's candidates on CPU, minutes at batch 32).
"""

import argparse
import os.path as osp
import time
from types import SimpleNamespace
from typing import Any, Callable, List, Tuple

import mmdet
import torch
from mmdet.registry import MODELS
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torch import Tensor
from torchvision.ops import nms

import ssd_plugin  # noqa: F401  (registers MultiBoxHead)
from ssd_plugin.functional.postprocess import batched_multiclass_nms, group_rank

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SIZES = (38, 19, 10, 5, 3, 1)
BOXES_PER_LOCATION = (4, 6, 6, 6, 4, 4)
NUM_CLASSES = 80


def make_inputs(num_imgs: int, device: str, seed: int = 0) -> Tuple[list, list, list, list]:
    """SSD300-COCO head outputs, ground truths and image metas for ``num_imgs`` images."""
    gen = torch.Generator().manual_seed(seed)
    cls_scores, bbox_preds = [], []
    for k, s in zip(BOXES_PER_LOCATION, SIZES):
        logits = torch.randn(num_imgs, s, s, k, NUM_CLASSES + 1, generator=gen)
        logits[..., NUM_CLASSES] += 8  # confidently background
        # A few hundred objects per image: a boost on one class of ~1 % of the default boxes.
        objects = torch.rand(num_imgs, s, s, k, generator=gen) < 0.035
        labels = torch.randint(NUM_CLASSES, (num_imgs, s, s, k), generator=gen)
        boost = torch.nn.functional.one_hot(labels, NUM_CLASSES + 1) * (10 + 3 * torch.rand(
            num_imgs, s, s, k, 1, generator=gen))  # fmt: skip
        logits += boost * objects[..., None]
        cls_scores.append(logits.flatten(3).permute(0, 3, 1, 2).contiguous())
        bbox_preds.append(torch.randn(num_imgs, k * 4, s, s, generator=gen) * 0.5)
    gts = []
    for _ in range(num_imgs):
        n = int(torch.randint(1, 21, (1,), generator=gen))
        centre = torch.rand(n, 2, generator=gen) * 300
        size = 10 + torch.rand(n, 2, generator=gen) * 240
        boxes = torch.cat([centre - size / 2, centre + size / 2], 1).clamp(0, 300)
        labels = torch.randint(NUM_CLASSES, (n,), generator=gen)
        gts.append(InstanceData(bboxes=boxes.to(device), labels=labels.to(device)))
    metas = [dict(img_shape=(300, 300), pad_shape=(300, 300), scale_factor=(300 / 640, 300 / 480))
             ] * num_imgs  # fmt: skip
    cls_scores = [c.to(device).requires_grad_() for c in cls_scores]
    bbox_preds = [b.to(device).requires_grad_() for b in bbox_preds]
    return cls_scores, bbox_preds, gts, metas


def offset_nms_postprocess(
    boxes: Tensor, scores: Tensor, score_thr: float, iou_thr: float, nms_pre: int, max_per_img: int
) -> List[Tensor]:
    """Our candidate selection, then one torchvision ``nms`` over (image, class)-offset boxes."""
    num_imgs, _, num_classes = scores.shape
    img_ids, prior_ids, labels = (scores > score_thr).nonzero(as_tuple=True)
    cand_scores = scores[img_ids, prior_ids, labels]
    groups = img_ids * num_classes + labels
    order, rank = group_rank(groups, cand_scores, num_imgs * num_classes)
    order = order[rank < nms_pre]
    cand_boxes, groups = boxes[img_ids[order], prior_ids[order]], groups[order]
    offsets = groups.to(boxes.dtype)[:, None] * (cand_boxes.max() + 1)
    keep = nms(cand_boxes + offsets, cand_scores[order], iou_thr)
    kept_imgs = img_ids[order][keep]
    return [keep[kept_imgs == i][:max_per_img] for i in range(num_imgs)]


def timed(fn: Callable, repeats: int, device: str) -> Tuple[float, Any]:
    """Median wall time of ``fn`` in ms after one warm-up call, and the warm-up's result."""
    result = fn()
    times = []
    for _ in range(repeats):
        if device == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == 'cuda':
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2], result


def main() -> None:
    parser = argparse.ArgumentParser(description='MultiBoxHead vs mmdet SSDHead: loss and NMS')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument(
        '--offset-nms', action='store_true', help='also time one torchvision nms over the batch'
    )
    args = parser.parse_args()
    init_default_scope('mmdet')
    torch.manual_seed(0)

    test_cfg = dict(score_thr=0.01, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0,
                    max_per_img=200)  # fmt: skip
    ref = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim/configs/ssd/ssd300_coco.py'))
    theirs_cfg = dict(ref.model.bbox_head, train_cfg=ref.model.train_cfg,
                      test_cfg=ConfigDict(test_cfg, nms_pre=1000))  # fmt: skip
    theirs = MODELS.build(theirs_cfg).to(args.device)
    theirs.loss_cls = SimpleNamespace()  # mmdet 3.3 SSDHead lacks it and crashes in predict
    ours_cfg = Config.fromfile(osp.join(REPO, 'configs', 'ssd300_vgg16_8xb8-120e_coco.py'))
    ours = MODELS.build(dict(ours_cfg.model.bbox_head, test_cfg=dict(test_cfg, nms_pre=400)))
    ours = ours.to(args.device)

    cls_scores, bbox_preds, gts, metas = make_inputs(args.batch, args.device)

    def run_loss(head):
        return lambda: head.loss_by_feat(cls_scores, bbox_preds, gts, metas)

    def run_predict(head):
        return lambda: head.predict_by_feat(
            cls_scores, bbox_preds, batch_img_metas=metas, rescale=True
        )

    repeats, device = args.repeats, args.device
    loss_ms_theirs, loss_theirs = timed(run_loss(theirs), repeats, device)
    loss_ms_ours, loss_ours = timed(run_loss(ours), repeats, device)
    with torch.no_grad():
        post_ms_theirs, dets_theirs = timed(run_predict(theirs), repeats, device)
        post_ms_ours, dets_ours = timed(run_predict(ours), repeats, device)
        flat_cls, flat_reg, priors = ours._flatten(cls_scores, bbox_preds)
        scores = flat_cls.softmax(-1)[..., :NUM_CLASSES]
        boxes = ours.bbox_coder.decode(priors.repeat(args.batch, 1), flat_reg.reshape(-1, 4))
        boxes = boxes.view(args.batch, -1, 4).clamp(0, 300)
        padded, _ = timed(
            lambda: batched_multiclass_nms(boxes, scores, 0.01, 0.45, 400, 200), repeats, device
        )
    rows = [
        ('loss (forward)', loss_ms_theirs, loss_ms_ours),
        ('post-processing', post_ms_theirs, post_ms_ours),
    ]

    num_gts = sum(len(g) for g in gts)
    print(f'device {args.device}, batch {args.batch}, median of {args.repeats} runs, '
          f'{torch.get_num_threads()} threads, {num_gts} ground truths')  # fmt: skip
    print('mmdet SSDHead: head.loss_cls set to an empty object so that predict_by_feat runs')
    print(f'{"stage":<18}{"mmdet ms":>10}{"ours ms":>10}{"speed-up":>10}')
    for name, ms_theirs, ms_ours in rows:
        print(f'{name:<18}{ms_theirs:>10.1f}{ms_ours:>10.1f}{ms_theirs / ms_ours:>9.1f}x')
    print(f'NMS stage only (same decoded boxes): ours {padded:.1f} ms')
    if args.offset_nms:
        with torch.no_grad():
            offset, _ = timed(
                lambda: offset_nms_postprocess(boxes, scores, 0.01, 0.45, 400, 200), 1, device
            )
        print(
            f'  one coordinate-offset torchvision nms over the batch instead: {offset:.1f} ms '
            f'({offset / padded:.1f}x slower)'
        )
    loss_mmdet = sum(float(sum(v).detach()) for v in loss_theirs.values())
    print(
        f'loss mmdet {loss_mmdet:.4f}, ours {float(sum(loss_ours.values()).detach()):.4f} '
        '(the matchers differ where ground truths compete for a default box)'
    )
    print(
        f'detections per image: mmdet {sum(len(d) for d in dets_theirs) / args.batch:.1f}, '
        f'ours {sum(len(d) for d in dets_ours) / args.batch:.1f}'
    )


if __name__ == '__main__':
    main()
