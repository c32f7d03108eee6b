"""The converted detector's mmdet config, written as Python literals.

Every value is written with ``repr`` (through :func:`pprint.pformat`), so layer names, class
names and paths from Caffe files are always quoted string literals, never code.
"""

import math
import pprint
from typing import Any, Dict, Sequence, Tuple

__all__ = ['detector_config', 'write_config']


def _check_literal(value: Any, where: str) -> None:
    """Only values whose ``repr`` is a Python literal that reads back the same."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f'config key {k!r} at {where} is not a string')
            _check_literal(v, f'{where}.{k}')
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_literal(v, f'{where}[{i}]')
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f'config value at {where} is {value!r}, not a finite number')
    elif value is not None and not isinstance(value, (str, bool, int)):
        raise TypeError(f'config value at {where} has type {type(value).__name__}')


def write_config(path: str, variables: Dict[str, Any], header: Sequence[str] = ()) -> None:
    """Write ``name = <literal>`` lines (after ``#`` comment lines ``header``) to ``path``."""
    lines = [f'# {line}' for line in header]
    for name, value in variables.items():
        if not name.isidentifier():
            raise ValueError(f'config variable name {name!r} is not an identifier')
        _check_literal(value, name)
        lines.append(f'{name} = {pprint.pformat(value, width=100, sort_dicts=False)}')
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')


def _palette(num_classes: int) -> list:
    # Fixed, well-spread colours (image_demo needs one per class).
    return [
        ((80 + 97 * i) % 256, (40 + 53 * i) % 256, (200 + 151 * i) % 256)
        for i in range(num_classes)
    ]


def _pipelines(h: int, w: int, mean_bgr: Sequence[float]) -> Tuple[list, list]:
    """``(test_pipeline, train_pipeline)``: Caffe's WARP resize; the plugin's augmentation."""
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(w, h), keep_ratio=False),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(
            type='PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
        ),
    ]
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='ZoomOut', prob=0.5, ratio_range=(1, 4), fill=tuple(float(m) for m in mean_bgr)),
        dict(type='MinIoUCrop'),
        dict(type='Resize', scale=(w, h), keep_ratio=False),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotometricDistort'),
        dict(type='PackDetInputs'),
    ]
    return test_pipeline, train_pipeline


def _dataloaders(
    metainfo: dict, test_pipeline: list, train_pipeline: list, data_root: str
) -> Tuple[dict, dict]:
    """``(train_dataloader, val_dataloader)`` on COCO placeholders."""

    def dataset(split: str, pipeline: list, test_mode: bool) -> dict:
        return dict(
            type='CheckedCocoDataset',
            data_root=data_root,
            metainfo=metainfo,
            ann_file=f'annotations/instances_{split}2017.json',
            data_prefix=dict(img=f'{split}2017/'),
            test_mode=test_mode,
            filter_cfg=dict(filter_empty_gt=False),
            pipeline=pipeline,
        )

    train_loader = dict(
        batch_size=8,
        num_workers=2,
        persistent_workers=True,
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_sampler=dict(type='AspectRatioBatchSampler'),
        dataset=dataset('train', train_pipeline, False),
    )
    val_loader = dict(
        batch_size=8,
        num_workers=2,
        persistent_workers=True,
        drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dataset('val', test_pipeline, True),
    )
    return train_loader, val_loader


def detector_config(
    model: dict,
    classes: Sequence[str],
    input_hw: Sequence[int],
    mean_bgr: Sequence[float],
    data_root: str = 'data/coco/',
) -> Dict[str, Any]:
    """The config variables around a converted ``model``: pipelines, data, schedule, runtime.

    The test pipeline resizes to the input size without keeping the aspect ratio (Caffe's
    ``WARP``); the train pipeline is the plugin's SSD augmentation (ZoomOut filled with the mean),
    so a config inheriting this one fine-tunes with the plugin's recipe. Data settings are COCO
    placeholders for a child config (or ``--cfg-options``) to replace.
    """
    h, w = (int(v) for v in input_hw)
    metainfo = dict(classes=tuple(classes), palette=_palette(len(classes)))
    test_pipeline, train_pipeline = _pipelines(h, w, mean_bgr)
    train_loader, val_loader = _dataloaders(metainfo, test_pipeline, train_pipeline, data_root)
    evaluator = dict(
        type='CocoMetric', ann_file=f'{data_root}annotations/instances_val2017.json', metric='bbox'
    )
    return dict(
        _base_=['mmdet::_base_/default_runtime.py'],
        custom_imports=dict(imports=['ssd_plugin'], allow_failed_imports=False),
        data_root=data_root,  # what the tools' --data-root replaces
        metainfo=metainfo,
        model=model,
        test_pipeline=test_pipeline,
        train_pipeline=train_pipeline,
        train_dataloader=train_loader,
        val_dataloader=val_loader,
        test_dataloader=val_loader,
        val_evaluator=evaluator,
        test_evaluator=evaluator,
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1),
        val_cfg=dict(type='ValLoop'),
        test_cfg=dict(type='TestLoop'),
        # fine-tuning: SGD as Caffe SSD, at a tenth of its initial learning rate
        optim_wrapper=dict(
            type='OptimWrapper',
            optimizer=dict(type='SGD', lr=1e-4, momentum=0.9, weight_decay=5e-4),
        ),
        custom_hooks=[dict(type='NumClassCheckHook'), dict(type='NonFiniteLossHook')],
    )
