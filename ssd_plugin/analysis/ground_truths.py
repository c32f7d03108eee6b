"""Training-set ground truths of a config, as the network sees them after its ``Resize``.

The COCO annotation files are read directly (``json``), not through ``CocoDataset``: the analysis
needs no image files, and 118k images load in seconds instead of building every ``data_info``.
The filters are ``CocoDataset.parse_data_info``'s (``ignore`` flag, empty intersection with the
image, ``area <= 0``, ``w < 1`` or ``h < 1``, categories outside the classes) plus its
``filter_cfg.min_size``; crowd boxes are dropped (the matcher ignores them). Labels follow
mmdet: the file's categories whose names are in the dataset's classes, in the file's order.
"""

import json
import os.path as osp
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.registry import DATASETS
from mmengine.config import Config
from torch import Tensor

__all__ = ['GroundTruths', 'find_coco_datasets', 'resized_shapes', 'load_ground_truths']


@dataclass
class GroundTruths:
    """Flattened ground truths of a dataset.

    Attributes:
        bboxes: ``(N, 4)`` float32 ``xyxy`` boxes in network-input pixels (after ``Resize``).
        labels: ``(N,)`` long class indices ``0..C-1``.
        areas: ``(N,)`` float64 COCO ``area`` in original-image pixels (size buckets).
        img_index: ``(N,)`` long index of the image (``0..num_images-1``) each box belongs to.
        num_images: Number of images, those without boxes included.
        classes: Class names, label order.
    """

    bboxes: Tensor
    labels: Tensor
    areas: Tensor
    img_index: Tensor
    num_images: int
    classes: Tuple[str, ...]

    def __len__(self) -> int:
        return len(self.bboxes)


def _walk(dataset_cfg: dict, key: str, pipeline: Optional[list]) -> Iterator[Tuple[dict, list]]:
    if not isinstance(dataset_cfg, dict):
        raise ValueError(f'{key} must be a dataset config dict, got {type(dataset_cfg).__name__}')
    pipeline = dataset_cfg.get('pipeline') or pipeline
    if 'dataset' in dataset_cfg:  # RepeatDataset, ClassBalancedDataset, MultiImageMixDataset
        yield from _walk(dataset_cfg['dataset'], f'{key}.dataset', pipeline)
    elif 'datasets' in dataset_cfg:  # ConcatDataset
        for i, sub in enumerate(dataset_cfg['datasets']):
            yield from _walk(sub, f'{key}.datasets[{i}]', pipeline)
    elif 'ann_file' in dataset_cfg:
        yield dataset_cfg, pipeline or []
    else:
        raise ValueError(
            f'{key} (type {dataset_cfg.get("type")!r}) has no ann_file, dataset or datasets key; '
            'only COCO-format datasets and their wrappers can be analysed'
        )


def find_coco_datasets(cfg: Config) -> List[Tuple[dict, list]]:
    """The COCO-style datasets of ``cfg.train_dataloader.dataset``, wrappers followed.

    Args:
        cfg: A full mmdet config.

    Returns:
        ``(dataset_cfg, pipeline)`` per leaf dataset; the pipeline is the leaf's own, else the
        nearest wrapper's.
    """
    dataset_cfg = cfg.get('train_dataloader', {}).get('dataset')
    if dataset_cfg is None:
        raise KeyError('the config has no train_dataloader.dataset to analyse')
    return list(_walk(dataset_cfg, 'train_dataloader.dataset', None))


def _find_resize(pipeline: Sequence[dict], key: str) -> dict:
    for transform in pipeline:
        if transform.get('type') in ('Resize', 'mmdet.Resize'):
            return transform
    types = [t.get('type') for t in pipeline]
    raise ValueError(
        f'the pipeline of {key} has no Resize (types {types}); the default boxes live in '
        'network-input pixels, so the boxes must be rescaled as the pipeline does'
    )


def resized_shapes(widths: np.ndarray, heights: np.ndarray, resize: dict) -> np.ndarray:
    """Per-image ``(new_w, new_h)`` of mmdet's ``Resize`` (no augmentation).

    ``keep_ratio=False`` stretches to ``scale = (w, h)``; ``keep_ratio=True`` is mmcv's
    ``rescale_size``: factor ``min(long / max(h, w), short / min(h, w))``, sizes rounded
    half up. Boxes then scale by ``new / old`` per axis (as ``Resize._resize_img``).

    Args:
        widths: ``(M,)`` original image widths.
        heights: ``(M,)`` original image heights.
        resize: The ``Resize`` transform config (``scale`` or ``scale_factor``, ``keep_ratio``).

    Returns:
        ``(M, 2)`` float64 sizes.
    """
    w, h = widths.astype(np.float64), heights.astype(np.float64)
    scale, factor = resize.get('scale'), resize.get('scale_factor')
    if scale is None and factor is None:
        raise ValueError(f'Resize {dict(resize)} sets neither scale nor scale_factor')
    if scale is None:
        fw, fh = (factor, factor) if isinstance(factor, (int, float)) else factor
        new_w, new_h = np.floor(w * fw + 0.5), np.floor(h * fh + 0.5)
    else:
        sw, sh = (scale, scale) if isinstance(scale, (int, float)) else scale
        if resize.get('keep_ratio', False):
            long_edge, short_edge = max(sw, sh), min(sw, sh)
            ratio = np.minimum(long_edge / np.maximum(w, h), short_edge / np.minimum(w, h))
            new_w, new_h = np.floor(w * ratio + 0.5), np.floor(h * ratio + 0.5)
        else:
            new_w, new_h = np.full_like(w, sw), np.full_like(h, sh)
    return np.stack([new_w, new_h], axis=1)


