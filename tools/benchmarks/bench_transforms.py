"""Benchmark SSD's train augmentation: mmdet's pipeline against ssd_plugin's, same images, one run.

Two measurements, both on one CPU core (``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``),
in CPU seconds (``time.process_time``, robust to other processes on a shared machine; wall-clock
rates are printed too), the two pipelines interleaved so they share any load alike:

1. Augmentation: the train transforms after loading (zoom-out/expand, IoU crop, resize 300x300,
   flip, photometric distortion), on the same decoded images and annotations.
2. End to end: a ``CocoDataset`` over JPEG files written to a temporary directory, read through a
   ``DataLoader`` (``num_workers=0``, batch 8, ``pseudo_collate``), loading and ``PackDetInputs``
   included.

Images are random COCO-like sizes (640x480, 480x640, 640x427, ...) with smooth texture and 1 to 20
boxes each, from a fixed seed. Example::

    python tools/benchmarks/bench_transforms.py --num-images 200 --repeats 3
"""

import argparse
import copy
import itertools
import json
import os.path as osp
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np
import torch
from mmcv.transforms import Compose
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from torch.utils.data import DataLoader

import ssd_plugin  # noqa: F401  (registers ZoomOut, MinIoUCrop, PhotometricDistort)

SIZES = ((640, 480), (480, 640), (640, 427), (427, 640), (640, 360), (500, 375), (375, 500))
MEAN_RGB = (123.675, 116.28, 103.53)
LOADING = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True)]
MMDET_AUG = [
    dict(type='Expand', mean=MEAN_RGB, to_rgb=True, ratio_range=(1, 4)),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type='Resize', scale=(300, 300), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
]
OURS_AUG = [
    dict(type='ZoomOut', prob=0.5, ratio_range=(1, 4), fill=MEAN_RGB[::-1]),
    dict(type='MinIoUCrop'),
    dict(type='Resize', scale=(300, 300), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotometricDistort'),
]
PACK = [dict(type='PackDetInputs')]


def make_samples(num: int, seed: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """``num`` (BGR uint8 image, (G, 4) float32 xyxy boxes) pairs, textured, 1-20 boxes each."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(num):
        w, h = SIZES[i % len(SIZES)]
        coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        img = cv2.add(img, rng.integers(0, 24, (h, w, 3), dtype=np.uint8))
        num_boxes = int(rng.integers(1, 21))
        x1y1 = rng.uniform(0, 0.9, (num_boxes, 2)) * (w, h)
        wh = rng.uniform(0.03, 0.6, (num_boxes, 2)) * (w, h)
        boxes = np.concatenate([x1y1, np.minimum(x1y1 + wh, (w, h))], axis=1)
        samples.append((img, boxes.astype(np.float32)))
    return samples


def results_dict(img: np.ndarray, boxes: np.ndarray, idx: int) -> dict:
    """What ``LoadImageFromFile`` + ``LoadAnnotations`` give (fresh boxes: transforms edit them)."""
    h, w = img.shape[:2]
    return dict(
        img=img,
        img_path=f'{idx}.jpg',
        img_id=idx,
        img_shape=(h, w),
        ori_shape=(h, w),
        gt_bboxes=HorizontalBoxes(boxes.copy()),
        gt_bboxes_labels=np.zeros(len(boxes), dtype=np.int64),
        gt_ignore_flags=np.zeros(len(boxes), dtype=bool),
    )


class Clock:
    """Accumulates CPU time (``time.process_time``: fair on a shared machine) and wall time."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0
        self.count = 0

    def run(self, fn: Callable, *args):
        cpu, wall = time.process_time(), time.perf_counter()
        out = fn(*args)
        self.cpu += time.process_time() - cpu
        self.wall += time.perf_counter() - wall
        return out

    def rates(self) -> Tuple[float, float]:
        """Images per CPU second and per wall second."""
        return self.count / max(self.cpu, 1e-9), self.count / max(self.wall, 1e-9)


def time_augmentation(pipelines: Dict[str, list], samples, repeats: int, seed: int):
    """Time every transform of every pipeline, the pipelines interleaved image by image.

    Each pipeline has its own numpy RNG stream (seeded alike), so interleaving changes nothing
    in what it computes; it only makes both share the machine's load equally.

    Returns:
        ``{name: [Clock per transform]}``.
    """
    transforms = {name: [Compose([t]) for t in cfgs] for name, cfgs in pipelines.items()}
    clocks = {name: [Clock() for _ in cfgs] for name, cfgs in pipelines.items()}
    states = {}
    for name in pipelines:
        np.random.seed(seed)
        states[name] = np.random.get_state()
    for _ in range(repeats):
        for idx, (img, boxes) in enumerate(samples):
            for name, steps in transforms.items():
                np.random.set_state(states[name])
                results = results_dict(img, boxes, idx)
                for step, clock in zip(steps, clocks[name]):
                    results = clock.run(step, results)
                    clock.count += 1
                states[name] = np.random.get_state()
    return clocks


def write_coco(samples, root: str) -> str:
    """Write ``samples`` as JPEGs plus a COCO json under ``root``; return the json path."""
    images, annotations = [], []
    for idx, (img, boxes) in enumerate(samples):
        name = f'{idx:06d}.jpg'
        cv2.imwrite(osp.join(root, name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append(dict(id=idx, file_name=name, height=img.shape[0], width=img.shape[1]))
        for x1, y1, x2, y2 in boxes.tolist():
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=idx,
                    category_id=1,
                    bbox=[x1, y1, x2 - x1, y2 - y1],
                    area=(x2 - x1) * (y2 - y1),
                    iscrowd=0,
                )
            )
    ann_file = osp.join(root, 'ann.json')
    with open(ann_file, 'w') as f:
        json.dump(
            dict(images=images, annotations=annotations, categories=[dict(id=1, name='object')]), f
        )
    return ann_file


def time_loaders(
    pipelines: Dict[str, list], root: str, ann_file: str, repeats: int, seed: int
) -> Dict[str, Clock]:
    """One-process ``DataLoader`` per pipeline over the JPEG dataset, batches interleaved."""
    from mmdet.datasets import CocoDataset

    iters, clocks, states = {}, {}, {}
    for name, pipeline in pipelines.items():
        dataset = CocoDataset(
            data_root=root,
            ann_file=ann_file,
            data_prefix=dict(img=''),
            metainfo=dict(classes=('object',)),
            pipeline=copy.deepcopy(pipeline),
            filter_cfg=dict(filter_empty_gt=False),
        )
        loader = DataLoader(dataset, batch_size=8, num_workers=0, collate_fn=pseudo_collate)
        iters[name] = itertools.chain.from_iterable(itertools.repeat(loader, repeats))
        clocks[name] = Clock()
        np.random.seed(seed)
        states[name] = np.random.get_state()
    while iters:
        for name in list(iters):
            np.random.set_state(states[name])
            batch = clocks[name].run(next, iters[name], None)
            states[name] = np.random.get_state()
            if batch is None:
                del iters[name]
            else:
                clocks[name].count += len(batch['inputs'])
    return clocks


def _report(title: str, clocks: Dict[str, Clock]) -> None:
    """One line per pipeline: CPU rate, wall rate, and both speed-ups over mmdet."""
    ref_cpu, ref_wall = clocks['mmdet'].rates()
    for name, clock in clocks.items():
        cpu, wall = clock.rates()
        print(
            f'{title:<13} {name:<27} {cpu:7.1f} img/s  x{cpu / ref_cpu:5.2f}   '
            f'(wall clock {wall:7.1f} img/s  x{wall / ref_wall:5.2f})'
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-images', type=int, default=200)
    parser.add_argument('--repeats', type=int, default=3, help='passes over the images')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    init_default_scope('mmdet')
    samples = make_samples(args.num_images, args.seed)
    print(f'{args.num_images} images x {args.repeats} passes, one CPU core, seed {args.seed}')

    pipelines = {'mmdet': MMDET_AUG, 'ssd_plugin': OURS_AUG}
    # The same pipeline with mmdet's "every box" IoU constraint: the speed is not from 'any'.
    pipelines["ssd_plugin constraint='all'"] = [
        dict(cfg, constraint='all') if cfg['type'] == 'MinIoUCrop' else cfg for cfg in OURS_AUG
    ]
    stage_clocks = time_augmentation(pipelines, samples, args.repeats, args.seed)
    for name, clocks in stage_clocks.items():
        stages = ', '.join(
            f'{cfg["type"]} {1e3 * c.cpu / c.count:.2f}' for cfg, c in zip(pipelines[name], clocks)
        )
        print(f'{name} CPU ms per image: {stages}')
    totals = {}
    for name, clocks in stage_clocks.items():
        totals[name] = Clock()
        totals[name].cpu = sum(c.cpu for c in clocks)
        totals[name].wall = sum(c.wall for c in clocks)
        totals[name].count = clocks[0].count
    _report('augmentation', totals)

    with tempfile.TemporaryDirectory() as root:
        ann_file = write_coco(samples, root)
        loaders = {name: LOADING + pipelines[name] + PACK for name in ('mmdet', 'ssd_plugin')}
        _report('data loader', time_loaders(loaders, root, ann_file, args.repeats, args.seed))


if __name__ == '__main__':
    main()
