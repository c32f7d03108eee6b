"""A tiny Caffe SSD deploy net (every layer type the converter maps) and random caffemodels.

Layout, input 3 x 40 x 40 (BGR):

- ``conv1`` 3x3/2 (8 ch) + ``conv1_bn`` (BatchNorm, scale factor 2) + ``conv1_scale`` + ReLU
- ``pool1`` MAX 3/2 without padding: Caffe's ceil rounding gives 10 x 10 (floor would give 9)
- ``conv2`` depthwise 3x3 without bias, ``conv3`` 1x1 + ReLU, ``res`` Eltwise SUM coeff 1, 0.5
- ``norm`` Normalize (per location, per channel scale)  -> level 0 (10 x 10)
- ``conv4`` 3x3/2 + ReLU, ``conv4b`` 3x3/2 dilation 1, ``cat`` Concat -> level 1 (5 x 5, 24 ch)
- ``drop`` Dropout in place, ``pool2`` AVE 3/2 pad 1 -> level 2 (3 x 3)

Heads: level 0 min 8 / max 16, ratio 2, step 4 (3x3 convs); level 1 two min sizes (12, 16)
with max sizes (20, 24), ratios 2, 3 (1x1 convs); level 2 min 30 only, ratio 2, derived step
40 / 3 (3x3 convs). DetectionOutput: 3 classes (background label configurable), CENTER_SIZE.
"""

from typing import Dict, List, Optional, Tuple

import numpy as np

from ssd_plugin.caffe.converter.proto import BlobShape, read_prototxt

__all__ = [
    'LEVELS',
    'prototxt_text',
    'blob_shapes',
    'random_blobs',
    'write_caffemodel',
    'write_net',
]

# level -> (feature blob, channels, (H, W), PriorBox options, kernel, boxes per location)
LEVELS = [
    ('norm', 8, (10, 10), dict(min_size=[8], max_size=[16], aspect_ratio=[2], step=4), 3, 4),
    ('cat', 24, (5, 5), dict(min_size=[12, 16], max_size=[20, 24], aspect_ratio=[2, 3]), 1, 12),
    ('pool2', 24, (3, 3), dict(min_size=[30], max_size=[], aspect_ratio=[2]), 3, 3),
]
NUM_CLASSES = 3


def _prior_text(name: str, opts: dict) -> str:
    lines = [f'min_size: {v}' for v in opts['min_size']]
    lines += [f'max_size: {v}' for v in opts['max_size']]
    lines += [f'aspect_ratio: {v}' for v in opts['aspect_ratio']]
    lines += ['flip: true', 'clip: false', 'variance: 0.1', 'variance: 0.1', 'variance: 0.2']
    lines += ['variance: 0.2', 'offset: 0.5']
    if 'step' in opts:
        lines.append(f'step: {opts["step"]}')
    return '\n    '.join(lines)


