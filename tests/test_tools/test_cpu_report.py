"""tools/benchmarks/cpu_report.sh at tiny settings: the CPU's flags and load, then the tables.

No timing is checked (the machine is shared); the ONNX Runtime and OpenVINO rows of the same
script are checked by test_benchmarks.py (gpu_report.sh --device cpu --quick runs them).
"""

import os.path as osp
import sys

import pytest
import torch
from test_benchmarks import table
from tool_runner import TOOLS, run

from ssd_plugin.engine.amp import choose_amp

FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_int8', 'amx_bf16', 'avx_vnni')


def cpuinfo_flags() -> set:
    with open('/proc/cpuinfo') as f:
        line = next(line for line in f if line.startswith(('flags', 'Features')))
    return set(line.split(':', 1)[1].split())


@pytest.mark.skipif(not osp.isfile('/proc/cpuinfo'), reason='reads /proc/cpuinfo (Linux)')
def test_cpu_report_prints_the_flags_load_and_both_tables():
    out = run(['bash', osp.join(TOOLS, 'benchmarks', 'cpu_report.sh'), '--quick', '--repeats',
               '1', '--warmup', '0', '--no-onnx'], cwd=osp.dirname(TOOLS),
              env=dict(PYTHON=sys.executable), timeout=600)  # fmt: skip
    lines = out.splitlines()
    # the machine first, in this order: CPU, ISA flags, oneDNN cap, `uptime` (the load)
    assert lines[0].startswith('# CPU report') and lines[1].startswith('cpu: ')
    assert lines[2].startswith('ISA flags: ') and lines[3].startswith('oneDNN cap: ')
    assert lines[4].startswith('load: ') and 'load average' in lines[4]
    printed = set(lines[2].split(': ', 1)[1].split())
    assert {f for f in FLAGS if f in cpuinfo_flags()} <= printed <= cpuinfo_flags()
    assert 'load average before the run (1/5/15 min)' in out
    # the report's defaults give way to the options given (each named once in the command)
    command = next(line for line in lines if line.startswith('command: '))
    assert command.endswith('--device cpu --quick --repeats 1 --warmup 0 --no-onnx'), command
    _, rows = table(out, 'Inference (ms per batch')
    names = [r[2] for r in rows]
    native = choose_amp('cpu').dtype == torch.bfloat16
    assert names[0] == 'ours ssdlite_mobilenetv2_8xb24-600e_coco'
    assert any(name.endswith('bfloat16+cl') for name in names) == native  # where native only
    header, rows = table(out, 'Against the peers')
    assert header[-2:] == ['mmdet / this', 'torchvision / this']
    peers = {r[2]: r for r in rows}
    mmdet = next(r for name, r in peers.items() if name.startswith('mmdet '))
    tv = next(r for name, r in peers.items() if name.startswith('torchvision '))
    assert mmdet[-2] == '1.00x' and tv[-1] == '1.00x'  # each peer against itself
    assert all(r[-1] != '-' and r[-2] != '-' for r in rows)
