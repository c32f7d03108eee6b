"""Whole-detector training throughput: ours against mmdet's SSD in the same run.

Usage::

    python tools/benchmarks/bench_train.py --device cuda              # SSD300, batch 32
    python tools/benchmarks/bench_train.py --device cpu --batch 4 --repeats 2
    python tools/benchmarks/bench_train.py --quick                    # SSDLite, batch 2 (tests)

One step is forward, loss, backward and an SGD update (momentum 0.9, weight decay 5e-4, a small
learning rate so that random weights stay finite) of the whole detector on random normalised
images (``--batch`` per device, default 32) with 1-20 random ground truths per image; data
loading and augmentation are left out (``bench_transforms.py`` times those). ``--family``:
``ssd300`` (ours: ``configs/ssd300_vgg16_8xb8-120e_coco.py``; mmdet's ``ssd/ssd300_coco.py``)
or ``ssdlite`` (``configs/ssdlite_mobilenetv2_8xb24-600e_coco.py``; mmdet's
``ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py``). Random weights (PyTorch's init).

Modes (``--modes``; default on CUDA all four, on CPU ``fp32`` and ``amp``): ``fp32``;
``fp32-cl``: channels_last weights and images; ``bf16-cl``: channels_last with bf16 autocast
around the whole step (the loss runs in whatever precision each head chooses under autocast);
``amp``: ours through the real ``--amp`` path (``ssd_plugin.engine.amp``: the precision
``choose_amp`` picks for this device, the network under autocast + channels_last, float32 loss,
a loss scaler for float16) against mmdet's best float32 step (the faster of its ``fp32`` and
``fp32-cl``, timed in the same rounds), since mmdet's ``--amp`` cannot run on a CPU.

Timing rules: see ``bench_common.py`` (interleaved, warm-up, best of ``--repeats``, ratios
``peer / ours`` of step times, i.e. ours' images/s over mmdet's).

oneDNN's primitive cache (1024 entries by default) is raised to 8192 unless
``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` is set: the ``amp`` mode interleaves three SSD300s in two
dtypes and layouts, whose forward and backward primitives overflow 1024 entries, so each step
re-created its primitives (measured: ours 2.49 s instead of 1.36 s per SSD300 batch-2 step). A
training run holds one model and is not affected.
"""

import os

os.environ.setdefault('ONEDNN_PRIMITIVE_CACHE_CAPACITY', '8192')  # before oneDNN's first use

import argparse  # noqa: E402
import traceback  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Dict, List  # noqa: E402

import bench_common as common  # noqa: E402
import torch  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmengine.config import Config  # noqa: E402
from synthetic import random_ground_truths  # noqa: E402

import ssd_plugin  # noqa: F401,E402  (registers the components)
from ssd_plugin.engine.amp import autocast_network, choose_amp  # noqa: E402

FAMILIES = {
    'ssd300': ('ssd300_vgg16_8xb8-120e_coco.py', 'ssd/ssd300_coco.py', 300),
    'ssdlite': (
        'ssdlite_mobilenetv2_8xb24-600e_coco.py',
        'ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py',
        320,
    ),  # fmt: skip
}
MODES = ('fp32', 'fp32-cl', 'bf16-cl', 'amp')
NUM_CLASSES = 80


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Training step throughput: ours vs mmdet')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--family', default='ssd300', choices=list(FAMILIES))
    parser.add_argument('--batch', type=int, default=32, help='images per step')
    parser.add_argument('--modes', nargs='+', choices=MODES,
                        help='default: cuda all, cpu fp32 amp')  # fmt: skip
    parser.add_argument('--repeats', type=int, default=3, help='timed rounds (best is reported)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed rounds first')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quick', action='store_true',
                        help='SSDLite, batch 2, one timed round: proves it runs')  # fmt: skip
    args = common.parse_with_quick(parser, argv, family='ssdlite', batch=2, repeats=1, warmup=1)
    if args.modes is None:
        args.modes = list(MODES) if args.device == 'cuda' else ['fp32', 'amp']
    return args


