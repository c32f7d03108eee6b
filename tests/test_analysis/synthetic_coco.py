"""Synthetic COCO annotation files (no images) and tiny configs for the coverage-analysis tests.

Also a script for the COCO-sized benchmark (nothing big is committed)::

    python tests/test_analysis/synthetic_coco.py /tmp/coco_like.json --images 118287 --boxes 860001
"""

import argparse
import json
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ['SSD300_GENERATOR', 'write_synthetic_coco', 'tiny_config', 'write_config']

SSD300_GENERATOR = dict(
    type='DefaultBoxGenerator',
    input_size=300,
    strides=(8, 16, 32, 64, 100, 300),
    ratios=([2], [2, 3], [2, 3], [2, 3], [2], [2]),
    scale_range=(0.15, 0.9),
    scale_mode='caffe',
)


def write_synthetic_coco(
    path: str,
    num_images: int,
    num_boxes: int,
    side_range: Tuple[float, float] = (4, 400),
    image_size: Tuple[int, int] = (640, 480),
    classes: Sequence[str] = ('a', 'b', 'c'),
    seed: int = 0,
    crowd_share: float = 0.0,
) -> None:
    """Write a COCO detection file with log-uniform box sides and random image sizes.

    Args:
        path: Output json.
        num_images: Images (ids 1..num_images); some get no box.
        num_boxes: Annotations, assigned to images at random.
        side_range: Range of the box sides in original pixels (log-uniform).
        image_size: Maximal ``(w, h)``; each image is 60-100 % of it per axis.
        classes: Category names (ids 1..C).
        seed: Random seed.
        crowd_share: Share of ``iscrowd=1`` annotations.
    """
    rng = np.random.default_rng(seed)
    widths = (image_size[0] * rng.uniform(0.6, 1.0, num_images)).astype(int)
    heights = (image_size[1] * rng.uniform(0.6, 1.0, num_images)).astype(int)
    img = rng.integers(0, num_images, num_boxes)
    log_lo, log_hi = np.log(side_range[0]), np.log(side_range[1])
    w = np.minimum(np.exp(rng.uniform(log_lo, log_hi, num_boxes)), widths[img] - 1)
    h = np.minimum(w * np.exp(rng.normal(0, 0.5, num_boxes)), heights[img] - 1).clip(min=1)
    x = rng.uniform(0, 1, num_boxes) * (widths[img] - w)
    y = rng.uniform(0, 1, num_boxes) * (heights[img] - h)
    cat = rng.integers(1, len(classes) + 1, num_boxes)
    crowd = rng.uniform(0, 1, num_boxes) < crowd_share
    coco = {
        'images': [
            {'id': i + 1, 'file_name': f'{i + 1:012d}.jpg', 'width': int(iw), 'height': int(ih)}
            for i, (iw, ih) in enumerate(zip(widths, heights))
        ],
        'categories': [{'id': i + 1, 'name': n} for i, n in enumerate(classes)],
        'annotations': [
            {
                'id': k + 1,
                'image_id': int(img[k]) + 1,
                'category_id': int(cat[k]),
                'bbox': [round(float(x[k]), 2), round(float(y[k]), 2)]
                + [round(float(w[k]), 2), round(float(h[k]), 2)],
                'area': round(float(w[k] * h[k]), 2),
                'iscrowd': int(crowd[k]),
            }
            for k in range(num_boxes)
        ],
    }
    with open(path, 'w') as f:
        json.dump(coco, f)


def tiny_config(
    ann_file: str,
    classes: Optional[Sequence[str]] = ('a', 'b', 'c'),
    input_size: int = 300,
    keep_ratio: bool = False,
    scale_range: Tuple[float, float] = (0.15, 0.9),
) -> dict:
    """An SSD300-shaped config dict (prior generator, RepeatDataset, Resize) around ``ann_file``.

    The model is mmdet's ``SSDHead`` on a stub backbone, so the tests pass explicit
    ``featmap_sizes`` instead of building it.
    """
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(input_size, input_size), keep_ratio=keep_ratio),
        dict(type='PackDetInputs'),
    ]
    metainfo = None if classes is None else dict(classes=tuple(classes))
    return dict(
        default_scope='mmdet',
        model=dict(
            type='SingleStageDetector',
            bbox_head=dict(
                type='SSDHead',
                prior_generator={
                    **SSD300_GENERATOR,
                    'input_size': input_size,
                    'scale_range': scale_range,
                },
            ),
        ),
        train_dataloader=dict(
            dataset=dict(
                type='RepeatDataset',
                times=2,
                dataset=dict(
                    type='CocoDataset',
                    data_root='',
                    ann_file=ann_file,
                    metainfo=metainfo,
                    pipeline=pipeline,
                ),
            )
        ),
    )


def write_config(path: str, cfg: dict) -> str:
    """Write a config dict as a python config file; returns ``path``."""
    with open(path, 'w') as f:
        f.writelines(f'{key} = {value!r}\n' for key, value in cfg.items())
    return path


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='write a synthetic COCO annotation file')
    parser.add_argument('out')
    parser.add_argument('--images', type=int, default=118_287)
    parser.add_argument('--boxes', type=int, default=860_001)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    write_synthetic_coco(
        args.out, args.images, args.boxes, side_range=(3, 500), classes=tuple('abcdefgh'),
        seed=args.seed, crowd_share=0.01,
    )  # fmt: skip
