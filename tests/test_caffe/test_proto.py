"""Caffe schema and readers: field numbers on the wire, unknown fields, broken files."""

import struct

import pytest
from google.protobuf import text_format

from ssd_plugin.caffe.converter.proto import (
    BlobProto,
    CaffeFormatError,
    LayerParameter,
    NetParameter,
    parse_prototxt,
    read_caffemodel,
    read_labelmap,
    read_prototxt,
)


def _varint_key(number: int, wire_type: int) -> bytes:
    key, out = (number << 3) | wire_type, b''
    while key > 0x7F:
        out += bytes([(key & 0x7F) | 0x80])
        key >>= 7
    return out + bytes([key])


@pytest.mark.parametrize(
    'text, number',
    [
        ('name: "a"', 1),
        ('type: "PriorBox"', 2),
        ('bottom: "x"', 3),
        ('top: "x"', 4),
        ('convolution_param { num_output: 1 }', 106),
        ('pooling_param { pool: AVE }', 121),
        ('batch_norm_param { eps: 0.1 }', 139),
        ('scale_param { bias_term: true }', 142),
        ('prior_box_param { min_size: 30 }', 203),
        ('detection_output_param { num_classes: 2 }', 204),
        ('norm_param { across_spatial: false }', 206),
        ('permute_param { order: 0 }', 202),
    ],
)
def test_layer_field_numbers(text, number):
    """Caffe's LayerParameter field numbers (what a caffemodel's bytes carry)."""
    layer = text_format.Parse(text, LayerParameter())
    data = layer.SerializeToString()
    wire_type = 2 if '{' in text or '"' in text else 0
    assert data.startswith(_varint_key(number, wire_type))


def test_blob_legacy_and_packed_data_round_trip():
    """The bytes a legacy blob serialises to, assembled by hand from Caffe's field numbers: the
    num/channels/height/width varints, then ``data`` packed (one key, a length, raw floats)."""
    values = [1.0, -2.5, 3.25]
    blob = BlobProto(num=1, channels=1, height=1, width=3, data=values)
    data = blob.SerializeToString()
    dims = _varint_key(1, 0) + b'\x01' + _varint_key(2, 0) + b'\x01'
    dims += _varint_key(3, 0) + b'\x01' + _varint_key(4, 0) + b'\x03'
    packed = _varint_key(5, 2) + bytes([4 * len(values)]) + struct.pack('<3f', *values)
    assert data == dims + packed
    back = BlobProto.FromString(data)
    assert (back.num, back.channels, back.height, back.width) == (1, 1, 1, 3)
    assert list(back.data) == values and back == blob
    # an unpacked writer (one key per value, wire type 5) is read as well
    unpacked = b''.join(_varint_key(5, 5) + struct.pack('<f', v) for v in values)
    assert list(BlobProto.FromString(unpacked).data) == values


def test_prototxt_crlf_and_harmless_unknown_fields(tmp_path):
    path = tmp_path / 'deploy.prototxt'
    path.write_bytes(
        b'name: "n"\r\ninput: "data"\r\nlayer {\r\n  name: "c"\r\n  type: "Convolution"\r\n'
        b'  fancy_param { x: 1 }\r\n  convolution_param { num_output: 2 kernel_size: 1 }\r\n}\r\n'
    )
    with pytest.warns(UserWarning, match=r'LayerParameter\.fancy_param \(line 6\)$'):
        net = read_prototxt(path)  # fancy_param's own field x is not listed again
    assert net.layer[0].convolution_param.num_output == 2


def test_unknown_option_of_a_read_parameter_is_an_error():
    text = 'layer { name: "p" pooling_param { pool: MAX round_mode: FLOOR } }'
    with pytest.raises(CaffeFormatError, match=r'PoolingParameter\.round_mode \(line 1\)'):
        parse_prototxt(text, NetParameter(), 'x.prototxt')


def test_opencv_clip_and_save_output_param_parse():
    text = """layer { name: "d" type: "DetectionOutput" detection_output_param {
      num_classes: 2 clip: true save_output_param { output_directory: "/tmp/x" } } }"""
    net = parse_prototxt(text, NetParameter())
    assert net.layer[0].detection_output_param.clip


def test_malformed_prototxt_names_the_file(tmp_path):
    path = tmp_path / 'broken.prototxt'
    path.write_text('layer { name: "a" ')
    with pytest.raises(CaffeFormatError, match='broken.prototxt'):
        read_prototxt(path)


def test_truncated_caffemodel_names_the_file(tmp_path):
    net = NetParameter()
    layer = net.layer.add(name='conv', type='Convolution')
    layer.blobs.add(data=[0.5] * 64)
    data = net.SerializeToString()
    path = tmp_path / 'cut.caffemodel'
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(CaffeFormatError, match='cut.caffemodel'):
        read_caffemodel(path)
    with pytest.raises(FileNotFoundError, match='missing.caffemodel'):
        read_caffemodel(tmp_path / 'missing.caffemodel')


def test_labelmap(tmp_path):
    path = tmp_path / 'labelmap.prototxt'
    path.write_text(
        'item { name: "none_of_the_above" label: 0 display_name: "background" }\n'
        'item { name: "face" label: 1 display_name: "Face \\"x\\"" }\n'
    )
    items = read_labelmap(path).item
    assert [(i.label, i.display_name) for i in items] == [(0, 'background'), (1, 'Face "x"')]
