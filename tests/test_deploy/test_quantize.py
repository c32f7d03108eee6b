"""int8 quantisation with ONNX Runtime: the settings per target CPU, and graphs that hold on any.

ONNX Runtime's uint8 x int8 kernels on x86 CPUs without VNNI add each pair of byte products in a
saturating int16 (``vpmaddubsw``): ``|a0 w0 + a1 w1| <= 2 * 255 * max|w|``, which fits 32767 for
``max|w| <= 64`` only. The ``avx2`` target's 7-bit weights keep that bound, so its graph computes
the same integers on every CPU; these tests check the bound on the weights themselves (this
machine may have VNNI, where no saturation can be seen) and that ONNX Runtime's int8 kernels
compute what the quantised graph defines.
"""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from test_onnx_export import SIZE, images, tiny_ssd

from ssd_plugin.deploy import export_onnx
from ssd_plugin.deploy.quantize import (
    INT8_TARGETS,
    constants_as_initializers,
    cpu_int8_target,
    int8_settings,
    quantize_onnx,
)

INT16_MAX = 2**15 - 1
UINT8_MAX = 255


@pytest.mark.parametrize(
    'flags, target',
    [
        ({'avx2', 'avx512f', 'avx512_vnni', 'amx_int8', 'amx_tile'}, 'amx'),
        ({'avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16'}, 'vnni'),
        ({'avx2', 'avx_vnni'}, 'vnni'),
        ({'avx2', 'avx512f', 'avx512bw'}, 'avx2'),  # AVX512 without VNNI saturates too
        ({'avx2', 'fma'}, 'avx2'),
        (set(), 'avx2'),
    ],
)
def test_the_target_follows_the_cpu_flags(flags, target):
    assert cpu_int8_target(flags) == target


def test_settings_per_target():
    avx2, vnni, amx = (int8_settings(t) for t in ('avx2', 'vnni', 'amx'))
    assert avx2.reduce_range and not vnni.reduce_range and not amx.reduce_range
    assert (avx2.activation_type, avx2.weight_type) == ('uint8', 'int8')
    assert '7-bit' in avx2.describe() and '8-bit' in vnni.describe()
    assert 'saturat' in avx2.reason and avx2.per_channel and avx2.quant_format == 'qdq'
    assert int8_settings('auto').target == cpu_int8_target() in INT8_TARGETS
    assert not int8_settings('vnni', 'qoperator', per_channel=False).per_channel
    with pytest.raises(ValueError, match="int8 target must be 'auto' or one of"):
        int8_settings('avx512')
    with pytest.raises(ValueError, match='quant_format must be'):
        int8_settings('avx2', 'fp8')


@pytest.fixture(scope='module')
def raw_graph(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('raw') / 'raw.onnx')
    export_onnx(tiny_ssd(), path, (SIZE, SIZE))
    return path


def quantized(raw_graph, tmp_path, target):
    out = str(tmp_path / f'{target}.onnx')
    return quantize_onnx(raw_graph, out, [images(4).numpy()], int8_settings(target), note='test')


def conv_weights(path):
    """The int8 weights of every quantised convolution (QDQ: the initializer that a
    ``DequantizeLinear`` feeding a ``Conv``'s weight input dequantises)."""
    model = onnx.load(path)
    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    dequant = {node.output[0]: node for node in model.graph.node
               if node.op_type == 'DequantizeLinear'}  # fmt: skip
    return [inits[dequant[node.input[1]].input[0]] for node in model.graph.node
            if node.op_type == 'Conv' and node.input[1] in dequant]  # fmt: skip


@pytest.mark.parametrize('target', ['avx2', 'vnni'])
def test_avx2_weights_cannot_saturate_an_int16_pair_sum(raw_graph, tmp_path, target):
    path = quantized(raw_graph, tmp_path, target)
    weights = conv_weights(path)
    assert weights and all(w.dtype == np.int8 for w in weights)
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    fits = 2 * UINT8_MAX * largest <= INT16_MAX
    # avx2: 7-bit weights, the bound holds; vnni: the full 8 bits, which would overflow int16
    assert fits == (target == 'avx2'), largest
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    stored = json.loads(props['int8_settings'])
    assert stored['target'] == target and stored['reduce_range'] == (target == 'avx2')
    assert f'target {target}' in props['quantization'] and 'test' in props['quantization']


def run(path, inputs, optimized: bool):
    options = ort.SessionOptions()
    if not optimized:  # QDQ nodes run as written: dequantise, float32 Conv, quantise
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    return session.run(None, {'input': inputs})


def test_int8_kernels_compute_what_the_avx2_graph_defines(raw_graph, tmp_path):
    """The optimised session (int8 convolution kernels, exact int32 sums) against the same graph
    run node by node in float32 (``ORT_DISABLE_ALL``: no int8 kernel, so no saturation on any
    CPU). They differ only where float32's rounding of a sum lands on the other side of a
    requantisation half-step: one step of that activation, rare. A saturating kernel moves
    whole channels by many steps (a clamped pair loses up to 32640 - 32767 / 2 units)."""
    path = quantized(raw_graph, tmp_path, 'avx2')
    inputs = images(4).numpy()
    fast = run(path, inputs, optimized=True)
    reference = run(path, inputs, optimized=False)
    float32 = run(raw_graph, inputs, optimized=True)
    for out, ref, f32 in zip(fast, reference, float32):
        int8_error = np.abs(ref - f32).max()  # what quantising costs: the scale of a few steps
        assert int8_error > 0
        # rounding ties flip single steps: far below the quantisation error itself
        assert np.abs(out - ref).max() <= 0.25 * int8_error
        assert np.mean(np.abs(out - ref) > 1e-6) < 0.05


def test_constants_become_initializers_and_values_stay(raw_graph):
    model = onnx.load(raw_graph)
    before = run(raw_graph, images(1).numpy(), optimized=False)
    moved = constants_as_initializers(model)
    assert moved > 0 and not any(node.op_type == 'Constant' for node in model.graph.node)
    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    after = session.run(None, {'input': images(1).numpy()})
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_a_vnni_graph_warns_on_a_cpu_without_vnni(raw_graph, tmp_path, monkeypatch):
    from ssd_plugin.deploy import quantize, runtimes

    vnni, avx2 = (quantized(raw_graph, tmp_path, t) for t in ('vnni', 'avx2'))
    monkeypatch.setattr(quantize, 'cpu_int8_target', lambda flags=None: 'avx2')
    with pytest.warns(UserWarning, match='quantised for vnni CPUs .* --target avx2'):
        runtimes.load_runtime(vnni, 'onnxruntime')
    assert runtimes.int8_target_warning(avx2) is None  # holds everywhere
    assert runtimes.int8_target_warning(raw_graph) is None  # float32
    monkeypatch.setattr(quantize, 'cpu_int8_target', lambda flags=None: 'vnni')
    assert runtimes.int8_target_warning(vnni) is None
