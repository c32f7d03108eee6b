"""DATASETS ``CheckedCocoDataset``: mmdet's ``CocoDataset`` without its silent failure modes.

mmdet's ``CocoDataset`` quietly mis-reads several broken inputs:

- a class name of ``metainfo['classes']`` that the file does not define is dropped, and the
  labels of the remaining classes shift (so do they when the file lists the classes in another
  order: labels follow the file's order, names the config's);
- an annotation whose ``category_id`` the file does not define, or that is outside the config's
  classes, is dropped;
- with ``filter_cfg.filter_empty_gt`` the training set loses every image without boxes, unlogged;
- a missing or empty image file is found only when a data loader worker reaches it,
  mid-training, and an undecodable one fails there without the file's name or the reason;
- boxes with ``w < 1`` or ``h < 1``, no overlap with the image or ``area <= 0`` are dropped,
  boxes with a NaN may pass, and a file without annotations trains at loss 0.

This subclass raises a ``ValueError`` / ``FileNotFoundError`` naming the annotation file and the
offending class, category id, annotation id or image file instead, and logs what the filter
leaves out. Boxes are checked (:class:`~ssd_plugin.datasets.annotation_checks.BoxCheckMixin`)
before mmdet's own filters see them, so one warning per file counts every dropped or clipped
box; image files (:class:`~ssd_plugin.datasets.image_loading.ImageFileCheckMixin`) are checked
at load and named with the decoder's reason when one fails to load.

It reads the whole file through ``self.coco``, which mmdet's ``CocoDataset.load_data_list``
sets before it parses the images and deletes afterwards; should mmdet stop doing so, loading
fails with a ``RuntimeError`` saying so instead of skipping the checks.
"""

from numbers import Real
from operator import itemgetter
from typing import List, Union

import numpy as np
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.logging import print_log

from .annotation_checks import BoxCheckMixin
from .image_loading import ImageFileCheckMixin

__all__ = ['CheckedCocoDataset']

# Boxes checked at once. Whole-file temporaries (tens of MiB at COCO's size) would, once freed,
# raise glibc's mmap threshold and stay resident in its heap while mmdet builds its list.
_CHUNK = 8192
_BOX, _SIZE = np.dtype((np.float64, 4)), np.dtype((np.float64, 2))
_size = itemgetter('width', 'height')

_NO_COCO = (
    "{self.ann_file}: mmdet's CocoDataset.load_data_list {what} while it parsed the images, "
    "which CheckedCocoDataset's checks rely on (is the installed mmdet newer than 3.3?); use "
    "type='CocoDataset' (unchecked) or an mmdet version this plugin supports"
)


