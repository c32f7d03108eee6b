"""A Caffe SSD in OpenCV 4.x DNN: the reference the converted models are checked against.

OpenCV 5 removed ``cv2.dnn.readNetFromCaffe``, so OpenCV 4 comes from a separate directory
(``pip install --target DIR --no-deps 'opencv-python-headless<5'``), put first on ``sys.path``
only while ``cv2`` is imported: numpy and everything else stay the project's. Used by
``tests/data/caffe/make_references.py`` and, as a script in a process of its own, by
``tools/benchmarks/bench_caffe.py``. This file imports nothing of the plugin (importing the plugin
imports mmcv, which imports the project's OpenCV): the scripts load it by path first.

As a script it times one Caffe SSD in OpenCV 4.x DNN and prints one JSON line::

    python tools/benchmarks/opencv4_dnn.py --opencv4 DIR --prototxt P --caffemodel M \
        --images resized.npy --mean 104 177 123 --net-outputs mbox_loc mbox_conf_flatten ...
"""

import argparse
import json
import os
import sys
import time
from types import ModuleType
from typing import List, Sequence, Tuple

import numpy as np

__all__ = ['import_opencv4', 'opencv_blob', 'opencv_detections', 'time_opencv']


def import_opencv4(path: str) -> ModuleType:
    """``cv2`` from ``path``, checked to be OpenCV 4.x with the Caffe importer.

    Must run before anything imports another ``cv2`` in this process (mmcv does).

    Raises:
        ImportError: ``cv2`` in ``path`` is missing, not 4.x, or already imported from elsewhere.
    """
    path = os.path.abspath(path)
    if 'cv2' in sys.modules and not sys.modules['cv2'].__file__.startswith(path):
        raise ImportError(f'cv2 is already imported from {sys.modules["cv2"].__file__}, not {path}')
    import numpy  # noqa: F401  (the project's numpy, not one that `pip --target` put in path)

    sys.path.insert(0, path)
    try:
        import cv2
    finally:
        sys.path.remove(path)
    if not cv2.__file__.startswith(path):
        raise ImportError(f'no cv2 in {path} (found {cv2.__file__})')
    if not cv2.__version__.startswith('4.') or not hasattr(cv2.dnn, 'readNetFromCaffe'):
        raise ImportError(f'{path}: OpenCV {cv2.__version__} has no Caffe importer; need 4.x')
    return cv2


def opencv_blob(cv2: ModuleType, image: np.ndarray, size_hw: Tuple[int, int],
                mean: Sequence[float], scale: float) -> np.ndarray:  # fmt: skip
    """``blobFromImage``: direct INTER_LINEAR resize of the uint8 image, then
    ``(x - mean) * scale``, channels kept in the image's order (BGR), no crop."""
    return cv2.dnn.blobFromImage(image, scale, (size_hw[1], size_hw[0]), tuple(mean), False, False)


def opencv_detections(cv2: ModuleType, net, image: np.ndarray, size_hw: Tuple[int, int],
                      mean: Sequence[float], scale: float) -> List[List[float]]:  # fmt: skip
    """The ``DetectionOutput`` rows OpenCV gives for one BGR uint8 image.

    Returns:
        ``[caffe_label, score, x1, y1, x2, y2]`` per detection in OpenCV's order (by score), the
        box in the image's pixels (OpenCV's normalised corners times its width and height).
    """
    net.setInput(opencv_blob(cv2, image, size_hw, mean, scale))
    rows = net.forward().reshape(-1, 7).astype(np.float64)
    rows = rows[rows[:, 2] > 0]  # OpenCV pads its keep_top_k rows with zeros
    height, width = image.shape[:2]
    rows[:, 3:] *= [width, height, width, height]
    return [[int(r[1]), *(round(float(v), 7) for v in r[2:])] for r in rows]


def time_opencv(cv2: ModuleType, net, images: np.ndarray, mean: Sequence[float], scale: float,
                net_outputs: Sequence[str], repeats: int, warmup: int) -> dict:  # fmt: skip
    """Best per-image milliseconds of OpenCV DNN on ``images`` (already at the input size).

    ``net``: ``blobFromImage`` and the forward pass up to ``net_outputs`` (the inputs of
    ``DetectionOutput``); ``full``: ``blobFromImage`` and the whole forward pass. Interleaved
    rounds (``net full net full``), ``warmup`` of them untimed; ``dets``: detections per image.
    """
    size_hw = images.shape[1:3]
    best = dict(net=float('inf'), full=float('inf'))
    detections = []
    for round_ in range(warmup + repeats):
        for stage in ('net', 'full'):
            start = time.perf_counter()
            outs = []
            for image in images:
                net.setInput(opencv_blob(cv2, image, size_hw, mean, scale))
                outs.append(net.forward(list(net_outputs)) if stage == 'net' else net.forward())
            elapsed = (time.perf_counter() - start) * 1e3 / len(images)
            if stage == 'full':
                detections = [int((out.reshape(-1, 7)[:, 2] > 0).sum()) for out in outs]
            if round_ >= warmup:
                best[stage] = min(best[stage], elapsed)
    return dict(best, dets=float(np.mean(detections)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description='Time a Caffe SSD in OpenCV 4.x DNN')
    parser.add_argument('--opencv4', required=True, help='directory holding OpenCV 4.x (cv2)')
    parser.add_argument('--prototxt', required=True)
    parser.add_argument('--caffemodel', required=True)
    parser.add_argument('--images', required=True, help='.npy (N, H, W, 3) BGR uint8, resized')
    parser.add_argument('--mean', type=float, nargs=3, required=True)
    parser.add_argument('--scale', type=float, default=1.0)
    parser.add_argument('--net-outputs', nargs='+', required=True)
    parser.add_argument('--threads', type=int, required=True)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    args = parser.parse_args(argv)
    cv2 = import_opencv4(args.opencv4)
    cv2.setNumThreads(args.threads)
    net = cv2.dnn.readNetFromCaffe(args.prototxt, args.caffemodel)
    images = np.load(args.images)
    result = time_opencv(cv2, net, images, args.mean, args.scale, args.net_outputs, args.repeats,
                         args.warmup)  # fmt: skip
    result.update(version=cv2.__version__, threads=cv2.getNumThreads())
    print(json.dumps(result))


if __name__ == '__main__':
    main()