def _dataset_classes(dataset_cfg: dict) -> Optional[Sequence[str]]:
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes') is not None:
        return metainfo['classes']
    dataset_cls = DATASETS.get(dataset_cfg.get('type', 'CocoDataset'))
    return getattr(dataset_cls, 'METAINFO', {}).get('classes')


def _read_coco(
    ann_file: str, class_names: Optional[Sequence[str]], min_size: float
) -> Tuple[List[str], dict, np.ndarray]:
    """Class names, ``{image id: (w, h)}`` and the kept annotations of one COCO file.

    The annotations are a ``(K, 7)`` float64 table ``image id, label, x1, y1, x2, y2, area``.
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError(
            f'annotation file {ann_file} does not exist (check ann_file/data_root)'
        )
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f'annotation file {ann_file} is not valid JSON: {e}') from e
    if not isinstance(coco, dict) or not coco.get('images'):
        raise ValueError(f'annotation file {ann_file} lists no images')
    if not coco.get('annotations'):
        raise ValueError(f'annotation file {ann_file} has no annotations')
    cats = coco.get('categories') or []
    if class_names is not None:
        cats = [c for c in cats if c['name'] in set(class_names)]
    if not cats:
        raise ValueError(
            f'annotation file {ann_file} defines none of the classes {list(class_names or [])}'
        )
    cat2label = {c['id']: i for i, c in enumerate(cats)}
    images = {
        img['id']: (img['width'], img['height'])
        for img in coco['images']
        if min(img['width'], img['height']) >= min_size
    }
    rows = []
    for ann in coco['annotations']:
        size = images.get(ann['image_id'])
        if size is None or ann.get('ignore', False) or ann.get('iscrowd', False):
            continue
        if ann['category_id'] not in cat2label:
            continue
        x1, y1, w, h = ann['bbox']
        inter_w = max(0, min(x1 + w, size[0]) - max(x1, 0))
        inter_h = max(0, min(y1 + h, size[1]) - max(y1, 0))
        area = ann.get('area', w * h)
        if inter_w * inter_h == 0 or area <= 0 or w < 1 or h < 1:
            continue
        rows.append((ann['image_id'], cat2label[ann['category_id']], x1, y1, x1 + w, y1 + h, area))
    return [c['name'] for c in cats], images, np.array(rows, dtype=np.float64).reshape(-1, 7)


def load_ground_truths(cfg: Config) -> GroundTruths:
    """Ground truths of a config's training set in network-input pixels.

    Args:
        cfg: A full mmdet config (``train_dataloader.dataset`` with COCO-format datasets and a
            ``Resize`` in their pipeline).

    Returns:
        The flattened boxes of every leaf dataset (ConcatDataset parts one after the other;
        a RepeatDataset counts once).
    """
    parts, classes, num_images = [], None, 0
    for i, (dataset_cfg, pipeline) in enumerate(find_coco_datasets(cfg)):
        key = f'train_dataloader.dataset (leaf {i}, ann_file {dataset_cfg["ann_file"]})'
        ann_file = dataset_cfg['ann_file']
        data_root = dataset_cfg.get('data_root')
        if data_root and not osp.isabs(ann_file):
            ann_file = osp.join(data_root, ann_file)
        min_size = (dataset_cfg.get('filter_cfg') or {}).get('min_size', 0)
        names, images, table = _read_coco(ann_file, _dataset_classes(dataset_cfg), min_size)
        if classes is None:
            classes = tuple(names)
        elif tuple(names) != classes:
            raise ValueError(f'{key} has classes {names}, the first dataset {list(classes)}')
        resize = _find_resize(pipeline, key)
        id_list = np.array(list(images), dtype=np.int64)
        sizes = np.array(list(images.values()), dtype=np.float64).reshape(-1, 2)
        order = np.argsort(id_list)
        pos = order[np.searchsorted(id_list, table[:, 0].astype(np.int64), sorter=order)]
        new_sizes = resized_shapes(sizes[:, 0], sizes[:, 1], resize)[pos]
        boxes = table[:, 2:6] * np.tile(new_sizes / sizes[pos], 2)
        boxes = np.clip(boxes, 0, np.tile(new_sizes, 2))  # clip_object_border, as Resize
        parts.append((boxes, table[:, 1], table[:, 6], pos + num_images))
        num_images += len(id_list)
    bboxes, labels, areas, img_index = (np.concatenate(p) for p in zip(*parts))
    if len(bboxes) == 0:
        raise ValueError(
            'no ground truth of train_dataloader.dataset is left after the filters '
            '(crowd/ignored boxes, w or h < 1, classes outside metainfo.classes)'
        )
    return GroundTruths(
        torch.from_numpy(bboxes).float(),
        torch.from_numpy(labels).long(),
        torch.from_numpy(areas),
        torch.from_numpy(img_index).long(),
        num_images,
        classes,
    )