def random_batch(batch: int, size: int, device: str, seed: int):
    """Normalised random images and data samples with 1-20 ground truths each."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=gen).to(device)
    samples = []
    for gt in random_ground_truths(batch, size, NUM_CLASSES, gen):
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), pad_shape=(size, size),
                                             ori_shape=(size, size), batch_input_shape=(size, size),
                                             scale_factor=(1.0, 1.0)))  # fmt: skip
        sample.gt_instances = gt.to(device)
        samples.append(sample)
    return images, samples


class Trainer:
    """A detector with its SGD optimiser, stepping in one mode."""

    def __init__(self, cfg: Config, device: str, mode: str) -> None:
        model = common.build_detector(cfg.model)
        if not hasattr(model.bbox_head, 'loss_cls'):  # mmdet 3.3's SSDHead never sets it
            model.bbox_head.loss_cls = SimpleNamespace()
        self.channels_last = mode.endswith('-cl')
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=fmt).train()
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9,
                                         weight_decay=5e-4)  # fmt: skip
        self.autocast = (torch.autocast(device, dtype=torch.bfloat16) if mode.startswith('bf16')
                         else nullcontext())  # fmt: skip
        self.scaler = None
        if mode == 'amp':  # what tools/train.py --amp does: MixedPrecisionHook's wrapping
            self.choice = choose_amp(device)
            autocast_network(self.model, self.choice)
            self.channels_last = self.choice.channels_last
            if self.choice.loss_scale:  # LossScaleOptimWrapper's GradScaler
                self.scaler = torch.amp.GradScaler(device)

    def step(self, images: torch.Tensor, samples: List[DetDataSample]) -> torch.Tensor:
        with self.autocast:
            losses = self.model(images, samples, mode='loss')
            loss, _ = self.model.parse_losses(losses)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def bench_mode(mode: str, configs: Dict[str, Config], args, size: int) -> List[str]:
    torch.manual_seed(args.seed)
    images, samples = random_batch(args.batch, size, args.device, args.seed)
    if mode == 'amp':  # ours --amp against mmdet's best float32 (plain or channels_last)
        trainers = {'ours': Trainer(configs['ours'], args.device, 'amp'),
                    'mmdet': Trainer(configs['mmdet'], args.device, 'fp32'),
                    'mmdet-cl': Trainer(configs['mmdet'], args.device, 'fp32-cl')}  # fmt: skip
        print(f'amp: ours {trainers["ours"].choice.describe()}')
    else:
        trainers = {name: Trainer(cfg, args.device, mode) for name, cfg in configs.items()}
    cl_images = images.contiguous(memory_format=torch.channels_last)
    fns = {name: (lambda t=t, x=(cl_images if t.channels_last else images): t.step(x, samples))
           for name, t in trainers.items()}  # fmt: skip
    best, results = common.interleaved_best(
        fns, args.repeats, args.warmup, common.synchronizer(args.device)
    )
    if 'mmdet-cl' in best:
        best['mmdet'] = min(best['mmdet'], best.pop('mmdet-cl'))
        results.pop('mmdet-cl')
    losses = ', '.join(f'{name} {float(v):.3f}' for name, v in results.items())
    print(f'{mode}: ' + ', '.join(f'{n} {common.ms(v)} ms' for n, v in best.items()) +
          f' (last losses: {losses})', flush=True)  # fmt: skip
    speed = {name: args.batch * 1e3 / v for name, v in best.items()}
    if mode == 'amp':
        dtype = trainers['ours'].choice.dtype
        mode = f'amp ({"float32" if dtype is None else str(dtype)[6:]}) vs mmdet best fp32'
    return [mode, common.ms(best['ours']), common.ms(best['mmdet']), f'{speed["ours"]:.1f}',
            f'{speed["mmdet"]:.1f}', common.ratio(best['mmdet'], best['ours'])]  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    common.begin(f'Training throughput ({args.family}): ours vs mmdet', args.device, __file__, argv)
    ours_cfg, mmdet_cfg, size = FAMILIES[args.family]
    print(f'batch {args.batch} per device, modes {args.modes}, repeats {args.repeats} (best '
          f'reported) after {args.warmup} warm-up round(s), interleaved; '
          f'seed {args.seed}')  # fmt: skip
    print('mmdet SSDHead: head.loss_cls set to an empty object (mmdet 3.3 never sets it)')
    configs = dict(ours=Config.fromfile(common.repo_config(ours_cfg)),
                   mmdet=Config.fromfile(common.mmdet_config(mmdet_cfg)))  # fmt: skip
    rows, failed = [], False
    for mode in args.modes:
        try:
            rows.append(bench_mode(mode, configs, args, size))
        except Exception as exc:  # one mode failing must not hide the others' figures
            traceback.print_exc()
            rows.append([mode, f'error: {type(exc).__name__}: {exc}'] + ['-'] * 4)
            failed = True
    title = (f'Training step, {args.family}, batch {args.batch} (ms per step, best of repeats; '
             'ratio = mmdet / ours step time)')  # fmt: skip
    header = ['mode', 'ours ms', 'mmdet ms', 'ours images/s', 'mmdet images/s', 'mmdet / ours']
    common.print_table(title, header, rows)
    return 1 if failed else 0


if __name__ == '__main__':
    raise SystemExit(main())
