"""Training-set ground truths of a config, as the network sees them after its ``Resize``.

Every leaf dataset of ``train_dataloader.dataset`` (through ``RepeatDataset``,
``ConcatDataset``, ``ClassBalancedDataset`` and other wrappers) is built through mmdet's
``DATASETS`` registry, so any layout the config trains on is read as the training run reads it:
COCO json, Pascal VOC (``ImageSets/Main/*.txt`` + XML), a custom dataset class. The dataset's own
filters apply (crowd, ignored and difficult boxes, ``w < 1`` or ``h < 1``, classes outside
``metainfo.classes``, ``filter_cfg``); no image file is read (the checked datasets' image check
is off). Labels are the dataset's ``bbox_label``; size buckets use the box area in original
pixels (COCO's ``area`` of a box-only annotation).
"""

import os.path as osp
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.registry import DATASETS
from mmengine.config import Config
from torch import Tensor

from ssd_plugin.datasets.image_loading import ImageFileCheckMixin

__all__ = [
    'GroundTruths',
    'find_datasets',
    'resized_shapes',
    'dataset_classes',
    'dataset_metainfo',
    'load_ground_truths',
]


@dataclass
class GroundTruths:
    """Flattened ground truths of a dataset.

    Attributes:
        bboxes: ``(N, 4)`` float32 ``xyxy`` boxes in network-input pixels (after ``Resize``).
        labels: ``(N,)`` long class indices ``0..C-1``.
        areas: ``(N,)`` float64 box areas in original-image pixels (size buckets).
        img_index: ``(N,)`` long index of the image (``0..num_images-1``) each box belongs to.
        num_images: Number of images the datasets list after their filters, those without
            boxes included.
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
    else:
        yield dataset_cfg, pipeline or []


def find_datasets(cfg: Config) -> List[Tuple[dict, list]]:
    """The leaf datasets of ``cfg.train_dataloader.dataset``, wrappers followed.

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


def dataset_classes(dataset_cfg: dict) -> Optional[Sequence[str]]:
    """A dataset config's class names: its ``metainfo``, else its class's ``METAINFO``."""
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes') is not None:
        return metainfo['classes']
    dataset_cls = DATASETS.get(dataset_cfg.get('type', 'CocoDataset'))
    return getattr(dataset_cls, 'METAINFO', {}).get('classes')


def dataset_metainfo(dataset, key: str) -> dict:
    """A built dataset's metainfo (class names, palette, VOC year), whatever wraps it.

    mmdet's ``ConcatDataset`` (and a ``RepeatDataset`` around one) keeps a *list* of its parts'
    metainfo when they differ in any key not in its ``ignore_keys``: VOC2007 + VOC2012 differ in
    ``dataset_type``. The tools draw and score with one: the first part's, once every part has
    the same classes (the labels mean the same in each).

    Args:
        dataset: A dataset built from a config.
        key: Its config key, for the error (``test_dataloader.dataset``).

    Raises:
        ValueError: Parts with different classes.
    """
    metainfo = dataset.metainfo
    if isinstance(metainfo, dict):
        return metainfo
    classes = [tuple(m.get('classes') or ()) for m in metainfo]
    if len(set(classes)) > 1:
        listed = '; '.join(f'part {i}: {list(c)}' for i, c in enumerate(classes))
        raise ValueError(f'{key}: the ConcatDataset parts have different classes ({listed}); '
                         'give every part the same metainfo.classes')  # fmt: skip
    return metainfo[0]


def _build(dataset_cfg: dict, key: str):
    """The leaf dataset, fully loaded, without its pipeline or an image-file check."""
    ann_file, data_root = dataset_cfg.get('ann_file', ''), dataset_cfg.get('data_root')
    path = osp.join(data_root, ann_file) if data_root and not osp.isabs(ann_file) else ann_file
    if ann_file and not osp.isfile(path):
        raise FileNotFoundError(f'{key}: annotation file {path} does not exist '
                                '(check ann_file/data_root)')  # fmt: skip
    # no image is read: a missing image prefix (COCO's 'img') may stay empty
    prefix = {'img': '', **(dataset_cfg.get('data_prefix') or {})}
    overrides = dict(pipeline=[], serialize_data=False, lazy_init=False, data_prefix=prefix)
    dataset_cls = DATASETS.get(dataset_cfg.get('type'))
    if isinstance(dataset_cls, type) and issubclass(dataset_cls, ImageFileCheckMixin):
        overrides['check_image_files'] = False  # the analysis reads no image
    return DATASETS.build({**dataset_cfg, **overrides})


def _read_dataset(dataset) -> Tuple[np.ndarray, np.ndarray]:
    """Image sizes ``(M, 2)`` ``(w, h)`` and a ``(K, 6)`` table of the kept boxes.

    The table's columns: image index, label, ``x1, y1, x2, y2`` (original pixels).
    """
    sizes, rows = [], []
    for i, info in enumerate(dataset.data_list):
        sizes.append((info['width'], info['height']))
        rows += [(i, inst['bbox_label'], *inst['bbox']) for inst in info.get('instances', [])
                 if not inst.get('ignore_flag', 0)]  # fmt: skip
    return np.array(sizes, dtype=np.float64).reshape(-1, 2), np.array(rows).reshape(-1, 6)


def load_ground_truths(cfg: Config) -> GroundTruths:
    """Ground truths of a config's training set in network-input pixels.

    Args:
        cfg: A full mmdet config (``train_dataloader.dataset`` whose leaf datasets have a
            ``Resize`` in their pipeline).

    Returns:
        The flattened boxes of every leaf dataset (ConcatDataset parts one after the other;
        a RepeatDataset counts once).
    """
    parts, classes, num_images = [], None, 0
    for i, (dataset_cfg, pipeline) in enumerate(find_datasets(cfg)):
        key = f'train_dataloader.dataset (leaf {i}, {dataset_cfg.get("type")})'
        resize = _find_resize(pipeline, key)
        dataset = _build(dataset_cfg, key)
        names = tuple(dataset.metainfo['classes'])
        if classes is None:
            classes = names
        elif names != classes:
            raise ValueError(f'{key} has classes {list(names)}, the first dataset {list(classes)}')
        sizes, table = _read_dataset(dataset)
        if not len(table):
            raise ValueError(
                f'{key}: no box of the classes {list(names)} in {dataset.ann_file} is left after '
                "the dataset's filters (crowd/ignored/difficult boxes, w or h < 1, filter_cfg)"
            )
        pos = table[:, 0].astype(np.int64)
        new_sizes = resized_shapes(sizes[:, 0], sizes[:, 1], resize)[pos]
        boxes = table[:, 2:6] * np.tile(new_sizes / sizes[pos], 2)
        boxes = np.clip(boxes, 0, np.tile(new_sizes, 2))  # clip_object_border, as Resize
        areas = (table[:, 4] - table[:, 2]) * (table[:, 5] - table[:, 3])
        parts.append((boxes, table[:, 1], areas, pos + num_images))
        num_images += len(sizes)
    bboxes, labels, areas, img_index = (np.concatenate(p) for p in zip(*parts))
    return GroundTruths(
        torch.from_numpy(bboxes).float(),
        torch.from_numpy(labels).long(),
        torch.from_numpy(areas),
        torch.from_numpy(img_index).long(),
        num_images,
        classes,
    )
