"""A seeded synthetic COCO-format annotation file (no images), for the coverage analysis at scale.

``tools/analysis/default_box_coverage.py --synthetic-coco IMAGES BOXES`` analyses such a file in
place of a config's training annotations (docs/analysis.md, "Default-box coverage for your
dataset": the COCO-sized figures).
"""

from typing import Sequence, Tuple

import numpy as np
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.config import Config

from ssd_plugin.datasets.coco_writer import write_coco

from .ground_truths import dataset_classes, find_datasets

__all__ = ['write_synthetic_coco', 'use_synthetic_coco']


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
    images = [
        (i + 1, f'{i + 1:012d}.jpg', iw, ih) for i, (iw, ih) in enumerate(zip(widths, heights))
    ]
    write_coco(
        path, images, categories=[(i + 1, n) for i, n in enumerate(classes)], image_ids=img + 1,
        category_ids=cat, bboxes=np.stack([x, y, w, h], axis=1), iscrowd=crowd, decimals=2,
    )  # fmt: skip


def use_synthetic_coco(
    cfg: Config, path: str, num_images: int, num_boxes: int, seed: int = 0
) -> Tuple[str, ...]:
    """Write a synthetic COCO file and make it ``cfg``'s training set, in place.

    The file has the first training dataset's classes, box sides log-uniform in 3..500 px on
    images of up to 640 x 480 and 1 % crowd boxes (which the analysis drops, as the matcher
    ignores them). It replaces the whole training set, wrappers included (a ConcatDataset would
    count it once per part), as the first leaf dataset with its pipeline (``Resize``) and
    filters, read as ``CocoDataset`` where that leaf reads another layout (VOC).

    Args:
        cfg: Config whose ``train_dataloader.dataset`` is replaced.
        path: Where to write the json.
        num_images: Images of the file.
        num_boxes: Annotations of the file, crowd ones included.
        seed: Random seed of the file.

    Returns:
        The class names written.
    """
    leaf, pipeline = find_datasets(cfg)[0]
    classes = tuple(dataset_classes(leaf) or ('object',))
    write_synthetic_coco(
        path, num_images, num_boxes, side_range=(3, 500), classes=classes, seed=seed,
        crowd_share=0.01,
    )  # fmt: skip
    dataset = dict(leaf, ann_file=path, data_root='', metainfo=dict(classes=classes))
    dataset['pipeline'] = pipeline
    if not issubclass(DATASETS.get(leaf.get('type')), CocoDataset):  # e.g. a VOC config
        dataset.update(type='CocoDataset', data_prefix=dict(img=''))
    cfg.train_dataloader.pop('dataset')
    cfg.train_dataloader.dataset = dataset
    return classes
