"""What the checked datasets share: box problems reported once per file, empty files stopped.

mmdet's datasets drop some broken boxes without a word (``CocoDataset``: ``w < 1``, no overlap
with the image, ``area <= 0``), pass others on to training (``VOCDataset``: negative sizes) or
crash on them with no file named (``VOCDataset``: NaN). An annotation file without any box
trains for the whole schedule at loss 0, and a validation file without any box scores -1.
"""

import logging
from collections import defaultdict
from typing import Hashable, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log

from .box_checks import BOX_OK, BOX_PROBLEMS, CLIPPED, check_boxes, describe_box_problems

__all__ = ['BoxCheckMixin']


class BoxCheckMixin:
    """Adds box checks and ``strict`` / ``allow_empty`` to an mmdet detection dataset.

    A subclass passes the boxes it parses (a whole file at once, or image by image) to
    :meth:`_check_boxes`, keeps the clipped ones, drops the others, and calls
    :meth:`_report_box_checks` when the file is loaded. The report is one warning per file
    naming, by reason, how many boxes were dropped or clipped and the first ten annotation ids;
    ``box_check_report`` keeps it ('' when there was nothing to report) for tools that list
    every problem (``tools/analysis/check_dataset.py``).

    Args:
        strict (bool): Raise a ``ValueError`` with the report instead of warning.
            Defaults to False.
        allow_empty (bool): A file without any usable box is intended (e.g. a test-dev split or
            background-only images): no error in training, no warning in test mode. Without it
            such a file stops training with an error, and warns in test mode (every metric
            would be -1). Defaults to False.
        *args, **kwargs: As the dataset class.
    """

    def __init__(self, *args, strict: bool = False, allow_empty: bool = False, **kwargs) -> None:
        self.strict = strict
        self.allow_empty = allow_empty
        self._reset_box_checks()
        super().__init__(*args, **kwargs)

    def _reset_box_checks(self) -> None:
        self._num_boxes = 0
        self._dropped, self._fixed = defaultdict(list), defaultdict(list)

    def _check_boxes(
        self, boxes: np.ndarray, img_sizes: np.ndarray, ids: Sequence[Hashable], min_size=0.0
    ) -> Tuple[np.ndarray, np.ndarray]:
        """:func:`~ssd_plugin.datasets.box_checks.check_boxes`, its problems recorded.

        Returns:
            ``(clipped boxes, keep)``: ``(N, 4)`` boxes and the ``(N,)`` bool mask of those
            to keep.
        """
        clipped, codes = check_boxes(boxes, img_sizes, min_size)
        self._num_boxes += len(codes)
        for code in np.unique(codes[codes != BOX_OK]):
            reason = BOX_PROBLEMS[code].format(min_size=min_size)
            group = self._fixed if code == CLIPPED else self._dropped
            group[reason].extend(ids[i] for i in np.flatnonzero(codes == code))
        return clipped, (codes == BOX_OK) | (codes == CLIPPED)

    def _record_dropped(self, reason: str, ids: Sequence[Hashable]) -> None:
        """Count boxes a subclass drops for a reason of its own (not seen by _check_boxes)."""
        self._num_boxes += len(ids)
        self._dropped[reason].extend(ids)

    def _record_fixed(self, reason: str, ids: Sequence[Hashable]) -> None:
        """Note boxes (already counted) that a subclass kept after a fix of its own."""
        self._fixed[reason].extend(ids)

    def _report_box_checks(self) -> None:
        """Warn (or raise, ``strict``) about the recorded problems; stop on an empty file."""
        ann_file, num_boxes = self.ann_file, self._num_boxes
        message = describe_box_problems(ann_file, num_boxes, self._dropped, self._fixed)
        self.box_check_report = message
        kept = num_boxes - sum(len(ids) for ids in self._dropped.values())
        self._reset_box_checks()
        if message and self.strict:
            raise ValueError(f'{message} (strict=True: fix the file, or set strict=False to '
                             f'train on the remaining boxes)')  # fmt: skip
        if message:
            print_log(message, logger='current', level=logging.WARNING)
        if kept or self.allow_empty:
            return
        empty = f'{ann_file} has no usable boxes' + (
            f' (all {num_boxes} were dropped)' if num_boxes else ' (no annotations at all)'
        )
        if self.test_mode:
            print_log(f'{empty}: every metric will be -1; set allow_empty=True on the dataset '
                      f'if that is intended', logger='current', level=logging.WARNING)  # fmt: skip
        else:
            raise ValueError(f'{empty}: training on it would learn nothing (loss 0); set '
                             f'allow_empty=True on the dataset if that is intended')  # fmt: skip
