"""tools/browse_augmentations.py on a tiny generated COCO dataset and config."""

import importlib.util
import json
import os.path as osp

import cv2
import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = """
custom_imports = dict(imports=['ssd_plugin'], allow_failed_imports=False)
default_scope = 'mmdet'
data_root = 'does/not/exist/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ZoomOut', prob=0.5, ratio_range=(1, 4), fill=(103.53, 116.28, 123.675)),
    dict(type='MinIoUCrop'),
    dict(type='Resize', scale=(300, 300), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotometricDistort'),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        type='CocoDataset', data_root=data_root, ann_file='ann.json',
        data_prefix=dict(img='images/'), metainfo=dict(classes=('box', 'disc')),
        filter_cfg=dict(filter_empty_gt=False), pipeline=train_pipeline))
"""


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        'browse_augmentations', osp.join(ROOT, 'tools', 'browse_augmentations.py')
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_coco(root):
    rng = np.random.default_rng(0)
    (root / 'images').mkdir()
    images, annotations = [], []
    for i in range(3):
        img = np.full((60, 80, 3), 90, np.uint8)
        cv2.rectangle(img, (10, 12), (40, 45), (250, 40, 40), -1)
        cv2.imwrite(str(root / 'images' / f'{i}.jpg'), img)
        images.append(dict(id=i, file_name=f'{i}.jpg', height=60, width=80))
        for k in range(i):  # image 0 has no annotation
            x, y = rng.uniform(0, 40, 2).tolist()
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i,
                    category_id=k + 1,
                    bbox=[x, y, 30, 15],
                    area=450,
                    iscrowd=0,
                )
            )
    categories = [dict(id=1, name='box'), dict(id=2, name='disc')]
    (root / 'ann.json').write_text(
        json.dumps(dict(images=images, annotations=annotations, categories=categories))
    )


def test_writes_a_grid_of_augmented_samples_with_boxes(tmp_path):
    _write_coco(tmp_path)
    config = tmp_path / 'tiny_ssd.py'
    config.write_text(CONFIG)
    out = tmp_path / 'vis' / 'grid.png'
    tool = _load_tool()
    argv = [str(config), '--out', str(out), '--num', '5', '--cols', '3']
    written = tool.main(argv + ['--data-root', str(tmp_path)])
    assert written == str(out)
    grid = cv2.imread(str(out))
    # 5 tiles of 300x300 in 3 columns, 2 rows, 4-pixel gaps.
    assert grid.shape == (2 * 304 + 4, 3 * 304 + 4, 3)
    tiles = [
        grid[4 + r * 304 : 304 + r * 304, 4 + c * 304 : 304 + c * 304]
        for r in range(2)
        for c in range(3)
    ]
    assert (tiles[-1] == 255).all()  # the unused cell stays white
    green = sum(
        int(((t[..., 1] >= 190) & (t[..., 0] < 20) & (t[..., 2] < 20)).sum()) for t in tiles[:5]
    )
    assert green > 50  # ground-truth boxes were drawn


def test_same_seed_same_grid_and_bad_arguments(tmp_path):
    _write_coco(tmp_path)
    config = tmp_path / 'tiny_ssd.py'
    config.write_text(CONFIG.replace('does/not/exist/', f'{tmp_path}/'))
    tool = _load_tool()
    a, b = tmp_path / 'a.png', tmp_path / 'b.png'
    for path in (a, b):
        tool.main([str(config), '--out', str(path), '--num', '2', '--seed', '3'])
    assert np.array_equal(cv2.imread(str(a)), cv2.imread(str(b)))
    with pytest.raises(SystemExit):
        tool.main([str(config), '--num', '0'])
