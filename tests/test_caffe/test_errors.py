"""The converter's refusals name the layer, its type or the file."""

import numpy as np
import pytest
import torch
from tiny_ssd import prototxt_text, random_blobs, write_caffemodel, write_net

from ssd_plugin.caffe.converter import CaffeFormatError, convert

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


def _convert(tmp_path, prototxt, caffemodel):
    return convert(prototxt, caffemodel, tmp_path / 'out', log=lambda line: None)


def test_unsupported_layer_names_layer_and_type(tmp_path):
    lrn = 'layer { name: "conv1_lrn" type: "LRN" bottom: "conv1" top: "conv1" }'
    prototxt, caffemodel, _ = write_net(tmp_path, extra_backbone=lrn)
    with pytest.raises(CaffeFormatError, match=r"'conv1_lrn' has type 'LRN'"):
        _convert(tmp_path, prototxt, caffemodel)


def test_share_location_false(tmp_path):
    prototxt, caffemodel, _ = write_net(tmp_path, share_location=False)
    with pytest.raises(CaffeFormatError, match='share_location: false'):
        _convert(tmp_path, prototxt, caffemodel)


def test_v1_net(tmp_path):
    path = tmp_path / 'v1.prototxt'
    path.write_text('name: "old" layers { name: "conv1" type: CONVOLUTION bottom: "data" }')
    with pytest.raises(CaffeFormatError, match=r'old-format \(V1'):
        _convert(tmp_path, str(path), str(path))


def test_missing_blob_names_layer_and_file(tmp_path):
    prototxt = tmp_path / 'deploy.prototxt'
    prototxt.write_text(prototxt_text())
    blobs = random_blobs()
    del blobs['conv4b']
    caffemodel = str(tmp_path / 'nofour.caffemodel')
    write_caffemodel(caffemodel, str(prototxt), blobs)
    with pytest.raises(CaffeFormatError, match=r"nofour\.caffemodel.*'conv4b' has 0 blobs"):
        _convert(tmp_path, str(prototxt), caffemodel)


def test_wrong_shape_names_layer_and_file(tmp_path):
    prototxt = tmp_path / 'deploy.prototxt'
    prototxt.write_text(prototxt_text())
    blobs = random_blobs()
    blobs['l1_mbox_conf'][0] = np.zeros((36, 24, 3, 3), np.float32)
    caffemodel = str(tmp_path / 'shape.caffemodel')
    write_caffemodel(caffemodel, str(prototxt), blobs)
    with pytest.raises(
        CaffeFormatError, match=r"shape\.caffemodel.*'l1_mbox_conf' weight.*\[36, 24, 1, 1\]"
    ):
        _convert(tmp_path, str(prototxt), caffemodel)


def test_truncated_caffemodel_names_the_file(tmp_path):
    prototxt, caffemodel, _ = write_net(tmp_path)
    with open(caffemodel, 'rb') as f:
        data = f.read()
    cut = tmp_path / 'cut.caffemodel'
    cut.write_bytes(data[: len(data) // 2 + 3])
    with pytest.raises(CaffeFormatError, match=r'cut\.caffemodel'):
        _convert(tmp_path, prototxt, str(cut))


def test_legacy_blob_dims_convert(tmp_path):
    """Pre-2015 blobs (num/channels/height/width, 1x1x1xN biases) give the blobs' own values."""
    prototxt = tmp_path / 'deploy.prototxt'
    prototxt.write_text(prototxt_text())
    caffemodel = str(tmp_path / 'legacy.caffemodel')
    blobs = random_blobs()
    write_caffemodel(caffemodel, str(prototxt), blobs, legacy={'conv1', 'conv1_bn'})
    _, checkpoint = _convert(tmp_path, str(prototxt), caffemodel)
    state = torch.load(checkpoint, weights_only=True)['state_dict']
    key = 'backbone.layers.conv1'
    np.testing.assert_array_equal(state[f'{key}.weight'].numpy(), blobs['conv1'][0])
    np.testing.assert_array_equal(state[f'{key}.bias'].numpy(), blobs['conv1'][1])
    # BatchNorm's running sums over its scale factor (2: tiny_ssd.random_blobs), exact in fp32
    assert blobs['conv1_bn'][2].tolist() == [2.0]
    np.testing.assert_array_equal(state[f'{key}_bn.running_mean'].numpy(), blobs['conv1_bn'][0] / 2)
    np.testing.assert_array_equal(state[f'{key}_bn.running_var'].numpy(), blobs['conv1_bn'][1] / 2)


def test_classes_count_checked(tmp_path):
    prototxt, caffemodel, _ = write_net(tmp_path)
    with pytest.raises(ValueError, match='3 names given, the model has 2'):
        convert(prototxt, caffemodel, tmp_path / 'o', classes=['a', 'b', 'c'], log=print)
