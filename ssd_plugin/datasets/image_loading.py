"""What the checked datasets share about image files: bad ones named at load and in training.

mmdet's datasets find a missing or empty image file only when a data loader worker draws it,
possibly hours into a run, and then fail with OpenCV's words (``!buf.empty()``, ``failed to
load image``) and no file or reason. :class:`ImageFileCheckMixin` checks at load that every
file exists and is not empty, and turns a failure to load an image during training or testing
into one error naming the file and why it cannot be decoded (or, with ``skip_bad_images``,
skips the image in training and logs it).
"""

import logging
from typing import Any, List, Optional

from mmengine.logging import print_log

from .image_checks import decode_failure, empty_or_missing

__all__ = ['ImageFileCheckMixin']

_SHOWN = 5  # how many offending file names an error lists
_HINT = 'tools/analysis/check_dataset.py CONFIG lists every bad image of a config at once'


class ImageFileCheckMixin:
    """Adds image file checks to an mmdet detection dataset (before the dataset class in MRO).

    The subclass calls :meth:`_check_image_files` on its data list when it is loaded.

    Args:
        check_image_files (bool): Check at start-up that every image file exists and is not
            empty (local files only; skipped when ``backend_args`` is set). Defaults to True.
        skip_bad_images (bool): In training, skip an image whose file cannot be loaded (another
            is drawn in its place, as mmengine does for a pipeline that returns None) and log a
            warning naming it and the count so far. Without it such an image stops training
            with a ``ValueError`` naming the file and the reason (a file gone since start-up:
            mmengine's ``FileNotFoundError``, which names it). Test mode always raises (an
            image missing from an evaluation would change its score). Defaults to False.
        *args, **kwargs: As the dataset class.
    """

    def __init__(
        self, *args, check_image_files: bool = True, skip_bad_images: bool = False, **kwargs
    ) -> None:
        self.check_image_files = check_image_files
        self.skip_bad_images = skip_bad_images
        self.num_skipped_images = 0  # in this process (each data loader worker counts its own)
        super().__init__(*args, **kwargs)

    def _check_image_files(self, data_list: List[dict]) -> None:
        """Stop when an image file of ``data_list`` is missing or empty, naming them."""
        if not self.check_image_files or self.backend_args is not None:
            return
        missing, empty = empty_or_missing([d['img_path'] for d in data_list])
        total = len(data_list)
        if missing:
            raise FileNotFoundError(
                f'{len(missing)} of the {total} image files of {self.ann_file} do not exist, '
                f'e.g. {missing[:_SHOWN]} (check data_root and data_prefix)'
                + (f'; {len(empty)} more are empty (0 bytes)' if empty else '')
            )
        if empty:
            raise ValueError(
                f'{len(empty)} of the {total} image files of {self.ann_file} are empty (0 '
                f'bytes), e.g. {empty[:_SHOWN]}: replace them, or remove them from the '
                f'annotation file ({_HINT})'
            )

    def prepare_data(self, idx: int) -> Any:
        """The pipeline's output; a failed image load is named (or skipped, see the class)."""
        try:
            return super().prepare_data(idx)
        except Exception as error:
            path = self.get_data_info(idx).get('img_path')
            reason: Optional[str] = decode_failure(path, self.backend_args) if path else None
            if reason is None:  # the image decodes: the failure is not the file's
                raise
            skip = self.skip_bad_images and not self.test_mode
            if isinstance(error, OSError) and not skip:  # e.g. FileNotFoundError: names the file
                raise
            if skip:
                self.num_skipped_images += 1
                print_log(f'skipped image {path}: {reason} ({self.num_skipped_images} skipped '
                          f'by this process so far; skip_bad_images=True)', logger='current',
                          level=logging.WARNING)  # fmt: skip
                return None
            advice = '' if self.test_mode else '; or set skip_bad_images=True on the dataset'
            raise ValueError(f'cannot load image {path} of {self.ann_file}: {reason} (replace '
                             f'the file{advice}; {_HINT})') from error  # fmt: skip
