"""int8 for OpenVINO with NNCF: what is quantised, the metadata, and how close to float32.

Closeness is a signal-to-noise ratio of the raw head outputs against the float32 graph's.
Rounding to 8 bits costs about 6 dB per bit (~50 dB for one tensor at full range); the noise of
the ~20 quantised tensors between the input and the head adds up (-13 dB) and min-max ranges use
a fraction of the 256 levels (another 10-15 dB): above 20 dB is what 8-bit quantisation of this
network gives, where quantising the wrong tensor (the L2Norm's sum of squares: 12 dB measured) or
a broken scale (0 dB or less) falls well below. ONNX Runtime's int8 graph of the same network,
calibrated on the same images, measures ~25 dB.
"""

import numpy as np
import openvino as ov
import pytest
from test_onnx_export import SIZE, images, tiny_ssd

from ssd_plugin.deploy import export_onnx
from ssd_plugin.deploy.onnx_eval import graph_metadata
from ssd_plugin.deploy.openvino_quantize import FLOAT_TYPES, quantize_openvino
from ssd_plugin.deploy.quantize import int8_settings, quantize_onnx
from ssd_plugin.deploy.runtimes import load_runtime

MIN_SNR_DB = 20.0


@pytest.fixture(scope='module')
def graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp('ov')
    model = tiny_ssd()
    raw, dets = str(root / 'raw.onnx'), str(root / 'dets.onnx')
    export_onnx(model, raw, (SIZE, SIZE))
    export_onnx(model, dets, (SIZE, SIZE), with_nms=True, classes=('a', 'b', 'c'))
    return raw, dets


def snr_db(out: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).mean() / ((out - ref) ** 2).mean()))


def ops(xml: str):
    return ov.Core().read_model(xml).get_ordered_ops()


def test_the_network_is_int8_and_close_to_float32(graphs, tmp_path):
    raw, _ = graphs
    calibration = [images(4).numpy()]
    xml = quantize_openvino(raw, str(tmp_path / 'raw_int8.xml'), calibration, note='test')
    fake_quantized = {
        target.get_node().get_friendly_name(): target.get_node().get_type_name()
        for op in ops(xml)
        if op.get_type_name() == 'FakeQuantize'
        for target in op.output(0).get_target_inputs()
    }
    convs = [op for op in ops(xml) if op.get_type_name() == 'Convolution']
    # every convolution reads int8 activations (directly, or through the stem's max-pool)
    sources = {op.input_value(0).get_node().get_type_name() for op in convs}
    assert convs and sources <= {'FakeQuantize', 'MaxPool'}
    assert 'Convolution' in fake_quantized.values()
    assert not set(fake_quantized.values()) & set(FLOAT_TYPES)  # L2Norm stays float32

    inputs = images(4).numpy()
    reference = load_runtime(raw, 'onnxruntime')(inputs)
    int8 = load_runtime(xml, 'openvino')(inputs)
    # the avx2 target: its integer sums are the same on every CPU (a vnni graph's saturate on
    # CPUs without VNNI, and the yardstick would then measure the CPU, not the quantisation)
    ort_int8 = quantize_onnx(raw, str(tmp_path / 'ort_int8.onnx'), calibration,
                             int8_settings('avx2'))  # fmt: skip
    for out, ort_out, ref in zip(int8, load_runtime(ort_int8, 'onnxruntime')(inputs), reference):
        assert out.shape == ref.shape and np.abs(out - ref).max() > 0  # int8, not float32
        assert snr_db(out, ref) >= MIN_SNR_DB
        assert snr_db(ort_out, ref) >= MIN_SNR_DB  # the yardstick holds for ONNX Runtime's too


def test_post_processing_stays_float32_and_metadata_is_kept(graphs, tmp_path):
    _, dets = graphs
    xml = quantize_openvino(dets, str(tmp_path / 'dets_int8.xml'), [images(4).numpy()],
                            note='first 4 test images')  # fmt: skip
    nms = [op for op in ops(xml) if op.get_type_name() == 'NonMaxSuppression']
    assert len(nms) == 1
    assert all(nms[0].input_value(i).get_node().get_type_name() != 'FakeQuantize'
               for i in range(2))  # fmt: skip
    meta = graph_metadata(xml)
    assert meta['input_size'] == [SIZE, SIZE] and meta['classes'] == ['a', 'b', 'c']
    assert meta['outputs'] == ['dets', 'labels']
    assert 'NNCF' in meta['quantization'] and 'first 4 test images' in meta['quantization']
    out_dets, out_labels = load_runtime(xml, 'openvino')(images(2).numpy())
    assert out_dets.shape == (2, 30, 5) and out_labels.shape == (2, 30)
    valid = out_labels >= 0
    assert valid.any() and (out_dets[valid][:, 4] > 0.05).all()  # the config's score_thr


def test_clear_errors(graphs, tmp_path):
    raw, _ = graphs
    with pytest.raises(ValueError, match='OpenVINO IR .xml'):
        quantize_openvino(raw, str(tmp_path / 'x.onnx'), [images(1).numpy()])
    with pytest.raises(ValueError, match='no calibration images'):
        quantize_openvino(raw, str(tmp_path / 'x.xml'), [])
