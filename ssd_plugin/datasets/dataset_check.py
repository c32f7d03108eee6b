"""Check a config's datasets before a long run: every image decoded, every annotation checked.

:func:`check_datasets` builds the train / val / test datasets of a config as the checked datasets
(``CocoDataset`` and ``VOCDataset`` become ``CheckedCocoDataset`` / ``CheckedVOCDataset``, whose
load-time box checks are the annotation checks), with the load-time image file check off so
that every bad file is listed rather than the first few. It then decodes every image
(:func:`~ssd_plugin.datasets.image_checks.image_problems`, in worker processes, with a progress
bar and rate) and collects every problem by file. ``tools/analysis/check_dataset.py`` prints the
report and exits non-zero when there is any.
"""

import copy
import multiprocessing
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from mmdet.registry import DATASETS
from mmengine.config import Config
from mmengine.dataset import BaseDataset
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar

from .image_checks import image_problems

__all__ = ['SPLITS', 'DatasetReport', 'check_datasets', 'format_reports']

SPLITS = ('train', 'val', 'test')
_CHECKED = {'CocoDataset': 'CheckedCocoDataset', 'VOCDataset': 'CheckedVOCDataset'}


@dataclass
class DatasetReport:
    """The problems of one annotation file (one leaf dataset) and of its images.

    Attributes:
        split: ``'train'``, ``'val'`` or ``'test'``.
        ann_file: The dataset's annotation file.
        num_images: Images the dataset lists (0 when it could not be built).
        annotation: Problems of the annotation file: the box check report, or the error that
            stopped the dataset from loading (its images are then not checked).
        images: Problems by image file (only files with problems).
    """

    split: str
    ann_file: str
    num_images: int = 0
    annotation: List[str] = field(default_factory=list)
    images: Dict[str, List[str]] = field(default_factory=dict)

    @property
    def num_problems(self) -> int:
        return len(self.annotation) + sum(len(p) for p in self.images.values())


def _as_checked(cfg):
    """A copy of a dataset config with its mmdet COCO/VOC datasets as the checked ones."""
    if isinstance(cfg, (list, tuple)):
        return [_as_checked(c) for c in cfg]
    if not isinstance(cfg, dict):
        return cfg
    out = {k: v if k == 'pipeline' else _as_checked(v) for k, v in cfg.items()}
    kind = str(out.get('type', '')).split('.')[-1]
    if kind in _CHECKED or kind in _CHECKED.values():
        # every missing or empty file listed below, not the first few in an error
        out.update(type=_CHECKED.get(kind, kind), check_image_files=False)
    return out


def _leaves(dataset) -> Iterator[BaseDataset]:
    """The datasets inside mmengine's wrappers (Concat, Repeat, ClassBalanced)."""
    if hasattr(dataset, 'datasets'):
        for inner in dataset.datasets:
            yield from _leaves(inner)
    elif hasattr(dataset, 'dataset'):
        yield from _leaves(dataset.dataset)
    else:
        yield dataset


def _split_datasets(cfg: Config, split: str) -> Optional[dict]:
    loader = cfg.get(f'{split}_dataloader')
    return copy.deepcopy(loader.get('dataset')) if loader else None


def _check_one(item: Tuple[str, Optional[Tuple[int, int]], Optional[dict]]) -> List[str]:
    path, size, backend_args = item
    return image_problems(path, size, backend_args)


def check_datasets(
    cfg: Config, splits: Sequence[str] = SPLITS, workers: int = 1, progress: bool = True
) -> List[DatasetReport]:
    """Check the datasets of ``cfg``'s ``<split>_dataloader`` for each split.

    Args:
        cfg: A full config (``--data-root`` already applied).
        splits: Any of ``'train'``, ``'val'``, ``'test'``; a split the config lacks is skipped.
            A dataset shared by two splits (the same annotation file and images) is checked
            once, under the first.
        workers: Processes decoding images.
        progress: Show a progress bar (with the rate) while decoding.

    Returns:
        One report per leaf dataset, in split order.
    """
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    reports, items, owners, seen = [], [], [], set()
    logger = MMLogger.get_current_instance()
    for split in splits:
        dataset_cfg = _split_datasets(cfg, split)
        if dataset_cfg is None:
            continue
        try:
            built = DATASETS.build(_as_checked(dataset_cfg))
        except (ValueError, OSError) as e:  # the checked datasets' errors about their files
            ann_file = osp.join(dataset_cfg.get('data_root') or '', dataset_cfg.get('ann_file', ''))
            reports.append(DatasetReport(split, ann_file, annotation=[f'{type(e).__name__}: {e}']))
            continue
        for leaf in _leaves(built):
            infos = [leaf.get_data_info(i) for i in range(len(leaf))]
            key = (leaf.ann_file, tuple(sorted(d['img_path'] for d in infos)))
            if key in seen:
                continue
            seen.add(key)
            report = DatasetReport(split, leaf.ann_file, len(infos))
            message = getattr(leaf, 'box_check_report', '')
            report.annotation += [message] if message else []
            reports.append(report)
            backend_args = getattr(leaf, 'backend_args', None)
            for info in infos:
                size = (info['width'], info['height']) if info.get('width') else None
                items.append((info['img_path'], size, backend_args))
                owners.append(report)
    if not items:
        return reports
    logger.info(f'decoding {len(items)} images with {workers} worker(s)')
    bar = ProgressBar(len(items)) if progress else None
    # forked workers start at once (spawned ones import mmdet again: seconds each)
    with multiprocessing.Pool(workers) if workers > 1 else _Serial() as pool:
        for (path, *_), report, problems in zip(
            items, owners, pool.imap(_check_one, items, chunksize=8)
        ):
            if problems:
                report.images.setdefault(path, []).extend(problems)
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.file.write('\n')
    return reports


class _Serial:
    """The part of ``multiprocessing.Pool`` used above, in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    @staticmethod
    def imap(func, items, chunksize=1):
        return map(func, items)


def format_reports(reports: Sequence[DatasetReport]) -> str:
    """The reports as text: per dataset, its annotation problems, then each bad image."""
    lines = []
    for report in reports:
        bad = len(report.images)
        lines.append(f'{report.split}: {report.ann_file}: {report.num_images} images, {bad} '
                     f'with problems, {len(report.annotation)} annotation problems')  # fmt: skip
        lines += [f'  annotations: {message}' for message in report.annotation]
        for path, problems in report.images.items():
            lines.append(f'  {path}: {"; ".join(problems)}')
    total = sum(r.num_problems for r in reports)
    files = sum(len(r.images) + bool(r.annotation) for r in reports)
    lines.append(f'{total} problems in {files} files' if total else 'no problems found')
    return '\n'.join(lines)