def prototxt_text(
    background: int = 0,
    share_location: bool = True,
    extra_backbone: str = '',
    detection_extra: str = '',
) -> str:
    """The deploy prototxt; ``extra_backbone`` is inserted after ``conv1`` (tests' bad layers)."""
    heads, locs, confs, priors = [], [], [], []
    for i, (feat, _, _, opts, k, boxes) in enumerate(LEVELS):
        for kind, per_box in (('loc', 4), ('conf', NUM_CLASSES)):
            heads.append(
                f"""layer {{ name: "l{i}_mbox_{kind}" type: "Convolution" bottom: "{feat}"
  top: "l{i}_mbox_{kind}"
  param {{ lr_mult: 1 decay_mult: 1 }} param {{ lr_mult: 2 decay_mult: 0 }}
  convolution_param {{ num_output: {boxes * per_box} pad: {k // 2} kernel_size: {k} stride: 1
    weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" value: 0 }} }} }}
layer {{ name: "l{i}_mbox_{kind}_perm" type: "Permute" bottom: "l{i}_mbox_{kind}"
  top: "l{i}_mbox_{kind}_perm" permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}
layer {{ name: "l{i}_mbox_{kind}_flat" type: "Flatten" bottom: "l{i}_mbox_{kind}_perm"
  top: "l{i}_mbox_{kind}_flat" flatten_param {{ axis: 1 }} }}
"""
            )
        heads.append(
            f"""layer {{ name: "l{i}_mbox_priorbox" type: "PriorBox" bottom: "{feat}" bottom: "data"
  top: "l{i}_mbox_priorbox"
  prior_box_param {{
    {_prior_text(feat, opts)}
  }} }}
"""
        )
        locs.append(f'bottom: "l{i}_mbox_loc_flat"')
        confs.append(f'bottom: "l{i}_mbox_conf_flat"')
        priors.append(f'bottom: "l{i}_mbox_priorbox"')
    return f"""name: "TinySSD"
input: "data"
input_shape {{ dim: 1 dim: 3 dim: 40 dim: 40 }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 8 pad: 1 kernel_size: 3 stride: 2 }} }}
{extra_backbone}
layer {{ name: "conv1_bn" type: "BatchNorm" bottom: "conv1" top: "conv1"
  batch_norm_param {{ use_global_stats: true eps: 0.001 }} }}
layer {{ name: "conv1_scale" type: "Scale" bottom: "conv1" top: "conv1"
  scale_param {{ bias_term: true }} }}
layer {{ name: "conv1_relu" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}
layer {{ name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param {{ num_output: 8 pad: 1 kernel_size: 3 group: 8 bias_term: false }} }}
layer {{ name: "conv3" type: "Convolution" bottom: "conv2" top: "conv3"
  convolution_param {{ num_output: 8 kernel_size: 1 }} }}
layer {{ name: "conv3_relu" type: "ReLU" bottom: "conv3" top: "conv3" }}
layer {{ name: "res" type: "Eltwise" bottom: "pool1" bottom: "conv3" top: "res"
  eltwise_param {{ operation: SUM coeff: 1 coeff: 0.5 }} }}
layer {{ name: "norm" type: "Normalize" bottom: "res" top: "norm"
  norm_param {{ across_spatial: false channel_shared: false
    scale_filler {{ type: "constant" value: 20 }} }} }}
layer {{ name: "conv4" type: "Convolution" bottom: "res" top: "conv4"
  convolution_param {{ num_output: 16 pad: 1 kernel_size: 3 stride: 2 }} }}
layer {{ name: "conv4_relu" type: "ReLU" bottom: "conv4" top: "conv4" }}
layer {{ name: "conv4b" type: "Convolution" bottom: "res" top: "conv4b"
  convolution_param {{ num_output: 8 pad: 1 kernel_size: 3 stride: 2 dilation: 1 }} }}
layer {{ name: "cat" type: "Concat" bottom: "conv4" bottom: "conv4b" top: "cat" }}
layer {{ name: "drop" type: "Dropout" bottom: "cat" top: "cat"
  dropout_param {{ dropout_ratio: 0.5 }} }}
layer {{ name: "pool2" type: "Pooling" bottom: "cat" top: "pool2"
  pooling_param {{ pool: AVE kernel_size: 3 stride: 2 pad: 1 }} }}
{''.join(heads)}
layer {{ name: "mbox_loc" type: "Concat" {' '.join(locs)} top: "mbox_loc"
  concat_param {{ axis: 1 }} }}
layer {{ name: "mbox_conf" type: "Concat" {' '.join(confs)} top: "mbox_conf"
  concat_param {{ axis: 1 }} }}
layer {{ name: "mbox_priorbox" type: "Concat" {' '.join(priors)} top: "mbox_priorbox"
  concat_param {{ axis: 2 }} }}
layer {{ name: "mbox_conf_reshape" type: "Reshape" bottom: "mbox_conf" top: "mbox_conf_reshape"
  reshape_param {{ shape {{ dim: 0 dim: -1 dim: {NUM_CLASSES} }} }} }}
layer {{ name: "mbox_conf_softmax" type: "Softmax" bottom: "mbox_conf_reshape"
  top: "mbox_conf_softmax" softmax_param {{ axis: 2 }} }}
layer {{ name: "mbox_conf_flatten" type: "Flatten" bottom: "mbox_conf_softmax"
  top: "mbox_conf_flatten" flatten_param {{ axis: 1 }} }}
layer {{ name: "detection_out" type: "DetectionOutput" bottom: "mbox_loc"
  bottom: "mbox_conf_flatten" bottom: "mbox_priorbox" top: "detection_out"
  include {{ phase: TEST }}
  detection_output_param {{ num_classes: {NUM_CLASSES} share_location: {str(share_location).lower()}
    background_label_id: {background}
    nms_param {{ nms_threshold: 0.45 top_k: 100 }} code_type: CENTER_SIZE keep_top_k: 50
    confidence_threshold: 0.01 {detection_extra} }} }}
"""


