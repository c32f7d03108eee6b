"""Converted Caffe SSD models give OpenCV 4.x DNN's detections on real photos.

References: ``tests/data/caffe/opencv4_references.json``, written by ``make_references.py`` there
with ``cv2.dnn.readNetFromCaffe`` (OpenCV 4.x; OpenCV 5 has no Caffe importer). Each model is
converted with :func:`ssd_plugin.caffe.converter.convert` and run through mmdet's test pipeline
(``init_detector`` + ``inference_detector`` on the image files). Detections must agree above a
score of 0.05: the same set (label, score within 1e-4, box within 0.5 px in original image
pixels). Where OpenCV's list is full (``keep_top_k``), detections within the score tolerance of
its last score may differ by one and are left out of the comparison.

- OpenCV's res10 face detector (trained; fetched by ``face_detector_files``) on photos with faces
  (astronaut, Grace Hopper, the cameraman) and without (coffee, a cat);
- three random-weight topologies (weights from ``tests/caffe_random_weights.py``, seed in the
  references): weiliu89's VGG16 SSD300 (onto ``ReducedVGG16``), chuanqi305's MobileNet-SSD
  (depthwise, a ``min_size``-only first PriorBox, no steps) and a 240x320 net (BatchNorm + Scale,
  Eltwise, ceil pooling, Concat, Normalize variants, two min sizes, step_h/step_w, clip);
- the converted face detector exported to ONNX by ``tools/deploy/export_onnx.py`` gives the
  PyTorch detections in ONNX Runtime and in OpenCV 5 (``cv2.dnn.readNetFromONNX``).
"""

import hashlib
import json
import sys
from pathlib import Path

import cv2
import mmcv
import numpy as np
import onnxruntime as ort
import pytest
from caffe_photos import photo_path
from caffe_random_weights import write_random_caffemodel
from doc_blocks import fenced_blocks
from mmdet.apis import inference_detector, init_detector
from mmengine.config import Config

from ssd_plugin.caffe.converter import convert
from ssd_plugin.caffe.converter.face_detector_files import (
    FaceDetectorFileError,
    face_detector_files,
)

sys.path.insert(0, str(Path(__file__).parents[1] / 'test_tools'))
from tool_runner import load_tool  # noqa: E402

DATA = Path(__file__).parents[1] / 'data' / 'caffe'
REFS = json.loads((DATA / 'opencv4_references.json').read_text())
SCORE_THR = 0.05
SCORE_TOL = 1e-4
BOX_TOL = 0.5
FACE_LOG = []  # what the face detector's conversion printed (the face_model fixture's)


def match_detections(ref_rows, labels, scores, boxes, keep_top_k):
    """Problems (strings) between OpenCV's rows and mmdet's detections; empty when they agree.

    ``ref_rows``: ``[caffe_label, score, x1, y1, x2, y2]``; ``labels`` are mmdet's (Caffe's minus
    one: Caffe's background 0 is gone).
    """
    ref = np.asarray(ref_rows, dtype=np.float64).reshape(-1, 6)
    thr = SCORE_THR
    if len(ref) >= keep_top_k:  # OpenCV's list is cut: its last score bounds what both hold
        thr = max(thr, ref[:, 1].min() + SCORE_TOL)
    ref_labels, ref_scores, ref_boxes = ref[:, 0].astype(int) - 1, ref[:, 1], ref[:, 2:]
    problems = []
    used = np.zeros(len(scores), bool)
    for label, score, box in zip(ref_labels, ref_scores, ref_boxes):
        if score <= thr + SCORE_TOL:
            continue
        close = (
            ~used
            & (labels == label)
            & (np.abs(scores - score) <= SCORE_TOL)
            & (np.abs(boxes - box).max(1) <= BOX_TOL)
        )
        if close.any():
            used[np.flatnonzero(close)[0]] = True
        else:
            nearest = np.abs(boxes - box).max(1).argmin() if len(boxes) else None
            seen = 'none' if nearest is None else (
                f'nearest: label {labels[nearest]} score {scores[nearest]:.6f} '
                f'box {np.round(boxes[nearest], 2).tolist()}'
            )  # fmt: skip
            problems.append(
                f'OpenCV label {label} score {score:.6f} box {np.round(box, 2).tolist()} '
                f'missing ({seen})'
            )
    extra = ~used & (scores > thr + SCORE_TOL)
    # a detection near the threshold may be matched by one just under it on the other side
    near = np.abs(ref_scores[:, None] - scores[None, extra]) <= SCORE_TOL
    for i in np.flatnonzero(extra)[~near.any(0)] if len(ref) else np.flatnonzero(extra):
        problems.append(
            f'extra detection label {labels[i]} score {scores[i]:.6f} '
            f'box {np.round(boxes[i], 2).tolist()} (not in OpenCV)'
        )
    return problems


def detect(config, checkpoint, photos):
    """mmdet's detections (labels, scores, boxes in original pixels) per photo name."""
    model = init_detector(str(config), str(checkpoint), device='cpu')
    results = inference_detector(model, [str(photo_path(p)) for p in photos])
    return model, {
        p: (
            r.pred_instances.labels.numpy(),
            r.pred_instances.scores.numpy().astype(np.float64),
            r.pred_instances.bboxes.numpy().astype(np.float64),
        )
        for p, r in zip(photos, results)
    }


