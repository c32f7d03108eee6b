"""The exported graph in each CPU runtime (ONNX Runtime, OpenVINO, OpenCV) against PyTorch.

The tiny detector of test_onnx_export.py (many detections of every class with distinct scores,
both NMS caps binding): each runtime's detections are ``model.predict``'s, label by label. The
tolerances are ONNX Runtime's in test_onnx_export.py: float32 convolutions summed in another
order move a softmax score by ~1e-6 and a decoded box coordinate (128 px, exp of an offset) by
~1e-4 px.
"""

import numpy as np
import pytest
from test_onnx_export import SIZE, images, predict, tiny_ssd

from ssd_plugin.deploy import export_onnx
from ssd_plugin.deploy.runtimes import RUNTIMES, load_runtime, runtime_version


@pytest.fixture(scope='module')
def model():
    return tiny_ssd()


@pytest.fixture(scope='module')
def dets_graph(model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp('dets') / 'dets.onnx')
    export_onnx(model, path, (SIZE, SIZE), with_nms=True, classes=('a', 'b', 'c'))
    return path


def assert_same_detections(dets, labels, results):
    for i, result in enumerate(results):
        num = len(result.scores)
        assert num >= 3 and (labels[i, :num] >= 0).all() and (labels[i, num:] == -1).all()
        np.testing.assert_array_equal(labels[i, :num], result.labels.numpy())
        np.testing.assert_allclose(dets[i, :num, 4], result.scores.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(dets[i, :num, :4], result.bboxes.numpy(), rtol=0, atol=1e-3)


@pytest.mark.parametrize('runtime', RUNTIMES)
def test_each_runtime_gives_pytorchs_detections(model, dets_graph, runtime):
    img = images(3)
    dets, labels = load_runtime(dets_graph, runtime)(img.numpy())
    assert dets.shape == (3, 30, 5) and labels.shape == (3, 30)
    assert_same_detections(dets, labels, predict(model, img))
    assert runtime_version(runtime) != '-'


def test_openvino_reads_the_graph_without_a_box_size_filter(tmp_path):
    """``min_bbox_size=-1`` (torchvision's configs): the post-processing then takes the
    decode's background-dropping slice of the softmax as it is, a pattern OpenVINO 2026.4
    refused as a class-channel gather (``GatherElements`` shapes); the graph reads and gives
    PyTorch's detections."""
    model = tiny_ssd(min_bbox_size=-1)
    path = str(tmp_path / 'no_size_filter.onnx')
    export_onnx(model, path, (SIZE, SIZE), with_nms=True, classes=('a', 'b', 'c'))
    img = images(2)
    assert_same_detections(*load_runtime(path, 'openvino')(img.numpy()), predict(model, img))


def test_clear_errors(dets_graph, tmp_path):
    with pytest.raises(ValueError, match='runtime must be one of onnxruntime, openvino, opencv'):
        load_runtime(dets_graph, 'tensorrt')
    with pytest.raises(ValueError, match=r'opencv reads .onnx files'):
        load_runtime(str(tmp_path / 'model.xml'), 'opencv')
    with pytest.raises(FileNotFoundError, match='model file not found'):
        load_runtime(str(tmp_path / 'none.onnx'), 'openvino')
