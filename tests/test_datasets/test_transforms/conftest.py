"""Fixtures for the SSD transform tests: results dicts as mmdet's loading transforms give them."""

import numpy as np
import pytest
from mmdet.structures.bbox import HorizontalBoxes


def random_results(rng: np.random.Generator, height=120, width=160, num_boxes=None, channels=3):
    """A ``LoadImageFromFile`` + ``LoadAnnotations`` results dict with random boxes and labels."""
    if num_boxes is None:
        num_boxes = int(rng.integers(0, 8))
    shape = (height, width) if channels is None else (height, width, channels)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    x1y1 = rng.uniform(0, 0.9, (num_boxes, 2)) * (width, height)
    wh = rng.uniform(0.02, 0.7, (num_boxes, 2)) * (width, height)
    boxes = np.concatenate([x1y1, np.minimum(x1y1 + wh, (width, height))], axis=1)
    return dict(
        img=img,
        img_path='random.jpg',
        img_shape=(height, width),
        ori_shape=(height, width),
        gt_bboxes=HorizontalBoxes(boxes.astype(np.float32)),
        gt_bboxes_labels=np.arange(num_boxes, dtype=np.int64),
        gt_ignore_flags=rng.random(num_boxes) < 0.3,
    )


@pytest.fixture
def make_results():
    return random_results
