"""A converted Caffe SSD (OpenCV's res10 face detector) against OpenCV 4.x DNN on the Caffe model.

Usage::

    python -m pip install --target /tmp/cv4 --no-deps 'opencv-python-headless<5'
    python tools/benchmarks/bench_caffe.py --opencv4 /tmp/cv4 --repeats 5
    python tools/benchmarks/bench_caffe.py --opencv4 /tmp/cv4 --images a.jpg b.jpg
    python tools/benchmarks/bench_caffe.py --quick        # proves it runs (OpenCV 4 if given)

The face detector's files come from ``ssd_plugin.caffe.converter.face_detector_files``
(downloaded once, cached) and are converted with ``ssd_plugin.caffe.converter.convert`` into a
temporary directory. Both implementations see the same pixels: the images (``--images``, else
synthetic 640x480 ones) go through the converted config's test pipeline once, untimed, and
OpenCV gets those resized pixels (so its ``blobFromImage`` resize is a no-op). Batch 1, per-image
times, CPU. Stages:

- ``net``: ours: backbone and head on the preprocessed image, up to the head's outputs; OpenCV:
  ``blobFromImage`` (mean subtraction; the resize is a no-op) and the forward pass up to
  ``DetectionOutput``'s inputs;
- ``post``: ours: ``predict_by_feat`` (decode, score threshold, per-class top-k and NMS,
  rescale); OpenCV: ``full - net`` (marked ``~``);
- ``full``: ours: ``model.test_step``; OpenCV: ``blobFromImage`` and the whole forward pass.

Ours runs under ``torch.no_grad()``, as ``inference_detector`` and the test loop run it.

OpenCV 5 has no Caffe importer, so OpenCV 4 (``--opencv4``: a ``pip install --target``
directory) runs in a process of its own (``tools/benchmarks/opencv4_dnn.py``), after ours, with
the same number of threads (``--threads``, default torch's). Without ``--opencv4`` only ours is
timed. Timing rules: see ``bench_common.py`` (best of ``--repeats`` after warm-up; ratios
``OpenCV / ours``: above 1 means ours is faster).
"""

import argparse
import json
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Dict, List

import bench_common as common
import numpy as np
import torch
from bench_inference import Detector
from mmengine.config import Config
from synthetic import random_images

import ssd_plugin  # noqa: F401  (registers the components)
from ssd_plugin.caffe.converter import convert
from ssd_plugin.caffe.converter.face_detector_files import FACE_DETECTOR_MEAN, face_detector_files
from ssd_plugin.caffe.converter.graph import parse_net
from ssd_plugin.caffe.converter.proto import read_prototxt

OPENCV4_DNN = osp.join(osp.dirname(osp.abspath(__file__)), 'opencv4_dnn.py')
STAGES = ('net', 'post', 'full')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Converted Caffe SSD vs OpenCV 4.x DNN (CPU)')
    parser.add_argument('--opencv4', help='directory holding OpenCV 4.x (pip install --target)')
    parser.add_argument('--images', nargs='+', help='image files (default: synthetic images)')
    parser.add_argument('--num-images', type=int, default=8, help='synthetic images (default 8)')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help="threads of both (default: torch's)")  # fmt: skip
    parser.add_argument('--repeats', type=int, default=3, help='timed rounds (best is reported)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='2 synthetic images, one timed round: proves the script runs',
    )
    return common.parse_with_quick(parser, argv, num_images=2, repeats=1)


def detection_inputs(prototxt: str) -> List[str]:
    """The blobs ``DetectionOutput`` reads: where OpenCV's ``net`` stage ends."""
    return list(parse_net(read_prototxt(prototxt)).detection_output.bottom)


def time_ours(detector: Detector, data: List[Dict], repeats: int, warmup: int) -> Dict:
    """Best per-image ms of each stage over the images, one at a time (batch 1)."""
    # no_grad, as inference_detector and the runner's test loop run the model
    with torch.no_grad():
        stages = [detector.stages(d) for d in data]
        fns = {s: (lambda s=s: [st[s]() for st in stages]) for s in STAGES}
        best, results = common.interleaved_best(fns, repeats, warmup)
    per_image = {s: best[s] / len(data) for s in STAGES}
    per_image['dets'] = float(np.mean([len(r[0].pred_instances) for r in results['full']]))
    return per_image


def time_opencv(args, prototxt: str, caffemodel: str, pixels: np.ndarray, workdir: str) -> Dict:
    """OpenCV 4.x DNN's per-image ms, timed in a process of its own (see the docstring)."""
    images = osp.join(workdir, 'resized.npy')
    np.save(images, pixels)
    cmd = [sys.executable, OPENCV4_DNN, '--opencv4', args.opencv4, '--prototxt', prototxt,
           '--caffemodel', caffemodel, '--images', images, '--mean',
           *map(str, FACE_DETECTOR_MEAN), '--net-outputs', *detection_inputs(prototxt),
           '--threads', str(args.threads), '--repeats', str(args.repeats),
           '--warmup', str(args.warmup)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f'OpenCV 4 worker failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    common.begin('Converted Caffe SSD (res10 face detector) vs OpenCV 4.x DNN, CPU, batch 1',
                 'cpu', __file__, argv)  # fmt: skip
    prototxt, caffemodel = (str(p) for p in face_detector_files())
    with tempfile.TemporaryDirectory(prefix='bench_caffe_') as workdir:
        config, checkpoint = convert(prototxt, caffemodel, osp.join(workdir, 'face'),
                                     classes=['face'], mean=FACE_DETECTOR_MEAN)  # fmt: skip
        detector = Detector('converted', Config.fromfile(str(config)), 'cpu', str(checkpoint))
        if args.images:
            import mmcv

            images = [mmcv.imread(path) for path in args.images]
        else:
            images = random_images(args.num_images)
        data = [detector.pixels([image]) for image in images]
        source = 'files' if args.images else 'synthetic 640x480'
        size = tuple(data[0]['inputs'][0].shape[1:])
        print(f'images: {len(images)} ({source}), resized to {size}; threads: {args.threads}')
        ours = time_ours(detector, data, args.repeats, args.warmup)
        peer = None
        if args.opencv4:
            pixels = np.stack([d['inputs'][0].permute(1, 2, 0).numpy() for d in data])
            peer = time_opencv(args, prototxt, caffemodel, pixels, workdir)
    rows = [['ours (converted, PyTorch)', *(common.ms(ours[s]) for s in STAGES),
             f'{ours["dets"]:.1f}']]  # fmt: skip
    if peer is None:
        print('OpenCV 4.x DNN: not run (give --opencv4 DIR)')
    else:
        # full - net: below the timing noise it says nothing (no ratio then)
        post = peer['full'] - peer['net'] if peer['full'] > peer['net'] else None
        rows.append([f'OpenCV {peer["version"]} DNN ({peer["threads"]} threads)',
                     common.ms(peer['net']), '~' + common.ms(post), common.ms(peer['full']),
                     f'{peer["dets"]:.1f}'])  # fmt: skip
        rows.append(['ratio OpenCV / ours', common.ratio(peer['net'], ours['net']),
                     common.ratio(post, ours['post']), common.ratio(peer['full'], ours['full']),
                     ''])  # fmt: skip
    common.print_table('Per-image milliseconds (best of the timed rounds)',
                       ['implementation', 'net', 'post', 'full', 'dets / image'], rows)  # fmt: skip


if __name__ == '__main__':
    main()
