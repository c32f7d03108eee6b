"""DATASETS ``CheckedVOCDataset``: mmdet's ``VOCDataset`` without its silent failure modes.

mmdet's ``VOCDataset`` passes boxes with a negative size or outside their image on to training,
crashes on a ``nan`` coordinate with no file named, drops objects whose ``<name>`` is not one of
the config's classes without a word, trains at loss 0 on a split without objects, and under a
``VOC2007``/``VOC2012`` folder has ``VOCMetric`` print the per-class table with VOC's 20 names
whatever the classes are. This subclass checks every box before mmdet parses it
(:class:`~ssd_plugin.datasets.annotation_checks.BoxCheckMixin`: dropped or clipped, one warning
per split file naming the objects), raises a ``ValueError`` naming the xml file for an unknown
class name or an unreadable coordinate, stops on a split without boxes, checks the image files
(:class:`~ssd_plugin.datasets.image_loading.ImageFileCheckMixin`), and keeps VOC's
``dataset_type`` only for VOC's own classes, so the table names the config's classes.

The box checks run in an override of mmdet's ``XMLDataset._parse_instance_info``; should mmdet
stop calling it, loading fails with a ``RuntimeError`` saying so instead of skipping them.
"""

import xml.etree.ElementTree as ET
from typing import List, Union

import numpy as np
from mmdet.datasets import VOCDataset
from mmdet.registry import DATASETS

from .annotation_checks import BoxCheckMixin
from .image_loading import ImageFileCheckMixin

__all__ = ['CheckedVOCDataset']

_CORNERS = ('xmin', 'ymin', 'xmax', 'ymax')


@DATASETS.register_module()
class CheckedVOCDataset(ImageFileCheckMixin, BoxCheckMixin, VOCDataset):
    """A ``VOCDataset`` that checks its xml files' objects.

    Objects are named ``<xml path> object <k>`` (``k``: 0-based position among the file's
    ``<object>`` elements) in warnings and errors. An xml file without ``<size>`` is checked for
    finite, positive boxes only (mmdet then reads the image for its size).

    Args:
        ignore_unlisted_categories (bool): Skip objects whose name is not in
            ``metainfo['classes']`` (training on a subset of the classes), as mmdet does,
            instead of raising. Defaults to False.
        check_image_files (bool): Check at start-up that every image file exists and is not
            empty (local files only; skipped when ``backend_args`` is set). Defaults to True.
        skip_bad_images (bool): Skip (and log) a training image that cannot be loaded instead
            of stopping. Defaults to False.
        strict (bool): Unusable or clipped boxes are an error, not a warning. Defaults to False.
        allow_empty (bool): A split without usable boxes is intended. Defaults to False.
        *args, **kwargs: As :class:`mmdet.datasets.VOCDataset`.
    """

    def __init__(self, *args, ignore_unlisted_categories: bool = False, **kwargs) -> None:
        self.ignore_unlisted_categories = ignore_unlisted_categories
        super().__init__(*args, **kwargs)
        # VOCMetric names the table's rows with VOC's classes for these dataset types
        if tuple(self._metainfo['classes']) != tuple(VOCDataset.METAINFO['classes']):
            self._metainfo['dataset_type'] = None

    def load_data_list(self) -> List[dict]:
        self._num_parsed = self._num_checked = 0
        data_list = super().load_data_list()
        if self._num_checked != self._num_parsed:
            raise RuntimeError(
                f"{self.ann_file}: mmdet's XMLDataset.parse_data_info no longer calls "
                f'_parse_instance_info (checked {self._num_checked} of {self._num_parsed} xml '
                f'files), which CheckedVOCDataset overrides to check the boxes (is the installed '
                f"mmdet newer than 3.3?); use type='VOCDataset' (unchecked) or an mmdet version "
                f'this plugin supports'
            )
        self._report_box_checks()
        self._check_image_files(data_list)
        return data_list

    def parse_data_info(self, img_info: dict) -> Union[dict, List[dict]]:
        self._xml_path = img_info['xml_path']  # names the objects in _parse_instance_info
        self._num_parsed += 1
        return super().parse_data_info(img_info)

    def _parse_instance_info(self, raw_ann_info: ET.ElementTree, minus_one: bool = True) -> list:
        """Check the objects' boxes, remove the unusable ones, clip the others, then mmdet's."""
        self._num_checked += 1
        root = raw_ann_info.getroot()
        classes = self._metainfo['classes']
        objects, ids = [], []
        for k, obj in enumerate(root.findall('object')):
            name = obj.findtext('name')
            if name in classes:
                objects.append(obj)
                ids.append(f'{self._xml_path} object {k}')
            elif not self.ignore_unlisted_categories:
                raise ValueError(
                    f'{self._xml_path}: object {k} is named {name!r}, which is not in the '
                    f"config's classes {tuple(classes)}; add it there, or set "
                    f'ignore_unlisted_categories=True to train on a subset of the classes'
                )
        # mmdet's frame: int(float(text)) - 1; NaN and inf stay as they are for the check
        texts = [[obj.findtext(f'bndbox/{c}') for c in _CORNERS] for obj in objects]
        try:
            values = np.array(texts, dtype=np.float64).reshape(-1, 4)
        except (TypeError, ValueError):
            k = next(i for i, t in enumerate(texts) if not _readable(t))
            raise ValueError(f'{ids[k]} has bndbox {dict(zip(_CORNERS, texts[k]))}; expected '
                             f'four numbers') from None  # fmt: skip
        with np.errstate(invalid='ignore'):
            boxes = np.trunc(values) - int(minus_one)
        size = root.find('size')
        img_size = (np.inf, np.inf)
        if size is not None:
            img_size = (float(size.findtext('width')), float(size.findtext('height')))
        clipped, keep = self._check_boxes(boxes, np.tile(img_size, (len(boxes), 1)), ids)
        for obj, box, old, kept in zip(objects, clipped, boxes, keep):
            if not kept:
                root.remove(obj)
            elif (box != old).any():
                for corner, value in zip(_CORNERS, box + int(minus_one)):
                    obj.find(f'bndbox/{corner}').text = str(int(value))
        return super()._parse_instance_info(raw_ann_info, minus_one=minus_one)


def _readable(texts: list) -> bool:
    """Whether every coordinate text present parses as a number (a missing one reads NaN)."""
    try:
        [float(t) for t in texts if t is not None]
    except ValueError:
        return False
    return True