def blob_shapes() -> Dict[str, List[Tuple[int, ...]]]:
    """Layer name -> the shapes of its blobs, as Caffe stores them."""
    shapes = {
        'conv1': [(8, 3, 3, 3), (8,)],
        'conv1_bn': [(8,), (8,), (1,)],
        'conv1_scale': [(8,), (8,)],
        'conv2': [(8, 1, 3, 3)],
        'conv3': [(8, 8, 1, 1), (8,)],
        'norm': [(8,)],
        'conv4': [(16, 8, 3, 3), (16,)],
        'conv4b': [(8, 8, 3, 3), (8,)],
    }
    for i, (_, channels, _, _, k, boxes) in enumerate(LEVELS):
        for kind, per_box in (('loc', 4), ('conf', NUM_CLASSES)):
            shapes[f'l{i}_mbox_{kind}'] = [(boxes * per_box, channels, k, k), (boxes * per_box,)]
    return shapes


def random_blobs(seed: int = 0) -> Dict[str, List[np.ndarray]]:
    """Random weights; BatchNorm stores running sums with factor 2 and positive variances."""
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, shapes in blob_shapes().items():
        blobs[name] = [rng.normal(0, 0.3, s).astype(np.float32) for s in shapes]
    blobs['conv1_bn'][1] = np.abs(blobs['conv1_bn'][1]) * 2 + 0.5
    blobs['conv1_bn'][2] = np.array([2.0], np.float32)
    blobs['norm'][0] = np.abs(blobs['norm'][0]) * 20 + 1
    return blobs


def write_caffemodel(
    path: str, prototxt: str, blobs: Dict[str, List[np.ndarray]], legacy: Optional[set] = None
) -> None:
    """Write ``blobs`` into the prototxt's net and save it as a binary caffemodel.

    Layers in ``legacy`` store num/channels/height/width (4-D) instead of ``shape``.
    """
    net = read_prototxt(prototxt)
    for layer in net.layer:
        for array in blobs.get(layer.name, []):
            blob = layer.blobs.add()
            if legacy and layer.name in legacy:
                dims = [1] * (4 - array.ndim) + list(array.shape)
                blob.num, blob.channels, blob.height, blob.width = dims
            else:
                blob.shape.CopyFrom(BlobShape(dim=list(array.shape)))
            blob.data.extend(array.ravel().tolist())
    with open(path, 'wb') as f:
        f.write(net.SerializeToString())


def write_net(tmp_path, seed: int = 0, **kwargs) -> Tuple[str, str, Dict[str, List[np.ndarray]]]:
    """Write ``deploy.prototxt`` and ``model.caffemodel`` under ``tmp_path``."""
    prototxt = str(tmp_path / 'deploy.prototxt')
    with open(prototxt, 'w') as f:
        f.write(prototxt_text(**kwargs))
    blobs = random_blobs(seed)
    caffemodel = str(tmp_path / 'model.caffemodel')
    write_caffemodel(caffemodel, prototxt, blobs)
    return prototxt, caffemodel, blobs
