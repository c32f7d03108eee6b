"""A tool's --help answers before torch, mmdet or ssd_plugin is imported.

Each tool parses its arguments with :mod:`ssd_plugin_cli` (standard library and mmengine's
``DictAction``) and imports the detection stack only afterwards, so ``--help`` and a mistyped
option answer at once. Checked on the real command, ``python TOOL --help``, by the modules
``python -X importtime`` reports as imported (never by timing it).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
#: Top-level packages whose import --help must not need.
HEAVY = ('torch', 'mmdet', 'mmcv', 'ssd_plugin', 'cv2')
_TOOLS = sorted(
    p.relative_to(REPO).as_posix()
    for folder in ('tools', 'tools/analysis', 'tools/deploy', 'tools/model_converters')
    for p in (REPO / folder).glob('*.py')
    if 'run_tool(main)' in p.read_text()
)


def imported_modules(importtime_log: str) -> set:
    """The modules ``python -X importtime`` reports (lines ``import time: us | us | name``)."""
    return {
        line.rsplit('|', 1)[1].strip()
        for line in importtime_log.splitlines()
        if line.startswith('import time:') and line.count('|') == 2
    }


def test_imported_modules_reads_importtimes_lines():
    log = (
        'import time: self [us] | cumulative | imported package\n'
        'import time:       120 |        120 |   _io\n'
        'import time:      9000 |      25000 |     torch.nn\n'
        'usage: train.py [-h]\n'
    )
    assert imported_modules(log) == {'imported package', '_io', 'torch.nn'}


@pytest.mark.parametrize('tool', _TOOLS)
def test_help_imports_no_detection_stack(tool):
    """--help answers, lists --debug (run_tool reads it) and imports no detection stack."""
    proc = subprocess.run(
        [sys.executable, '-X', 'importtime', str(REPO / tool), '--help'],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),  # this checkout's ssd_plugin_cli
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'usage:' in proc.stdout and 'SSD_PLUGIN_DEBUG=1' in proc.stdout
    modules = imported_modules(proc.stderr)
    assert 'ssd_plugin_cli.errors' in modules  # the log is read right: the front door is there
    heavy = sorted(m for m in modules if m.split('.')[0] in HEAVY)
    assert not heavy, f'{tool} --help imports {heavy[:10]}'
