"""tools/cpu_kind/run_as.sh: a smaller CPU kind's kernels for every library, natively run.

The probe multiplies uint8 255s by int8 127s in ONNX Runtime (MatMulInteger, K = 64). x86
without VNNI sums byte-product pairs in saturating int16 (``vpmaddubsw``): 2 * 255 * 127 =
64770 clamps to 32767 per pair, so the row sums to 32767 * K / 2; VNNI sums in int32 and gives
the exact 255 * 127 * K. Which one comes back shows which kernel ONNX Runtime picked.
"""

import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
from tool_runner import REPO, TOOLS

from ssd_plugin.utils.cpu_features import cpu_flags, hardware_flags

RUN_AS = osp.join(TOOLS, 'cpu_kind', 'run_as.sh')
K = 64
SATURATED, EXACT = 32767 * K // 2, 255 * 127 * K
PROBE = f"""
import json, numpy as np, onnxruntime as ort, openvino as ov, torch
from onnx import TensorProto, helper, numpy_helper
from ssd_plugin.deploy.quantize import cpu_int8_target
from ssd_plugin.utils import cpu_flags
weights = numpy_helper.from_array(np.full(({K}, 1), 127, np.int8), 'w')
graph = helper.make_graph(
    [helper.make_node('MatMulInteger', ['a', 'w'], ['y'])], 'probe',
    [helper.make_tensor_value_info('a', TensorProto.UINT8, [1, {K}])],
    [helper.make_tensor_value_info('y', TensorProto.INT32, [1, 1])], [weights])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
(y,) = session.run(None, {{'a': np.full((1, {K}), 255, np.uint8)}})
print(json.dumps(dict(
    matmul=int(y[0, 0]), aten=torch.backends.cpu.get_cpu_capability(),
    openvino=ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'),
    flags=sorted(cpu_flags()), int8_target=cpu_int8_target())))
"""
FLAGS = hardware_flags()
needs_faulting = pytest.mark.skipif(
    'cpuid_fault' not in FLAGS or shutil.which(os.environ.get('CC', 'cc')) is None,
    reason='masking CPUID needs CPUID faulting (the cpuid_fault flag, x86 Linux) and a C compiler',
)


def run_as(kind, *command, env=None, check=True):
    full_env = dict(os.environ, PYTHONPATH=REPO, **(env or {}))
    proc = subprocess.run(['bash', RUN_AS, kind, *command], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def probe(*prefix):
    command = [*prefix, sys.executable, '-X', 'faulthandler', '-c', PROBE]
    proc = run_as(*command) if prefix else subprocess.run(
        command, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
        timeout=300, check=True)  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@needs_faulting
def test_avx2_kind_reaches_onnx_runtime_openvino_torch_and_the_int8_target():
    seen, stderr = probe('avx2')
    assert 'CPU kind avx2 (CPUID masked for every library' in stderr
    assert seen['matmul'] == SATURATED  # ONNX Runtime's kernel without VNNI
    assert seen['aten'] == 'AVX2'
    assert 'BF16' not in seen['openvino'] and 'FP32' in seen['openvino']
    assert not any(f.startswith(('avx512', 'amx', 'avx_vnni')) for f in seen['flags'])
    assert 'avx2' in seen['flags'] and seen['int8_target'] == 'avx2'


@needs_faulting
def test_avx512_core_kind_keeps_avx512_but_not_vnni():
    seen, _ = probe('avx512_core')
    assert seen['matmul'] == SATURATED  # AVX512BW's vpmaddubsw saturates like AVX2's
    assert seen['aten'] == ('AVX512' if 'avx512bw' in FLAGS else 'AVX2')
    assert 'avx512_vnni' not in seen['flags'] and seen['int8_target'] == 'avx2'


@pytest.mark.skipif(not cpu_flags() & {'avx512_vnni', 'avx_vnni'}, reason='needs a VNNI CPU')
def test_the_probe_tells_the_kernels_apart_on_a_vnni_cpu():
    seen, _ = probe()
    assert seen['matmul'] == EXACT and seen['int8_target'] in ('vnni', 'amx')


@needs_faulting
@pytest.mark.parametrize('faulthandler', [False, True])
def test_a_real_segfault_still_kills_the_program(faulthandler):
    """CPUID faults are handled; any other SIGSEGV reaches the program's handler or kills it."""
    code = 'import ctypes; ctypes.string_at(0)'
    flags = ['-X', 'faulthandler'] if faulthandler else []
    proc = run_as('avx2', sys.executable, *flags, '-c', code, check=False)
    assert proc.returncode == -11, proc.stderr
    assert ('Fatal Python error: Segmentation fault' in proc.stderr) == faulthandler


def test_without_a_compiler_only_the_environment_caps_apply(tmp_path):
    copy = tmp_path / 'repo' / 'tools' / 'cpu_kind'
    shutil.copytree(osp.dirname(RUN_AS), copy)
    proc = subprocess.run(['bash', str(copy / 'run_as.sh'), 'avx2', 'env'], capture_output=True,
                          text=True, env=dict(os.environ, CC='false'), timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert 'no C compiler: only oneDNN and ATen capped' in proc.stderr
    env = dict(line.split('=', 1) for line in proc.stdout.splitlines() if '=' in line)
    assert env['ONEDNN_MAX_CPU_ISA'] == 'AVX2' and env['ATEN_CPU_CAPABILITY'] == 'avx2'
    assert 'cpuid_mask' not in env.get('LD_PRELOAD', '')
    assert run_as('avx3', 'true', check=False).returncode == 2  # unknown kinds are refused


@needs_faulting
def test_the_mask_survives_a_program_s_own_signal_setup():
    """A program that sets SIGSEGV back to its default with glibc's signal() (which bypasses
    sigaction()), and a thread with a small alternate signal stack (a CPUID fault must not be
    handled on it: its frame of AVX512 state does not fit), still reads the masked CPUID."""
    code = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.signal(11, ctypes.c_void_p(0))  # SIG_DFL, through signal()
small = ctypes.create_string_buffer(2048)  # MINSIGSTKSZ
class StackT(ctypes.Structure):
    _fields_ = [('sp', ctypes.c_void_p), ('flags', ctypes.c_int), ('size', ctypes.c_size_t)]
assert libc.sigaltstack(ctypes.byref(StackT(ctypes.addressof(small), 0, 2048)), None) == 0
import torch  # cpuinfo reads CPUID now, after both
print(torch.backends.cpu.get_cpu_capability())
"""
    proc = run_as('avx2', sys.executable, '-c', code)
    assert proc.stdout.split() == ['AVX2']
