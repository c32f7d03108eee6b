"""tools/benchmarks/cpu_report.sh at tiny settings: the CPU's flags and load, then the tables.

No timing is checked (the machine is shared); the ONNX Runtime and OpenVINO rows of the same
script are checked by test_benchmarks.py (gpu_report.sh --device cpu --quick runs them).
"""

import os.path as osp
import shutil
import sys

import pytest
import torch
from test_benchmarks import table
from tool_runner import TOOLS, run

from ssd_plugin.engine.amp import choose_amp
from ssd_plugin.utils.cpu_features import hardware_flags

FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_int8', 'amx_bf16', 'avx_vnni')
MASKABLE = 'cpuid_fault' in hardware_flags() and shutil.which('cc') is not None


@pytest.mark.skipif(not osp.isfile('/proc/cpuinfo'), reason='reads /proc/cpuinfo (Linux)')
@pytest.mark.parametrize('kind', [
    None,  # this CPU
    pytest.param('avx2', marks=pytest.mark.skipif(not MASKABLE, reason='no CPUID faulting or cc')),
])  # fmt: skip
def test_cpu_report_prints_the_flags_load_and_both_tables(kind):
    report = ['bash', osp.join(TOOLS, 'benchmarks', 'cpu_report.sh'), '--quick', '--repeats', '1',
              '--warmup', '0', '--no-onnx']  # fmt: skip
    if kind:  # docs/cpu_runtimes.md: `bash tools/cpu_kind/run_as.sh avx2 bash ...cpu_report.sh`
        report = ['bash', osp.join(TOOLS, 'cpu_kind', 'run_as.sh'), kind, *report]
    out = run(report, cwd=osp.dirname(TOOLS), env=dict(PYTHON=sys.executable), timeout=600)
    lines = out.splitlines()
    # the machine first, in this order: CPU, ISA flags, oneDNN cap, `uptime` (the load)
    assert lines[0].startswith('# CPU report') and lines[1].startswith('cpu: ')
    assert lines[2].startswith('ISA flags: ') and lines[3].startswith('oneDNN cap: ')
    assert lines[4].startswith('load: ') and 'load average' in lines[4]
    printed, _, hidden = lines[2].split(': ', 1)[1].partition(' (CPUID masked to avx2')
    printed = set(printed.split())
    hardware = hardware_flags()
    seen = {f for f in hardware if not (kind and f.startswith(('avx512', 'amx', 'avx_vnni')))}
    assert {f for f in FLAGS if f in seen} <= printed <= seen
    assert bool(hidden) == bool(kind and hardware - seen), lines[2]  # what the mask hides
    assert 'load average before the run (1/5/15 min)' in out
    # the report's defaults give way to the options given (each named once in the command)
    command = next(line for line in lines if line.startswith('command: '))
    assert command.endswith('--device cpu --quick --repeats 1 --warmup 0 --no-onnx'), command
    _, rows = table(out, 'Inference (ms per batch')
    names = [r[2] for r in rows]
    native = not kind and choose_amp('cpu').dtype == torch.bfloat16  # never under an AVX2 mask
    assert names[0] == 'ours ssdlite_mobilenetv2_8xb24-600e_coco'
    assert any(name.endswith('bfloat16+cl') for name in names) == native  # where native only
    header, rows = table(out, 'Against the peers')
    assert header[-2:] == ['mmdet / this', 'torchvision / this']
    peers = {r[2]: r for r in rows}
    mmdet = next(r for name, r in peers.items() if name.startswith('mmdet '))
    tv = next(r for name, r in peers.items() if name.startswith('torchvision '))
    assert mmdet[-2] == '1.00x' and tv[-1] == '1.00x'  # each peer against itself
    assert all(r[-1] != '-' and r[-2] != '-' for r in rows)
