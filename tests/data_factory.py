"""Tiny on-disk detection datasets (COCO json and Pascal VOC xml) for the tool and config tests.

Images are small solid rectangles on a noisy background, drawn from a seeded generator, so a
dataset is byte-identical for the same arguments. COCO datasets use the category ids and image
ids they are given (non-contiguous and unordered ones exercise the label <-> id mappings);
VOC datasets mirror the VOCdevkit layout (``VOC2007/ImageSets/Main/trainval.txt``, ...).
:func:`use_tiny_datasets` points a loaded config at them.
"""

import copy
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple
from xml.etree import ElementTree as ET

import cv2
import numpy as np
from mmdet.datasets import VOCDataset
from mmdet.registry import DATASETS
from mmengine.config import Config, ConfigDict

from ssd_plugin.datasets.coco_writer import write_coco

__all__ = [
    'VOC_CLASSES', 'CLASSES', 'CAT_IDS', 'SPLITS', 'make_coco_dataset', 'make_voc_dataset',
    'dataset_classes', 'leaf_datasets', 'is_voc', 'use_tiny_datasets', 'drop_pretrained',
]  # fmt: skip

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')  # fmt: skip

#: Three classes for tiny COCO datasets, their (non-contiguous) category ids, and the
#: (unordered, non-contiguous) image ids of each split; the last image of each split is empty.
CLASSES = ('red', 'green', 'blue')
CAT_IDS = (1, 3, 7)
SPLITS = {'train': [42, 7, 19, 5, 88], 'val': [1000, 3, 77], 'test': [501, 12, 250]}

# (width, height) cycle: landscape and portrait images, so rescaling to the input is exercised
_SIZES = ((160, 120), (120, 150), (144, 144))


def _draw(rng: np.random.Generator, size: Tuple[int, int], num_objects: int,
          num_labels: int) -> Tuple[np.ndarray, List[Tuple[List[float], int]]]:  # fmt: skip
    """An image with ``num_objects`` filled rectangles and their (xyxy box, label) pairs."""
    w, h = size
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    objects = []
    for _ in range(num_objects):
        bw, bh = int(rng.integers(w // 4, w // 2)), int(rng.integers(h // 4, h // 2))
        x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        label = int(rng.integers(num_labels))
        colour = [int(c) for c in rng.integers(100, 256, 3)]
        cv2.rectangle(img, (x1, y1), (x1 + bw - 1, y1 + bh - 1), colour, thickness=-1)
        objects.append(([float(x1), float(y1), float(x1 + bw), float(y1 + bh)], label))
    return img, objects


def make_coco_dataset(root: str, classes: Sequence[str], splits: Dict[str, Sequence[int]],
                      cat_ids: Optional[Sequence[int]] = None, num_labels: int = 3,
                      seed: int = 0) -> Dict[str, str]:  # fmt: skip
    """Write a COCO-format dataset: ``root/annotations/<split>.json`` and ``root/<split>/``.

    Args:
        root (str): Output folder.
        classes (Sequence[str]): Category names, in the order of the config's ``classes``
            (mmdet's ``CocoDataset`` maps them to labels in the json's category order).
        splits (dict[str, Sequence[int]]): Image ids of each split, e.g.
            ``{'train': [42, 7], 'val': [1000, 3]}``. The last image of every split with more
            than two images has no objects.
        cat_ids (Sequence[int], optional): Category id of each class. Defaults to ``1, 3, 5...``
            (non-contiguous, as COCO's are).
        num_labels (int): Objects use only the first ``num_labels`` classes. Defaults to 3.
        seed (int): Seed of the generator. Defaults to 0.

    Returns:
        dict[str, str]: The annotation file of each split.
    """
    cat_ids = list(cat_ids) if cat_ids is not None else [1 + 2 * i for i in range(len(classes))]
    assert len(cat_ids) == len(classes) and num_labels <= len(classes)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_files = {}
    for split_idx, (split, img_ids) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, split_idx])
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, boxes, image_ids, labels = [], [], [], []
        for i, img_id in enumerate(img_ids):
            empty = len(img_ids) > 2 and i == len(img_ids) - 1
            size = _SIZES[i % len(_SIZES)]
            img, objects = _draw(rng, size, 0 if empty else 1 + i % 3, num_labels)
            file_name = f'{img_id:012d}.jpg'
            cv2.imwrite(osp.join(root, split, file_name), img)
            images.append((img_id, file_name, *size))
            for (x1, y1, x2, y2), label in objects:
                boxes.append([x1, y1, x2 - x1, y2 - y1])
                image_ids.append(img_id)
                labels.append(label)
        ann_files[split] = write_coco(
            osp.join(root, 'annotations', f'{split}.json'), images,
            categories=list(zip(cat_ids, classes)), image_ids=image_ids,
            category_ids=[cat_ids[label] for label in labels], bboxes=np.array(boxes))  # fmt: skip
    return ann_files


def _voc_xml(file_stem: str, size: Tuple[int, int], objects, difficult_idx: int,
             classes: Sequence[str]) -> ET.Element:  # fmt: skip
    ann = ET.Element('annotation')
    ET.SubElement(ann, 'filename').text = f'{file_stem}.jpg'
    size_el = ET.SubElement(ann, 'size')
    for tag, value in zip(('width', 'height', 'depth'), (*size, 3)):
        ET.SubElement(size_el, tag).text = str(value)
    for i, ((x1, y1, x2, y2), label) in enumerate(objects):
        obj = ET.SubElement(ann, 'object')
        ET.SubElement(obj, 'name').text = classes[label]
        ET.SubElement(obj, 'difficult').text = str(int(i == difficult_idx))
        box = ET.SubElement(obj, 'bndbox')
        # VOC boxes are 1-based inclusive pixel indices
        for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), (x1 + 1, y1 + 1, x2, y2)):
            ET.SubElement(box, tag).text = str(int(value))
    return ann


