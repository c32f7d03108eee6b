"""Random-weight caffemodels for a deploy prototxt, bit-exact for a given seed.

Shared by ``tests/data/caffe/make_references.py`` (which runs OpenCV 4.x DNN on them) and the
parity tests (which write the same file again into a temporary directory, so the ~100 MB VGG16
weights are never stored). The weights are drawn so activations keep roughly unit scale through
the net (He-scaled convolutions, BatchNorm and Scale near identity), loc outputs stay small and
conf logits spread enough that the detections are not all near a threshold. Channel counts are
followed through the prototxt here, independently of the converter's own shape inference.

Blob layouts are Caffe's: Convolution ``[out, in / group, kh, kw]`` (+ bias ``[out]``),
BatchNorm ``[mean, var, scale_factor]`` (statistics stored multiplied by the factor), Scale
``[gamma, beta?]``, Normalize ``[C]`` (``[1]`` when channel_shared: Caffe's blob has no axes,
which OpenCV cannot read). With ``legacy_dims`` the blobs of Convolution, BatchNorm and Scale use
the old ``num/channels/height/width`` fields (biases ``1x1x1xN``), as pre-2015 files do.
"""

import hashlib
from typing import Dict

import numpy as np

from ssd_plugin.caffe.converter.proto import read_prototxt

__all__ = ['random_caffemodel', 'write_random_caffemodel']


def _blob(layer, array: np.ndarray, legacy_dims: bool) -> None:
    blob = layer.blobs.add()
    if legacy_dims:
        dims = [1] * (4 - array.ndim) + list(array.shape)
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(array.shape)
    blob.data.extend(array.astype(np.float32).ravel().tolist())


def _input_channels(net) -> Dict[str, int]:
    channels = {}
    for i, name in enumerate(net.input):
        dims = net.input_shape[i].dim if len(net.input_shape) > i else net.input_dim[4 * i :]
        channels[name] = int(dims[1])
    for layer in net.layer:
        if layer.type == 'Input':
            for top, shape in zip(layer.top, layer.input_param.shape):
                channels[top] = int(shape.dim[1])
    return channels


def random_caffemodel(
    prototxt: str,
    seed: int,
    input_scale: float = 1.0,
    conf_gain: float = 1.0,
    loc_gain: float = 0.5,
    legacy_dims: bool = False,
):
    """The deploy net of ``prototxt`` as a ``NetParameter`` holding random blobs.

    Args:
        prototxt: deploy prototxt path.
        seed: seed of the numpy generator; the same seed gives the same bytes.
        input_scale: typical magnitude of the preprocessed input (e.g. 60 for mean-subtracted
            0-255 pixels), so the first convolution brings activations to unit scale.
        conf_gain: scale of the ``*_mbox_conf`` weights (logit spread).
        loc_gain: scale of the ``*_mbox_loc`` weights (box offsets).
        legacy_dims: write Convolution/BatchNorm/Scale blob sizes in the legacy fields.

    Returns:
        The ``NetParameter`` (layers as in the prototxt, with ``blobs``).
    """
    rng = np.random.default_rng(seed)
    net = read_prototxt(prototxt)
    channels = _input_channels(net)
    inputs = set(channels)
    for layer in net.layer:
        if layer.type == 'Input':
            continue
        bottom_c = [channels.get(b) for b in layer.bottom]
        c = bottom_c[0] if bottom_c else None
        if layer.type == 'Convolution':
            p = layer.convolution_param
            out, group = p.num_output, p.group
            kh = kw = p.kernel_size[0] if p.kernel_size else None
            if p.HasField('kernel_h'):
                kh, kw = p.kernel_h, p.kernel_w
            fan_in = c // group * kh * kw
            head = '_mbox_loc' in layer.name or '_mbox_conf' in layer.name
            if head:
                std = (loc_gain if '_mbox_loc' in layer.name else conf_gain) / np.sqrt(fan_in)
            else:
                std = np.sqrt(2.0 / fan_in) / (input_scale if layer.bottom[0] in inputs else 1.0)
            weight = rng.normal(0, std, (out, c // group, kh, kw))
            if head:
                # zero-mean filters: outputs follow the features' variation over locations rather
                # than their (ReLU-positive) mean, which would favour one class everywhere
                weight -= weight.mean(axis=(1, 2, 3), keepdims=True)
            _blob(layer, weight, legacy_dims)
            if p.bias_term:
                _blob(layer, rng.normal(0, 0.05, out), legacy_dims)
            c = out
        elif layer.type == 'BatchNorm':
            factor = rng.uniform(0.5, 1000.0)  # Caffe's moving-average factor (res10: 999.98)
            mean, var = rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)
            _blob(layer, mean * factor, legacy_dims)
            _blob(layer, var * factor, legacy_dims)
            _blob(layer, np.array([factor]), legacy_dims)
        elif layer.type == 'Scale':
            _blob(layer, rng.uniform(0.5, 1.5, c), legacy_dims)
            if layer.scale_param.bias_term:
                _blob(layer, rng.normal(0, 0.1, c), legacy_dims)
        elif layer.type == 'Normalize':
            p = layer.norm_param
            value = p.scale_filler.value if p.HasField('scale_filler') else 1.0
            if p.channel_shared:
                # Caffe's blob has no axes; 1x1x1x1 legacy dims (or shape [1]) is what OpenCV reads
                _blob(layer, value * rng.uniform(0.8, 1.2, 1), False)
            else:
                _blob(layer, value * rng.uniform(0.8, 1.2, c), False)
        elif layer.type == 'Concat':
            axis = layer.concat_param.axis if layer.HasField('concat_param') else 1
            c = sum(bottom_c) if axis == 1 and None not in bottom_c else None
        for top in layer.top:
            channels[top] = c
    return net


def write_random_caffemodel(prototxt: str, path: str, seed: int, **options) -> str:
    """Write :func:`random_caffemodel` (``options``: its keyword arguments) to ``path``.

    Returns:
        The file's sha1, which the references record so a test can tell it wrote the same file.
    """
    data = random_caffemodel(prototxt, seed, **options).SerializeToString()
    with open(path, 'wb') as f:
        f.write(data)
    return hashlib.sha1(data).hexdigest()
