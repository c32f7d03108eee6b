"""A caffemodel's blobs -> the converted detector's state dict.

Blobs are matched to the prototxt's layers by layer name, as Caffe's ``Net::CopyTrainedLayersFrom``
does (layers only in the caffemodel, such as a training snapshot's loss and data layers, are
ignored). Every blob a converted layer needs must be present with the expected shape.
"""

import math
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..caffe_net import module_key
from .errors import CaffeFormatError
from .head_spec import class_permutation

__all__ = ['blob_array', 'caffemodel_blobs', 'backbone_state', 'head_state']


def blob_array(blob) -> np.ndarray:
    """A ``BlobProto`` as a float32 array of its shape (``shape`` or legacy num/c/h/w)."""
    if blob.HasField('shape'):
        shape = [int(d) for d in blob.shape.dim]
    elif blob.num or blob.channels or blob.height or blob.width:
        shape = [blob.num, blob.channels, blob.height, blob.width]
    else:
        shape = [len(blob.data) or len(blob.double_data)]
    data = blob.data if len(blob.data) else blob.double_data
    values = np.asarray(data, dtype=np.float32)
    if min(shape, default=1) < 0 or values.size != math.prod(shape):  # Python ints: no overflow
        raise ValueError(f'{values.size} values for shape {shape}')
    return values.reshape(shape)


def caffemodel_blobs(net) -> Dict[str, list]:
    """Layer name -> its ``BlobProto`` list (layers without blobs left out)."""
    return {layer.name: list(layer.blobs) for layer in net.layer if len(layer.blobs)}


class _Blobs:
    """Fetches a layer's blobs with errors that name the layer and the caffemodel."""

    def __init__(self, blobs: Dict[str, list], source: str) -> None:
        self.blobs, self.source = blobs, source

    def get(self, layer: str, index: int, shape: Sequence[int], what: str) -> Tensor:
        blobs = self.blobs.get(layer, [])
        if index >= len(blobs):
            raise CaffeFormatError(
                f'{self.source}: layer {layer!r} has {len(blobs)} blobs; its {what} (blob '
                f'{index}) is missing (caffemodel and prototxt do not match)'
            )
        try:
            array = blob_array(blobs[index])
        except ValueError as err:
            raise CaffeFormatError(f'{self.source}: layer {layer!r} blob {index}: {err}') from err
        if array.size != math.prod(shape) or (
            array.ndim == len(shape) and list(array.shape) != list(shape)
        ):
            raise CaffeFormatError(
                f'{self.source}: layer {layer!r} {what} has shape {list(array.shape)}, the '
                f'prototxt needs {list(shape)} (caffemodel and prototxt do not match)'
            )
        # legacy blobs are 4-D (1x1x1xN biases): the element count decides
        return torch.from_numpy(array.reshape(shape).copy())


def backbone_state(
    layers: Sequence[dict], blobs: Dict[str, list], source: str, prefix: str = 'backbone.layers.'
) -> Dict[str, Tensor]:
    """State dict of :class:`CaffeNet` from the blobs of its layer dicts."""
    get = _Blobs(blobs, source).get
    state: Dict[str, Tensor] = {}
    for spec in layers:
        name, kind = spec['name'], spec['type']
        key = prefix + module_key(name)
        if kind == 'Convolution':
            kh, kw = spec['kernel_size']
            cin = spec['in_channels'] // spec['groups']
            state[f'{key}.weight'] = get(name, 0, (spec['out_channels'], cin, kh, kw), 'weight')
            if spec['bias']:
                state[f'{key}.bias'] = get(name, 1, (spec['out_channels'],), 'bias')
        elif kind == 'BatchNorm':
            c = spec['channels']
            mean, var = get(name, 0, (c,), 'mean'), get(name, 1, (c,), 'variance')
            factor = float(get(name, 2, (1,), 'scale factor')[0])
            # Caffe stores running sums and their weight; f = 0 means zero statistics.
            inv = 0.0 if factor == 0 else 1.0 / factor
            state[f'{key}.running_mean'] = mean * inv
            state[f'{key}.running_var'] = var * inv
            state[f'{key}.num_batches_tracked'] = torch.tensor(0)
        elif kind == 'Scale':
            c = spec['channels']
            state[f'{key}.weight'] = get(name, 0, (c,), 'scale')
            if spec['bias']:
                state[f'{key}.bias'] = get(name, 1, (c,), 'bias')
        elif kind == 'Normalize':
            c = 1 if spec['channel_shared'] else spec['channels']
            state[f'{key}.weight'] = get(name, 0, (c,), 'scale')
    return state


def head_state(
    levels: Sequence[object],
    in_channels: Sequence[int],
    num_base_priors: Sequence[int],
    num_classes: int,
    background: int,
    kernel_sizes: Sequence[int],
    blobs: Dict[str, list],
    source: str,
    prefix: str = 'bbox_head.',
) -> Dict[str, Tensor]:
    """Head state dict: ``mbox_loc`` as is, ``mbox_conf`` with the background channel last.

    Caffe's confidence channel ``p * C + c`` (default box ``p``, class ``c``) becomes the
    plugin's ``p * C + j`` with ``j`` the position of ``c`` in :func:`class_permutation`.
    """
    get = _Blobs(blobs, source).get
    perm = torch.tensor(class_permutation(num_classes, background))
    state: Dict[str, Tensor] = {}
    for lv, (level, cin, k, ks) in enumerate(
        zip(levels, in_channels, num_base_priors, kernel_sizes)
    ):
        for conv, kind, per_box in ((level.loc, 'reg', 4), (level.conf, 'cls', num_classes)):
            out = k * per_box
            weight = get(conv.name, 0, (out, cin, ks, ks), 'weight')
            bias: Optional[Tensor] = (
                get(conv.name, 1, (out,), 'bias')
                if conv.convolution_param.bias_term
                else torch.zeros(out)
            )
            if kind == 'cls':
                order = (torch.arange(k)[:, None] * num_classes + perm[None]).reshape(-1)
                weight, bias = weight[order], bias[order]
            state[f'{prefix}{kind}_convs.{lv}.pred.weight'] = weight
            state[f'{prefix}{kind}_convs.{lv}.pred.bias'] = bias
    return state