@DATASETS.register_module()
class CheckedCocoDataset(ImageFileCheckMixin, BoxCheckMixin, CocoDataset):
    """A ``CocoDataset`` that validates its annotation file against the config.

    Args:
        ignore_unlisted_categories (bool): Drop annotations of categories that the file defines
            but ``metainfo['classes']`` leaves out (training on a subset of the classes) instead
            of raising. Defaults to False.
        check_image_files (bool): Check at start-up that every image file exists and is not
            empty (local files only; skipped when ``backend_args`` is set). Defaults to True.
        skip_bad_images (bool): Skip (and log) a training image that cannot be loaded instead
            of stopping. Defaults to False.
        strict (bool): Unusable or clipped boxes are an error, not a warning. Defaults to False.
        allow_empty (bool): A file without usable boxes is intended. Defaults to False.
        *args, **kwargs: As :class:`mmdet.datasets.CocoDataset`.
    """

    def __init__(self, *args, ignore_unlisted_categories: bool = False, **kwargs) -> None:
        self.ignore_unlisted_categories = ignore_unlisted_categories
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        self._classes_checked = False
        data_list = super().load_data_list()
        if not data_list:
            raise ValueError(f'{self.ann_file} lists no images')
        if not self._classes_checked:
            raise RuntimeError(_NO_COCO.format(self=self, what='never called parse_data_info'))
        del self._dropped_ann_ids  # parse_data_info's, which the dataset keeps no longer
        self._report_box_checks()
        self._check_image_files(data_list)
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        # self.coco (the whole file) exists only while super().load_data_list() runs
        if getattr(self, 'coco', None) is None:
            raise RuntimeError(_NO_COCO.format(self=self, what='did not set self.coco'))
        if not self._classes_checked:
            self._check_classes()
            self._dropped_ann_ids = self._check_file_boxes()
            self._classes_checked = True
        categories = self.coco.cats
        for ann in raw_data_info['raw_ann_info']:
            cat_id = ann['category_id']
            if cat_id in self.cat2label:
                continue
            where = (
                f'annotation id {ann.get("id")} of image id {ann["image_id"]} '
                f'({raw_data_info["raw_img_info"]["file_name"]}) in {self.ann_file}'
            )
            if cat_id not in categories:
                raise ValueError(
                    f"{where} has category_id {cat_id!r}, which is not in the file's "
                    f'categories (ids {sorted(categories)})'
                )
            if not self.ignore_unlisted_categories:
                raise ValueError(
                    f'{where} has category_id {cat_id} ({categories[cat_id]["name"]!r}), which '
                    f"is not in the config's classes {self.metainfo['classes']}; add it there, "
                    f'or set ignore_unlisted_categories=True to train on a subset of the classes'
                )
        dropped = self._dropped_ann_ids
        if dropped and not dropped.isdisjoint(a['id'] for a in raw_data_info['raw_ann_info']):
            kept = [a for a in raw_data_info['raw_ann_info'] if a['id'] not in dropped]
            raw_data_info = {**raw_data_info, 'raw_ann_info': kept}
        return super().parse_data_info(raw_data_info)

    def _check_file_boxes(self) -> set:
        """Check every box of the file; clip in place; return the ids of the boxes to drop.

        mmdet's ``parse_data_info`` then sees only usable boxes (``w, h >= 1`` after
        clipping, so the ``min_size`` of the check is 1) and drops none of them. Annotations
        whose ``area`` is missing or not positive (which mmdet would drop) get their box's area.
        The boxes are checked ``_CHUNK`` at a time, so that no temporary of the check is large.
        """
        images = self.coco.imgs
        anns = self.coco.dataset.get('annotations') or []
        orphans = [a.get('id') for a in anns if a.get('image_id') not in images]
        if orphans:  # mmdet never reads them
            self._record_dropped("with an image_id not among the file's images", orphans)
            anns = [a for a in anns if a.get('image_id') in images]
        dropped, no_area = set(), []
        for start in range(0, len(anns), _CHUNK):
            part = anns[start : start + _CHUNK]
            keep = self._check_box_chunk(part, images)
            dropped.update(a['id'] for a, k in zip(part, keep) if not k)
            no_area.extend(a for a, k in zip(part, keep) if k and not _positive(a.get('area')))
        for ann in no_area:
            x1, y1, w, h = ann['bbox']
            ann['area'] = w * h
        self._record_fixed('with a missing or non-positive area (set to the box area)',
                           [a['id'] for a in no_area])  # fmt: skip
        return dropped

    def _check_box_chunk(self, anns: List[dict], images: dict) -> List[bool]:
        """Check and clip (in place) the boxes of ``anns``; whether to keep each of them."""
        try:  # None (null in the file) becomes NaN: a non-finite box
            xyxy = np.fromiter(map(_xywh, anns), dtype=_BOX, count=len(anns))
        except (TypeError, ValueError):
            bad = next(a for a in anns if not _is_xywh(a.get('bbox')))
            raise ValueError(f'annotation id {bad["id"]} of image id {bad["image_id"]} in '
                             f'{self.ann_file} has bbox {bad.get("bbox")!r}; expected 4 numbers '
                             f'[x, y, w, h]') from None  # fmt: skip
        xyxy[:, 2:] += xyxy[:, :2]
        sizes = np.fromiter((_size(images[a['image_id']]) for a in anns), dtype=_SIZE,
                            count=len(anns))  # fmt: skip
        ids = [a['id'] for a in anns]
        clipped, keep = self._check_boxes(xyxy, sizes, ids, min_size=1)
        for i in np.flatnonzero(keep & (clipped != xyxy).any(1)):
            x1, y1, x2, y2 = clipped[i].tolist()
            anns[i]['bbox'] = [x1, y1, x2 - x1, y2 - y1]
        return keep.tolist()

    def _check_classes(self) -> None:
        """Every config class is a category of the file, in the file's order."""
        classes = list(self.metainfo['classes'])
        names = [self.coco.cats[i]['name'] for i in self.cat_ids]
        if names == classes:
            return
        all_names = [c['name'] for c in self.coco.dataset['categories']]
        absent = [c for c in classes if c not in all_names]
        if absent:
            problem = f'the classes {absent} are not category names of the file'
        elif len(names) != len(classes):
            problem = f'the file defines some of the classes twice: {names}'
        else:
            problem = f'the file lists them in another order: {names}'
        raise ValueError(
            f'metainfo classes {tuple(classes)} do not match the categories of {self.ann_file}: '
            f"{problem} (the file's categories: {all_names})"
        )

    def filter_data(self) -> List[dict]:
        kept = super().filter_data()
        if len(kept) < len(self.data_list):
            ids = {d['img_id'] for d in kept}
            left_out = [d for d in self.data_list if d['img_id'] not in ids]
            min_size = self.filter_cfg.get('min_size', 0)
            small = sum(min(d['width'], d['height']) < min_size for d in left_out)
            print_log(
                f'{self.ann_file}: filter_cfg={self.filter_cfg} leaves out {len(left_out)} of '
                f'{len(self.data_list)} images ({small} smaller than min_size, '
                f'{len(left_out) - small} without boxes of the classes)',
                logger='current',
            )
        return kept


def _xywh(ann: dict):
    """``ann``'s bbox for ``np.fromiter``, which would spread a single value over all four."""
    bbox = ann.get('bbox')
    if isinstance(bbox, (list, tuple)) and len(bbox) == 4:
        return bbox
    raise ValueError(bbox)


def _positive(value) -> bool:
    return isinstance(value, Real) and value > 0


def _is_xywh(bbox) -> bool:
    return (
        isinstance(bbox, (list, tuple))
        and len(bbox) == 4
        and all(v is None or isinstance(v, Real) for v in bbox)
    )