def assert_matches_opencv(name, model, detections):
    ref = REFS['models'][name]
    keep_top_k = model.test_cfg.max_per_img
    report = []
    for photo, (labels, scores, boxes) in detections.items():
        rows = ref['detections'][photo]
        problems = match_detections(rows, labels, scores, boxes, keep_top_k)
        if problems:
            report.append(f'{name} on {photo}: {len(problems)} problems, e.g.\n  ' +
                          '\n  '.join(problems[:5]))  # fmt: skip
    assert not report, '\n'.join(report)


def test_photos_decode_as_in_references():
    """The loader (mmcv, as LoadImageFromFile) gives the pixels OpenCV 4 decoded."""
    for name, info in REFS['photos'].items():
        image = mmcv.imfrombytes(photo_path(name).read_bytes(), flag='color')
        assert list(image.shape[:2]) == info['shape_hw'], name
        sha1 = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        assert sha1 == info['pixels_sha1'], f'{name}: the decoder gives other pixels than OpenCV 4'


@pytest.fixture(scope='module')
def face_model(tmp_path_factory):
    try:
        prototxt, caffemodel = face_detector_files()
    except FaceDetectorFileError as err:
        if 'could not download' in str(err):
            pytest.skip(f'no network for the face detector files: {err}')
        raise
    out = tmp_path_factory.mktemp('face')
    ref = REFS['models']['face']
    FACE_LOG.clear()
    return convert(prototxt, caffemodel, out, classes=['face'], mean=ref['mean'],
                   log=FACE_LOG.append)  # fmt: skip


def test_face_detector_conversion_prints_what_the_docs_show(face_model):
    """docs/caffe_models.md's sample output is the converter's, line for line (the memory
    estimate included); only the output folder differs."""
    (shown,) = fenced_blocks('docs/caffe_models.md', '## Worked example: OpenCV\'s face detector',
                             'text')  # fmt: skip
    out_dir = str(Path(face_model[0]).parent)
    printed = [line.replace(out_dir, 'work_dirs/face') for line in FACE_LOG]
    assert printed == shown.splitlines()


def test_face_detector_matches_opencv(face_model):
    photos = list(REFS['models']['face']['detections'])
    model, detections = detect(*face_model, photos)
    # the photos with faces find them (a sanity check of the references themselves)
    for photo in ('astronaut', 'grace_hopper', 'camera'):
        assert detections[photo][1].max() > 0.9, photo
    assert detections['coffee'][1].max() < 0.2
    assert_matches_opencv('face', model, detections)


@pytest.mark.parametrize('name', ['vgg16_ssd300', 'mobilenet_ssd', 'tiny_240x320'])
def test_random_weight_topology_matches_opencv(tmp_path, name):
    ref = REFS['models'][name]
    prototxt = DATA / ref['prototxt']
    caffemodel = tmp_path / f'{name}.caffemodel'
    sha1 = write_random_caffemodel(str(prototxt), str(caffemodel), **ref['weights'])
    assert sha1 == ref['caffemodel_sha1'], 'the random weights differ from the references'
    std = [1.0 / ref['scale']] * 3
    config, checkpoint = convert(prototxt, caffemodel, tmp_path / 'out', mean=ref['mean'], std=std)
    if name == 'vgg16_ssd300':  # onto the plugin's own VGG16 SSD components
        cfg = Config.fromfile(str(config))
        assert cfg.model.backbone.type == 'ReducedVGG16'
        assert cfg.model.bbox_head.type == 'MultiBoxHead'
    caffemodel.unlink()  # 100 MB for VGG16
    model, detections = detect(config, checkpoint, list(ref['detections']))
    assert_matches_opencv(name, model, detections)


def test_face_detector_onnx_matches_pytorch(face_model, tmp_path):
    """A Caffe model OpenCV 5 no longer reads, exported to ONNX, gives the PyTorch detections in
    ONNX Runtime and in OpenCV 5's ``readNetFromONNX`` (the project's OpenCV)."""
    config, checkpoint = face_model
    out = tmp_path / 'face.onnx'
    export_tool = load_tool('deploy/export_onnx.py')
    export_tool.main([str(config), str(checkpoint), str(out), '--with-nms', '--no-dynamic-batch'])
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    assert int(cv2.__version__.split('.')[0]) >= 5  # the importer that lost Caffe reads this
    opencv_net = cv2.dnn.readNetFromONNX(str(out))
    photos = ['astronaut', 'grace_hopper', 'chelsea']
    model, detections = detect(config, checkpoint, photos)
    for photo in photos:
        image = mmcv.imread(str(photo_path(photo)))
        height, width = image.shape[:2]
        resized = mmcv.imresize(image, (300, 300))  # the test pipeline's Resize (bilinear)
        pixels = resized.transpose(2, 0, 1)[None].astype(np.float32)
        opencv_net.setInput(pixels)
        runs = dict(
            onnxruntime=session.run(['dets', 'labels'], {'input': pixels}),
            opencv5=opencv_net.forward(['dets', 'labels']),
        )
        for runtime, (dets, labels) in runs.items():
            keep = dets[0, :, 4] > 0  # padding rows: score 0
            to_original = [width / 300, height / 300, width / 300, height / 300]
            boxes = dets[0, keep, :4].astype(np.float64) * to_original
            rows = np.column_stack([labels[0, keep] + 1, dets[0, keep, 4], boxes])
            problems = match_detections(rows, *detections[photo], model.test_cfg.max_per_img)
            assert not problems, f'{runtime} on {photo}: ' + '\n'.join(problems[:5])
