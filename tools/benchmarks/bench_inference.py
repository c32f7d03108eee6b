"""Benchmark inference: images/s of a detector and of mmdet's built-in SSD300 on the same inputs.

Two timings per model and batch size, after warm-up:

- ``full``: ``model.test_step(data)``, what ``tools/test.py`` and ``DetInferencer`` run per batch:
  data preprocessor (to float, BGR->RGB, normalise, stack), forward, post-processing (decode,
  score threshold, NMS, rescale to the original image). The test pipeline (load + resize) runs
  once, outside the timing.
- ``forward``: the network alone, ``model(inputs, mode='tensor')`` on the preprocessed batch.

Precisions: fp32 everywhere; on CUDA also bf16 autocast with channels_last weights. The inputs are
synthetic 640x480 images (smooth texture, fixed seed) put through each model's own test pipeline.
Without ``--checkpoint`` both models are randomly initialised: every class probability is then
near ``1 / (C + 1)`` (1/81 on COCO), above a 0.01 ``score_thr`` (the paper's, this plugin's) and
below 0.02 (mmdet's SSD300): post-processing then sees every candidate or none. Compare both at
one threshold with ``--score-thr`` (0.01: the worst case for NMS; 0.05: almost no candidates).

mmdet 3.3.0's ``SSDHead`` never creates ``loss_cls`` (its ``__init__`` skips ``AnchorHead``'s),
and ``predict`` reads it (``AttributeError: 'SSDHead' object has no attribute 'loss_cls'``,
mmdetection#11305): this script sets the attribute on the instance (a softmax cross-entropy, as
SSD's) so that mmdet's SSD300 runs. Examples::

    python tools/benchmarks/bench_inference.py configs/ssd300_vgg16_8xb8-120e_coco.py
    python tools/benchmarks/bench_inference.py CONFIG --device cuda --repeats 20
    python tools/benchmarks/bench_inference.py CONFIG --device cpu --batch-sizes 1 8 --repeats 3
"""

import argparse
import copy
import time
from contextlib import nullcontext
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.hub import get_config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

import ssd_plugin  # noqa: F401  (registers the components: configs need no custom_imports)

REFERENCE = 'mmdet::ssd/ssd300_coco.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Benchmark detector inference (images/s)')
    parser.add_argument('config', help='config of the detector to time')
    parser.add_argument('--checkpoint', help='its weights (default: random initialisation)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 32])
    parser.add_argument('--repeats', type=int, default=10, help='timed batches per setting')
    parser.add_argument('--warmup', type=int, default=2, help='untimed batches per setting')
    parser.add_argument('--reference', default=REFERENCE,
                        help='config to compare with; "none": skip')  # fmt: skip
    parser.add_argument('--no-forward', action='store_true', help='skip the forward-only timing')
    parser.add_argument('--score-thr', type=float,
                        help="set both models' test_cfg.score_thr")  # fmt: skip
    return parser.parse_args(argv)


def load_config(path: str) -> Config:
    return get_config(path) if '::' in path else Config.fromfile(path)


def build_model(
    cfg: Config, checkpoint: Optional[str], device: str, score_thr: Optional[float]
) -> torch.nn.Module:
    if score_thr is not None:
        cfg.model.test_cfg.score_thr = score_thr
    model = MODELS.build(cfg.model)
    if checkpoint:  # else PyTorch's default init: init_cfg may name a download (Pretrained)
        load_checkpoint(model, checkpoint, map_location='cpu')
    head = getattr(model, 'bbox_head', None)
    if head is not None and not hasattr(head, 'loss_cls'):  # mmdet 3.3.0 SSDHead (see above)
        head.loss_cls = MODELS.build(dict(type='CrossEntropyLoss', use_sigmoid=False))
    return model.to(device).eval()


def make_images(num: int, seed: int = 0) -> List[np.ndarray]:
    """``num`` smooth-textured 480x640 BGR images (upsampled noise: not trivially compressible)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (num, 30, 40, 3), dtype=np.uint8)
    return [cv2.resize(s, (640, 480), interpolation=cv2.INTER_CUBIC) for s in small]


def make_batch(cfg: Config, images: Sequence[np.ndarray]) -> Dict:
    """The images through the config's test pipeline, collated as a dataloader would."""
    pipeline_cfg = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    pipeline_cfg[0] = dict(type='mmdet.LoadImageFromNDArray')  # in place of LoadImageFromFile
    pipeline = Compose(pipeline_cfg)
    return pseudo_collate([pipeline(dict(img=img, img_id=i)) for i, img in enumerate(images)])


def time_it(fn: Callable[[], object], repeats: int, warmup: int, device: str) -> float:
    """Mean seconds per call."""
    sync = torch.cuda.synchronize if device.startswith('cuda') else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def bench_model(name: str, cfg: Config, args: argparse.Namespace, images) -> List[Dict]:
    checkpoint = args.checkpoint if name == 'this' else None
    model = build_model(cfg, checkpoint, args.device, args.score_thr)
    precisions = ['fp32'] + (['bf16+channels_last'] if args.device.startswith('cuda') else [])
    rows = []
    for precision in precisions:
        if precision != 'fp32':
            model = model.to(memory_format=torch.channels_last)
        for bs in args.batch_sizes:
            data = make_batch(cfg, images[:bs])
            inputs = model.data_preprocessor(data, False)['inputs']
            steps = {'full': partial(model.test_step, data)}
            if not args.no_forward:
                steps['forward'] = partial(model, inputs, mode='tensor')
            for step, fn in steps.items():
                autocast = (
                    torch.autocast('cuda', dtype=torch.bfloat16)
                    if precision != 'fp32'
                    else nullcontext()
                )
                with torch.inference_mode(), autocast:
                    sec = time_it(fn, args.repeats, args.warmup, args.device)
                rows.append(dict(model=name, precision=precision, batch=bs, step=step,
                                 img_s=bs / sec, ms=sec * 1e3))  # fmt: skip
                print(f'  {name:9s} {precision:18s} batch {bs:3d} {step:7s} '
                      f'{bs / sec:9.2f} img/s  {sec * 1e3:10.1f} ms/batch', flush=True)  # fmt: skip
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    images = make_images(max(args.batch_sizes))
    configs = {'this': load_config(args.config)}
    if args.reference.lower() != 'none':
        configs['reference'] = load_config(args.reference)
    print(f'device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'repeats {args.repeats} (+{args.warmup} warm-up); this = {args.config}, '
          f'reference = {args.reference}')  # fmt: skip
    rows = []
    for name, cfg in configs.items():
        rows += bench_model(name, cfg, args, images)
    print('\n| model | precision | batch | step | images/s | ms/batch |\n|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['model']} | {r['precision']} | {r['batch']} | {r['step']} | "
              f"{r['img_s']:.2f} | {r['ms']:.1f} |")  # fmt: skip


if __name__ == '__main__':
    main()
