"""tools/benchmarks/opencv4_dnn.py (the OpenCV 4.x reference runner): its preprocessing is
mmdet's, its rows become pixel boxes."""

import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import mmcv
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / 'test_tools'))
from tool_runner import load_tool  # noqa: E402

_OPENCV4_DNN = load_tool('benchmarks/opencv4_dnn.py')
import_opencv4 = _OPENCV4_DNN.import_opencv4
opencv_blob = _OPENCV4_DNN.opencv_blob
opencv_detections = _OPENCV4_DNN.opencv_detections


def test_blob_is_mmdet_resize_then_mean():
    """blobFromImage (no crop): the uint8 image resized bilinearly, then (x - mean) * scale, as
    mmdet's Resize (keep_ratio=False) and data preprocessor do (OpenCV 5 here has the same)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    mean, scale = (104.0, 177.0, 123.0), 0.5
    blob = opencv_blob(cv2, image, (30, 40), mean, scale)
    expected = (mmcv.imresize(image, (40, 30)).astype(np.float32) - mean) * scale
    assert blob.shape == (1, 3, 30, 40)
    np.testing.assert_allclose(blob[0].transpose(1, 2, 0), expected, rtol=0, atol=1e-4)


def test_detections_in_image_pixels():
    rows = np.zeros((1, 1, 4, 7), np.float32)  # OpenCV pads with zero rows
    rows[0, 0, 0] = [0, 1, 0.9, 0.1, 0.2, 0.5, 1.5]  # may leave the image: kept as is
    rows[0, 0, 1] = [0, 2, 0.3, 0.0, 0.0, 1.0, 1.0]
    net = SimpleNamespace(setInput=lambda blob: None, forward=lambda: rows)
    image = np.zeros((50, 200, 3), np.uint8)
    dets = opencv_detections(cv2, net, image, (30, 30), (0, 0, 0), 1.0)
    assert len(dets) == 2 and dets[0][:2] == [1, pytest.approx(0.9)]
    np.testing.assert_allclose(dets[0][2:], [20, 10, 100, 75], atol=1e-4)
    np.testing.assert_allclose(dets[1][2:], [0, 0, 200, 50], atol=1e-4)


def test_import_opencv4_refuses_another_cv2(tmp_path):
    # this process already holds the project's OpenCV (mmcv imports it)
    with pytest.raises(ImportError, match='already imported'):
        import_opencv4(str(tmp_path))
