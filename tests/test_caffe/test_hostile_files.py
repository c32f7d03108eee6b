"""Each class of hostile or broken Caffe file is refused before anything is built, by name.

One test per failure the held-out check found: a numeric field out of its range (stride 0,
group 0, a dilation or pooling window larger than the input, a PriorBox size or ratio not above
0), a cycle in the layer graph, a net too large for the memory limit (huge ``num_output``, a
huge input), messages nested deeper than any Caffe net, and a large file of repeated layers.
Every message names the file, the layer and the field.
"""

import re

import numpy as np
import pytest
from tiny_ssd import blob_shapes, prototxt_text, random_blobs, write_caffemodel, write_net

from ssd_plugin.caffe.converter import CaffeFormatError, convert
from ssd_plugin.caffe.converter.proto import read_caffemodel, read_prototxt

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')

CONV1 = 'num_output: 8 pad: 1 kernel_size: 3 stride: 2 }'


def _mutated(tmp_path, old: str, new: str, count: int = 1, **kwargs):
    """The tiny net with ``old`` replaced by ``new`` in its prototxt; its intact caffemodel."""
    prototxt, caffemodel, _ = write_net(tmp_path, **kwargs)
    with open(prototxt) as f:
        text = f.read()
    assert text.count(old) >= count, old
    with open(prototxt, 'w') as f:
        f.write(text.replace(old, new, count))
    return prototxt, caffemodel


def _refusal(tmp_path, prototxt, caffemodel, **kwargs) -> str:
    with pytest.raises(CaffeFormatError) as info:
        convert(prototxt, caffemodel, tmp_path / 'out', log=lambda line: None, **kwargs)
    assert not (tmp_path / 'out').exists()  # refused before anything was written
    return str(info.value)


