"""The SSD train pipeline of docs/design.md end to end, and ZoomOut without a crop after it."""

import cv2
import numpy as np
from mmcv.transforms import Compose
from mmdet.datasets.transforms import Expand

from ssd_plugin.datasets.transforms import ZoomOut

FILL_BGR = (103.53, 116.28, 123.675)
TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='ZoomOut', prob=0.5, ratio_range=(1, 4), fill=FILL_BGR),
    dict(type='MinIoUCrop'),
    dict(type='Resize', scale=(300, 300), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotometricDistort'),
    dict(type='PackDetInputs'),
]


def _data_info(tmp_path, rng, num_boxes):
    img = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, img)
    x1y1 = rng.uniform(0, 100, (num_boxes, 2))
    boxes = np.concatenate([x1y1, x1y1 + rng.uniform(4, 60, (num_boxes, 2))], axis=1)
    instances = [
        dict(bbox=b.tolist(), bbox_label=i % 3, ignore_flag=int(i % 4 == 3))
        for i, b in enumerate(boxes)
    ]
    return dict(img_path=path, img_id=0, height=96, width=128, instances=instances)


def test_train_pipeline_invariants_over_many_draws(tmp_path):
    np.random.seed(0)
    rng = np.random.default_rng(0)
    pipeline = Compose(TRAIN_PIPELINE)
    for i in range(60):
        info = _data_info(tmp_path, rng, num_boxes=i % 7)
        out = pipeline(dict(info))
        inputs, sample = out['inputs'], out['data_samples']
        assert tuple(inputs.shape) == (3, 300, 300) and str(inputs.dtype) == 'torch.uint8'
        assert sample.img_shape == (300, 300)
        gt = sample.gt_instances
        boxes = gt.bboxes.tensor
        assert len(gt.labels) == len(boxes) <= len(info['instances'])
        assert (boxes >= 0).all() and (boxes <= 300).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        ignored = sample.ignored_instances
        assert len(ignored.labels) == len(ignored.bboxes)
        if len(info['instances']):
            assert len(boxes) + len(ignored.bboxes) >= 1  # the crop keeps an object


def test_zoom_out_without_a_crop_gives_the_painted_canvas_to_resize():
    """Robustness: a pipeline with no MinIoUCrop still sees mmdet Expand's image."""
    rng = np.random.default_rng(1)
    tail = [dict(type='Resize', scale=(300, 300), keep_ratio=False), dict(type='PackDetInputs')]
    ours = Compose([ZoomOut(prob=1.0, fill=FILL_BGR)] + tail)
    # Expand truncates its fill and ZoomOut rounds it: give Expand the rounded values.
    mmdet = Compose([Expand(mean=(104, 116, 124), to_rgb=False, prob=1.0)] + tail)
    for seed in range(10):
        img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
        results = dict(img=img, img_shape=(60, 80), ori_shape=(60, 80))
        np.random.seed(seed)
        a = ours(dict(results))
        np.random.seed(seed)
        b = mmdet(dict(results))
        assert a['data_samples'].scale_factor == b['data_samples'].scale_factor
        assert a['inputs'].equal(b['inputs'])
