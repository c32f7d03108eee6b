"""Caffe's arithmetic for the tiny net (tests/test_caffe/tiny_ssd.py), written from Caffe's layers.

Independent of the converter: blobs as Caffe stores them, pooling transcribed loop by loop from
Caffe's ``PoolingLayer::Forward_cpu``, DetectionOutput's CENTER_SIZE decode from ``bbox_util``.
"""

import math
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from caffe_prior_box import caffe_prior_box
from tiny_ssd import LEVELS, NUM_CLASSES


def caffe_pool(x: np.ndarray, kernel: int, stride: int, pad: int, method: str) -> np.ndarray:
    """``PoolingLayer`` (MAX / AVE), NCHW, Caffe's output size and AVE divisor."""
    n, c, h, w = x.shape
    out_h = int(math.ceil((h + 2 * pad - kernel) / stride)) + 1
    out_w = int(math.ceil((w + 2 * pad - kernel) / stride)) + 1
    if pad:
        if (out_h - 1) * stride >= h + pad:
            out_h -= 1
        if (out_w - 1) * stride >= w + pad:
            out_w -= 1
    out = np.zeros((n, c, out_h, out_w), np.float64)
    for ph in range(out_h):
        for pw in range(out_w):
            hs, ws = ph * stride - pad, pw * stride - pad
            he, we = min(hs + kernel, h + pad), min(ws + kernel, w + pad)
            size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, :, hs:he, ws:we]
            if method == 'MAX':
                out[:, :, ph, pw] = window.max(axis=(2, 3))
            else:
                out[:, :, ph, pw] = window.sum(axis=(2, 3)) / size
    return out.astype(np.float32)


def _conv(x, blobs, stride=1, pad=0, groups=1):
    bias = torch.from_numpy(blobs[1]) if len(blobs) > 1 else None
    return F.conv2d(x, torch.from_numpy(blobs[0]), bias, stride, pad, 1, groups)


def backbone(x: torch.Tensor, b: Dict[str, List[np.ndarray]]) -> List[torch.Tensor]:
    """The three feature maps (norm, cat, pool2) of the tiny net."""
    y = _conv(x, b['conv1'], 2, 1)
    mean, var, factor = (torch.from_numpy(v) for v in b['conv1_bn'])
    mean, var = mean / factor, var / factor
    y = (y - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + 0.001)
    y = y * torch.from_numpy(b['conv1_scale'][0]).view(1, -1, 1, 1)
    y = torch.relu(y + torch.from_numpy(b['conv1_scale'][1]).view(1, -1, 1, 1))
    pool1 = torch.from_numpy(caffe_pool(y.numpy(), 3, 2, 0, 'MAX'))
    conv3 = torch.relu(_conv(_conv(pool1, b['conv2'], 1, 1, 8), b['conv3']))
    res = pool1 + 0.5 * conv3
    norm = res / torch.sqrt(res.pow(2).sum(1, keepdim=True) + 1e-10)
    norm = norm * torch.from_numpy(b['norm'][0]).view(1, -1, 1, 1)
    cat = torch.cat([torch.relu(_conv(res, b['conv4'], 2, 1)), _conv(res, b['conv4b'], 2, 1)], 1)
    pool2 = torch.from_numpy(caffe_pool(cat.numpy(), 3, 2, 1, 'AVE'))
    return [norm, cat, pool2]


def priors(input_hw=(40, 40)) -> np.ndarray:
    """``mbox_priorbox``: normalised ``xyxy`` of every level, Caffe's order."""
    out = []
    for _, _, hw, opts, _, _ in LEVELS:
        step = (opts['step'], opts['step']) if 'step' in opts else None
        out += caffe_prior_box(
            hw,
            input_hw,
            opts['min_size'],
            opts['max_size'] or None,
            opts['aspect_ratio'],
            step_hw=step,
        )
    return np.asarray(out, np.float64)


def head_outputs(feats, b):
    """Caffe's ``mbox_loc`` ``(N, P, 4)`` and softmaxed ``mbox_conf`` ``(N, P, C)``."""
    locs, confs = [], []
    for i, (feat, (_, _, _, _, k, _)) in enumerate(zip(feats, LEVELS)):
        n = feat.shape[0]
        loc = _conv(feat, b[f'l{i}_mbox_loc'], 1, k // 2).permute(0, 2, 3, 1).reshape(n, -1)
        conf = _conv(feat, b[f'l{i}_mbox_conf'], 1, k // 2).permute(0, 2, 3, 1).reshape(n, -1)
        locs.append(loc)
        confs.append(conf)
    n = feats[0].shape[0]
    loc = torch.cat(locs, 1).reshape(n, -1, 4).double()
    conf = torch.cat(confs, 1).reshape(n, -1, NUM_CLASSES).double().softmax(-1)
    return loc.numpy(), conf.numpy()


def decode_center_size(loc: np.ndarray, prior: np.ndarray, variance=(0.1, 0.1, 0.2, 0.2)):
    """``DecodeBBox`` CENTER_SIZE, variance not encoded in the target; normalised ``xyxy``."""
    pw, ph = prior[:, 2] - prior[:, 0], prior[:, 3] - prior[:, 1]
    pcx, pcy = (prior[:, 0] + prior[:, 2]) / 2, (prior[:, 1] + prior[:, 3]) / 2
    cx = variance[0] * loc[..., 0] * pw + pcx
    cy = variance[1] * loc[..., 1] * ph + pcy
    w = np.exp(variance[2] * loc[..., 2]) * pw
    h = np.exp(variance[3] * loc[..., 3]) * ph
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
