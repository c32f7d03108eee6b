"""Tiny configs for the coverage-analysis tests, around synthetic COCO annotation files (no images).

``write_synthetic_coco`` lives in the package (``ssd_plugin.analysis.synthetic_coco``), where
``tools/analysis/default_box_coverage.py --synthetic-coco`` uses it for the COCO-sized figures.
"""

from typing import Optional, Sequence, Tuple

from ssd_plugin.analysis.synthetic_coco import write_synthetic_coco

__all__ = ['SSD300_GENERATOR', 'write_synthetic_coco', 'tiny_config', 'write_config']

SSD300_GENERATOR = dict(
    type='DefaultBoxGenerator',
    input_size=300,
    strides=(8, 16, 32, 64, 100, 300),
    ratios=([2], [2, 3], [2, 3], [2, 3], [2], [2]),
    scale_range=(0.15, 0.9),
    scale_mode='caffe',
)


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
