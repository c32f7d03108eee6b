"""``import ssd_plugin`` registers the Caffe components and leaves the offline converter alone."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def test_import_registers_the_runtime_without_the_converter():
    """In a fresh process: the three components are registered, no converter module (and so no
    protobuf message class) is imported."""
    code = (
        'import sys\n'
        'import ssd_plugin\n'
        'from mmdet.registry import MODELS, TASK_UTILS\n'
        "assert MODELS.get('CaffeNet') and MODELS.get('CaffeMultiBoxHead')\n"
        "assert TASK_UTILS.get('CaffeCenterSizeCoder')\n"
        "loaded = [m for m in sys.modules if m.startswith('ssd_plugin.caffe.converter')]\n"
        'assert not loaded, loaded\n'
    )
    subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True, timeout=300)