def make_voc_dataset(root: str, images_per_split: int = 3, seed: int = 0,
                     classes: Sequence[str] = VOC_CLASSES) -> None:  # fmt: skip
    """Write a VOCdevkit-style dataset: VOC2007 ``trainval`` and ``test``, VOC2012 ``trainval``.

    The second object of each image with two or more objects is marked difficult.

    Args:
        root (str): Output folder (the configs' ``data_root``, e.g. ``data/VOCdevkit/``).
        images_per_split (int): Images in each split. Defaults to 3.
        seed (int): Seed of the generator. Defaults to 0.
        classes (Sequence[str]): The objects' names. Defaults to the 20 VOC classes.
    """
    splits = (('VOC2007', 'trainval'), ('VOC2007', 'test'), ('VOC2012', 'trainval'))
    for split_idx, (year, split) in enumerate(splits):
        rng = np.random.default_rng([seed, split_idx])
        for sub in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
            os.makedirs(osp.join(root, year, sub), exist_ok=True)
        stems = [f'{year[3:]}_{split_idx:02d}{i:04d}' for i in range(images_per_split)]
        for i, stem in enumerate(stems):
            size = _SIZES[i % len(_SIZES)]
            img, objects = _draw(rng, size, 1 + i % 3, len(classes))
            cv2.imwrite(osp.join(root, year, 'JPEGImages', f'{stem}.jpg'), img)
            ET.ElementTree(_voc_xml(stem, size, objects, 1, classes)).write(
                osp.join(root, year, 'Annotations', f'{stem}.xml')
            )
        with open(osp.join(root, year, 'ImageSets', 'Main', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(stems) + '\n')


def leaf_datasets(dataset: ConfigDict):
    """The datasets inside Repeat/Concat/ClassBalanced wrappers (the config dicts, not copies)."""
    if 'datasets' in dataset:
        for inner in dataset.datasets:
            yield from leaf_datasets(inner)
    elif 'dataset' in dataset:
        yield from leaf_datasets(dataset.dataset)
    else:
        yield dataset


def is_voc(dataset: ConfigDict) -> bool:
    """Whether a leaf dataset config is a ``VOCDataset`` (or a subclass, e.g. the checked one)."""
    return issubclass(DATASETS.get(dataset.type), VOCDataset)


def dataset_classes(dataset: ConfigDict) -> Tuple[str, ...]:
    """Class names of a dataset config: its ``metainfo`` or its class's ``METAINFO``."""
    leaf = next(leaf_datasets(dataset))
    classes = (leaf.get('metainfo') or {}).get('classes')
    return tuple(classes or DATASETS.get(leaf.type).METAINFO['classes'])


def use_tiny_datasets(cfg: Config, coco_root: str, voc_root: str, batch_size: int = 2) -> None:
    """Point every dataloader and evaluator of ``cfg`` at tiny datasets, in place.

    VOC leaves (:func:`is_voc`) keep their paths under ``voc_root`` (a :func:`make_voc_dataset`
    folder); every other leaf is read as COCO json from ``coco_root`` (a
    :func:`make_coco_dataset` folder written with the config's classes and ``train``, ``val``
    and ``test`` splits), as are evaluators' ``ann_file``. ``RepeatDataset`` repeats once;
    loaders use ``batch_size`` and no worker processes. Pipelines, samplers and models are kept.
    """
    for split in ('train', 'val', 'test'):
        if f'{split}_dataloader' not in cfg:
            continue
        # configs often say `test_dataloader = val_dataloader`: give each split its own dict
        cfg[f'{split}_dataloader'] = copy.deepcopy(cfg[f'{split}_dataloader'])
        loader = cfg[f'{split}_dataloader']  # (a ConfigDict stores a converted copy)
        loader.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
        if loader.dataset.type == 'RepeatDataset':
            loader.dataset.times = 1
        for leaf in leaf_datasets(loader.dataset):
            if is_voc(leaf):
                leaf.data_root = voc_root
            else:
                leaf.update(data_root=coco_root, ann_file=f'annotations/{split}.json',
                            data_prefix=dict(img=f'{split}/'))  # fmt: skip
        if cfg.get(f'{split}_evaluator') is None:
            continue
        cfg[f'{split}_evaluator'] = copy.deepcopy(cfg[f'{split}_evaluator'])
        evaluator = cfg[f'{split}_evaluator']
        for metric in evaluator if isinstance(evaluator, list) else [evaluator]:
            if metric.get('ann_file'):
                metric.ann_file = osp.join(coco_root, 'annotations', f'{split}.json')


def drop_pretrained(cfg: Config) -> None:
    """Remove ``Pretrained`` init_cfgs and ``load_from`` (the tests have no network)."""

    def strip(node) -> None:
        if isinstance(node, dict):
            init = node.get('init_cfg')
            if isinstance(init, dict) and init.get('type') == 'Pretrained':
                node['init_cfg'] = None
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    strip(cfg.model)
    cfg.load_from = None