def _names(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, (part, message)


@pytest.mark.parametrize(
    'old, new, layer, field',
    [
        (CONV1, CONV1.replace('stride: 2', 'stride: 0'), 'conv1', 'convolution_param.stride'),
        ('group: 8', 'group: 0', 'conv2', 'convolution_param.group'),
        ('group: 8', 'group: 3', 'conv2', 'convolution_param.group'),  # 3 does not divide 8
        ('dilation: 1', 'dilation: 100000', 'conv4b', 'convolution_param.dilation'),
        (CONV1, CONV1.replace('kernel_size: 3', 'kernel_size: 0'), 'conv1', 'kernel_size'),
        (CONV1, CONV1.replace('num_output: 8', 'num_output: 0'), 'conv1', 'num_output'),
        ('pool: MAX kernel_size: 3', 'pool: MAX kernel_size: 500', 'pool1', 'kernel_size'),
        (
            'pool: MAX kernel_size: 3 stride: 2',
            'pool: MAX kernel_size: 3 stride: 0',
            'pool1',
            'pooling_param.stride',
        ),  # fmt: skip
        (
            'pool: MAX kernel_size: 3 stride: 2',
            'pool: MAX kernel_size: 3 stride: 2 pad: 2',
            'pool1',
            'pooling_param.pad',
        ),  # fmt: skip
        ('min_size: 8', 'min_size: -8', 'l0_mbox_priorbox', 'prior_box_param.min_size'),
        ('aspect_ratio: 2', 'aspect_ratio: 0', 'l0_mbox_priorbox', 'prior_box_param.aspect_ratio'),
        ('max_size: 16', 'max_size: 4', 'l0_mbox_priorbox', 'prior_box_param.max_size'),
        ('variance: 0.2', 'variance: nan', 'l0_mbox_priorbox', 'prior_box_param.variance'),
        ('step: 4', 'step: 0', 'l0_mbox_priorbox', 'prior_box_param.step'),
        ('eps: 0.001', 'eps: -1', 'conv1_bn', 'batch_norm_param.eps'),
        ('nms_threshold: 0.45', 'nms_threshold: 7', 'detection_out', 'nms_threshold'),
    ],
)
def test_a_field_out_of_range_names_file_layer_and_field(tmp_path, old, new, layer, field):
    prototxt, caffemodel = _mutated(tmp_path, old, new)
    message = _refusal(tmp_path, prototxt, caffemodel)
    _names(message, repr(prototxt), f'layer {layer!r}', field)


def test_the_kernel_must_fit_the_input(tmp_path):
    """A 500-pixel pooling window on pool1's 20-pixel input: the sizes are in the message."""
    prototxt, caffemodel = _mutated(
        tmp_path, 'pool: MAX kernel_size: 3', 'pool: MAX kernel_size: 500'
    )
    message = _refusal(tmp_path, prototxt, caffemodel)
    # conv1 (3x3, stride 2, pad 1) turns the 40-pixel input into (40 + 2 - 3) // 2 + 1 = 20
    _names(message, '500 is larger than its 20-pixel input padded by 0')


def test_a_cycle_in_the_layer_graph(tmp_path):
    """``loop`` reads ``res``, which is computed from conv1, which ``loop`` writes."""
    loop = 'layer { name: "loop" type: "ReLU" bottom: "res" top: "conv1" }'
    prototxt, caffemodel, _ = write_net(tmp_path, extra_backbone=loop)
    message = _refusal(tmp_path, prototxt, caffemodel)
    _names(message, repr(prototxt), "layer 'loop' (ReLU)", 'bottom', "['res']")


def test_duplicate_layer_names(tmp_path):
    twin = 'layer { name: "conv1" type: "ReLU" bottom: "conv1" top: "conv1" }'
    prototxt, caffemodel, _ = write_net(tmp_path, extra_backbone=twin)
    message = _refusal(tmp_path, prototxt, caffemodel)
    _names(message, repr(prototxt), "layer 'conv1'", 'name', 'used twice')


@pytest.mark.parametrize(
    'old, new',
    [
        # a head predictor with 10^9 outputs: 10^9 x 8 x 3 x 3 weights
        (
            'num_output: 16 pad: 1 kernel_size: 3 stride: 1',
            'num_output: 1000000000 pad: 1 kernel_size: 3 stride: 1',
        ),  # fmt: skip
        ('dim: 40 dim: 40', 'dim: 100000 dim: 100000'),  # 3 x 10^10 input values
        # 10^6 channels out of conv4: its weights, its map and the heads reading them
        (
            'num_output: 16 pad: 1 kernel_size: 3 stride: 2',
            'num_output: 1000000 pad: 1 kernel_size: 3 stride: 2',
        ),  # fmt: skip
    ],
)
def test_a_net_too_large_is_refused_with_the_estimate(tmp_path, old, new):
    prototxt, caffemodel = _mutated(tmp_path, old, new)
    message = _refusal(tmp_path, prototxt, caffemodel)
    _names(message, repr(prototxt), 'parameters', 'activation values', 'GiB', '--max-memory-gib')
    needed = float(re.search(r'needs about ([\d.e+]+) GiB', message).group(1))
    assert needed > 2  # above the default limit, which it names
    _names(message, 'above the limit of 2 GiB')


def test_the_memory_limit_is_a_setting(tmp_path):
    """The tiny net needs well under a MiB; a limit below its estimate refuses it, by name."""
    prototxt, caffemodel, _ = write_net(tmp_path)
    message = _refusal(tmp_path, prototxt, caffemodel, max_memory_gib=1e-6)
    needed = float(re.search(r'needs about ([\d.e+-]+) GiB', message).group(1))
    assert 1e-6 < needed < 1 / 1024
    convert(prototxt, caffemodel, tmp_path / 'ok', log=lambda line: None, max_memory_gib=1.0)


def test_the_estimate_counts_every_parameter(tmp_path):
    """The parameters the estimate counts are the caffemodel's values (tiny_ssd's blob shapes),
    BatchNorm's scale factor aside (it folds into the statistics)."""
    prototxt, caffemodel, _ = write_net(tmp_path)
    lines = []
    convert(prototxt, caffemodel, tmp_path / 'out', log=lines.append)
    counted = int(re.search(r'\(([\d,]+) parameters', '\n'.join(lines)).group(1).replace(',', ''))
    expected = sum(
        int(np.prod(shape))
        for name, shapes in blob_shapes().items()
        for shape in (shapes[:2] if name == 'conv1_bn' else shapes)
    )
    assert counted == expected


def test_messages_nested_deeper_than_any_caffe_net(tmp_path):
    deep = tmp_path / 'deep.prototxt'
    deep.write_text('layer { name: "x" ' + 'fancy_param { ' * 100000 + '}' * 100001)
    with pytest.raises(CaffeFormatError, match=r'deep\.prototxt.*nested too deep'):
        read_prototxt(deep)
    # a caffemodel of 100000 nested groups (field 7, wire types 3 and 4)
    nested = tmp_path / 'deep.caffemodel'
    nested.write_bytes(b'\x3b' * 100000 + b'\x3c' * 100000)
    with pytest.raises(CaffeFormatError, match=r'deep\.caffemodel'):
        read_caffemodel(nested)


def test_a_large_file_of_repeated_layers_converts(tmp_path):
    """20000 layers outside the detector (1.4 MB): parsed and set aside, in linear time."""
    extra = ''.join(
        f'layer {{ name: "spare{i}" type: "ReLU" bottom: "data" top: "spare{i}" }}\n'
        for i in range(20000)
    )
    prototxt = tmp_path / 'deploy.prototxt'
    prototxt.write_text(prototxt_text() + extra)
    caffemodel = str(tmp_path / 'model.caffemodel')
    write_caffemodel(caffemodel, str(prototxt), random_blobs())
    config, _ = convert(str(prototxt), caffemodel, tmp_path / 'out', log=lambda line: None)
    assert 'spare' not in open(config).read()


def test_a_prototxt_larger_than_the_limit_is_refused_unparsed(tmp_path):
    """Parsing text takes about a second per 2 MiB: 9 MiB of repeated layers is refused at the
    default limit of 8 MiB, before a byte is parsed (it is not even valid text format)."""
    prototxt = tmp_path / 'deploy.prototxt'
    prototxt.write_text(prototxt_text() + 'layer { name: "x" }\n' * (9 * 2**20 // 20) + '{{{')
    message = _refusal(tmp_path, str(prototxt), str(prototxt))
    _names(
        message,
        repr(str(prototxt)),
        'MiB, more than the 8 MiB a Caffe text file is allowed',
        '--max-prototxt-mib 10',
    )
