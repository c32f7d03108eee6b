"""Write ``opencv4_references.json``: OpenCV 4.x DNN's detections for the Caffe parity tests.

OpenCV 5 has no Caffe importer, so this runs with OpenCV 4 from a separate directory, put first
on ``sys.path`` only to import ``cv2`` (numpy, protobuf and the plugin come from the project's
environment)::

    python -m pip install --target /tmp/cv4 --no-deps 'opencv-python-headless<5'
    .venv/bin/python tests/data/caffe/make_references.py --opencv4 /tmp/cv4

References (``cv2.dnn.readNetFromCaffe`` + ``blobFromImage``, which resizes the uint8 image with
INTER_LINEAR before subtracting the mean, as mmdet's Resize + data preprocessor do):

- ``face``: OpenCV's res10 face detector
  (:mod:`ssd_plugin.caffe.converter.face_detector_files`) on photos with and without faces;
- ``vgg16_ssd300``, ``mobilenet_ssd``, ``tiny_240x320``: the deploy prototxts in this directory
  with random weights from ``tests/caffe_random_weights.py`` (seed and options recorded here, so
  the tests write the same caffemodel again; its sha1 is recorded too).

Each detection row is ``[caffe_label, score, x1, y1, x2, y2]``, the box in original image pixels
(OpenCV's normalised corners times the image width/height), in OpenCV's order (by score).
"""

import argparse
import hashlib
import importlib.util
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parents[1]
REPO = TESTS.parent
OPENCV4_DNN = 'tools/benchmarks/opencv4_dnn.py'
OUT = HERE / 'opencv4_references.json'

# name -> prototxt, random-weight options, preprocessing, photos (all recorded in the JSON)
TOPOLOGIES = {
    'vgg16_ssd300': dict(
        prototxt='vgg16_ssd300_voc_deploy.prototxt',
        weights=dict(seed=300, input_scale=60.0, conf_gain=0.5),
        mean=[104.0, 117.0, 123.0],
        scale=1.0,
        photos=['astronaut', 'coffee'],
    ),
    'mobilenet_ssd': dict(
        prototxt='mobilenet_ssd_deploy.prototxt',
        weights=dict(seed=305, input_scale=0.5, conf_gain=3.0),
        mean=[127.5, 127.5, 127.5],
        scale=0.007843,
        photos=['astronaut', 'coffee'],
    ),
    'tiny_240x320': dict(
        prototxt='tiny_ssd_240x320_deploy.prototxt',
        weights=dict(seed=240, input_scale=60.0, conf_gain=0.3, legacy_dims=True),
        mean=[104.0, 117.0, 123.0],
        scale=1.0,
        photos=['astronaut', 'coffee'],
    ),
}
FACE_PHOTOS = ['astronaut', 'grace_hopper', 'camera', 'coffee', 'chelsea']


def pixels_sha1(image: np.ndarray) -> str:
    """sha1 of decoded pixels: the tests check their decoder gives the same image."""
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--opencv4', required=True, help='directory holding OpenCV 4.x (cv2)')
    args = parser.parse_args(argv)
    # OpenCV 4 first: importing the plugin imports mmcv, which imports the project's cv2
    spec = importlib.util.spec_from_file_location('opencv4_dnn', REPO / OPENCV4_DNN)
    opencv4_dnn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(opencv4_dnn)
    cv2 = opencv4_dnn.import_opencv4(args.opencv4)
    opencv_detections = opencv4_dnn.opencv_detections
    sys.path[:0] = [str(TESTS), str(REPO)]  # the helpers in tests/ and this checkout's plugin
    from caffe_photos import photo_path
    from caffe_random_weights import write_random_caffemodel

    from ssd_plugin.caffe.converter.face_detector_files import (
        FACE_DETECTOR_MEAN,
        face_detector_files,
    )
    from ssd_plugin.caffe.converter.graph import parse_net
    from ssd_plugin.caffe.converter.proto import read_prototxt

    images = {}
    for name in sorted(set(FACE_PHOTOS).union(*(t['photos'] for t in TOPOLOGIES.values()))):
        image = cv2.imread(str(photo_path(name)), cv2.IMREAD_COLOR)
        images[name] = dict(image=image, shape=list(image.shape[:2]), sha1=pixels_sha1(image))
    refs = dict(opencv_version=cv2.__version__, photos={}, models={})
    for name, info in images.items():
        refs['photos'][name] = dict(shape_hw=info['shape'], pixels_sha1=info['sha1'])

    prototxt, caffemodel = face_detector_files()
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    mean = list(FACE_DETECTOR_MEAN)
    refs['models']['face'] = dict(
        mean=mean,
        scale=1.0,
        input_hw=[300, 300],
        detections={
            p: opencv_detections(cv2, net, images[p]['image'], (300, 300), mean, 1.0)
            for p in FACE_PHOTOS
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, topo in TOPOLOGIES.items():
            proto_path = str(HERE / topo['prototxt'])
            weights = dict(topo['weights'])
            model_path = os.path.join(tmp, f'{name}.caffemodel')
            sha1 = write_random_caffemodel(proto_path, model_path, **weights)
            size = parse_net(read_prototxt(proto_path)).input_shape[1:]
            net = cv2.dnn.readNetFromCaffe(proto_path, model_path)
            dets = {
                p: opencv_detections(
                    cv2, net, images[p]['image'], size, topo['mean'], topo['scale']
                )
                for p in topo['photos']
            }
            entry = {k: v for k, v in topo.items() if k != 'photos'}
            refs['models'][name] = dict(entry, input_hw=list(size), caffemodel_sha1=sha1)
            refs['models'][name]['detections'] = dets
            os.remove(model_path)
    for name, model in refs['models'].items():
        counts = {p: len(d) for p, d in model['detections'].items()}
        print(f'{name}: detections per photo {counts}')
    text = json.dumps(refs, indent=1)
    # one detection row per line
    text = re.sub(
        r'\[\s+([^\[\]{}]*?)\s+\]', lambda m: '[' + ' '.join(m.group(1).split()) + ']', text
    )
    OUT.write_text(text + '\n')
    print(f'wrote {OUT} ({OUT.stat().st_size} bytes) with OpenCV {cv2.__version__}')


if __name__ == '__main__':
    main()
