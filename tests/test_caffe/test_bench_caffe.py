"""tools/benchmarks/bench_caffe.py runs (``--quick``; OpenCV 4 is not in the test environment).

Nothing is timed here: the run's header and table are checked, never a timing value.
"""

import os.path as osp
import sys

import pytest

from ssd_plugin.caffe.converter.face_detector_files import (
    FaceDetectorFileError,
    face_detector_files,
)

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'test_tools'))
from tool_runner import TOOLS, load_tool  # noqa: E402

sys.path.insert(0, osp.join(TOOLS, 'benchmarks'))  # the scripts import their modules by name


def test_quick_run_prints_header_and_table(capsys):
    try:
        face_detector_files()
    except FaceDetectorFileError as err:
        if 'could not download' not in str(err):
            raise
        pytest.skip(f'no network for the face detector files: {err}')
    load_tool('benchmarks/bench_caffe.py').main(['--quick', '--threads', '1'])
    out = capsys.readouterr().out
    assert 'command: python tools/benchmarks/bench_caffe.py --quick --threads 1' in out
    assert 'load average before the run' in out and 'versions: python' in out
    assert 'images: 2 (synthetic 640x480), resized to (300, 300); threads: 1' in out
    assert 'OpenCV 4.x DNN: not run (give --opencv4 DIR)' in out
    header = '| implementation | net | post | full | dets / image |'
    assert header in out and '| ours (converted, PyTorch) |' in out
