"""An SSD detector as one tensor-to-tensor graph, and its ONNX export.

:class:`ONNXDetector` wraps a built mmdet detector whose head is
:class:`~ssd_plugin.models.dense_heads.MultiBoxHead` and maps a ``(B, 3, H, W)`` image tensor to
one of three output sets:

- raw: ``cls_logits (B, P, C+1)`` (background last) and ``bbox_deltas (B, P, 4)``, the head's
  outputs flattened in prior order. Fully convolutional: batch and image size may be dynamic
  (wherever the architecture accepts the size, e.g. SSD300's last 3x3 valid conv needs a 3x3 map).
- ``decode``: ``scores (B, P, C)`` (softmax, background dropped) and ``boxes (B, P, 4)`` (``xyxy``
  input pixels, clipped to the image), exactly what ``MultiBoxHead.predict_by_feat`` feeds to NMS.
  The default boxes are baked in as a constant for one input size, so the image size is fixed.
- ``with_nms``: also the head's post-processing (score threshold, per-class top-``nms_pre``,
  per-class NMS, per-image top-``max_per_img``) in the graph, through ONNX's
  ``NonMaxSuppression`` operator: ``dets (B, K, 5)`` ``[x1, y1, x2, y2, score]`` sorted by
  descending score and ``labels (B, K)`` int64, ``K = max_per_img``; padding rows have score 0
  and label -1. Boxes are in input pixels: divide by the resize scale for the original image.

With ``normalize`` (default) the graph takes what OpenCV decodes, resized to the input size:
float32 pixel values 0-255 in the data preprocessor's input channel order (BGR for SSD configs);
it applies the preprocessor's channel flip, mean and std. Without it the input is the
preprocessed (flipped, normalised) tensor.
"""

import json
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from torch import Tensor
from torchvision.ops import batched_nms

from ssd_plugin.models.dense_heads.multibox_head import MultiBoxHead

__all__ = ['ONNXDetector', 'export_onnx', 'input_convention']


class _GroupedNMS(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` with one box set and one class per group.

    Eager: torchvision's ``batched_nms`` over the candidates scoring above ``score_thr`` (the same
    strict ``>`` tests on scores and IoU as the ONNX operator). Exported: the operator itself.
    """

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, iou_thr: float, score_thr: float) -> Tensor:
        """``boxes (G, n, 4)``, ``scores (G, 1, n)`` -> ``(N, 3)`` int64 ``[group, 0, box]``."""
        num_groups, n = boxes.shape[:2]
        flat_scores = scores.reshape(-1)
        cand = (flat_scores > score_thr).nonzero().squeeze(1)
        groups = torch.arange(num_groups, device=boxes.device).repeat_interleave(n)
        keep = batched_nms(boxes.reshape(-1, 4)[cand], flat_scores[cand], groups[cand], iou_thr)
        index = cand[keep]
        return torch.stack([index // n, torch.zeros_like(index), index % n], dim=1)

    @staticmethod
    def symbolic(g, boxes, scores, iou_thr: float, score_thr: float):
        # max_output_boxes_per_class: keep every survivor (candidates are pre-capped per group)
        max_out = g.op('Constant', value_t=torch.tensor([1 << 30], dtype=torch.long))
        iou = g.op('Constant', value_t=torch.tensor([iou_thr], dtype=torch.float))
        thr = g.op('Constant', value_t=torch.tensor([score_thr], dtype=torch.float))
        return g.op('NonMaxSuppression', boxes, scores, max_out, iou, thr)


def input_convention(
    preprocessor: nn.Module, device: torch.device
) -> Tuple[bool, Optional[Tensor], Optional[Tensor]]:
    """Channel flip, mean and std (``(1, 3, 1, 1)``, None without normalisation).

    Mean and std are the preprocessor's public buffers; the flip (a private flag) is read off
    its ``forward`` for the probe pixel ``(0, 1, 2)``.
    """
    mean, std = getattr(preprocessor, 'mean', None), getattr(preprocessor, 'std', None)
    probe = torch.tensor([0.0, 1, 2], device=device).view(1, 3, 1, 1)
    with torch.no_grad():
        out = preprocessor(dict(inputs=probe), training=False)['inputs'][:, :, :1, :1]
        if mean is not None:
            out = out * std + mean
    return bool(out.flatten()[0].round() == 2), mean, std


class ONNXDetector(nn.Module):
    """A MultiBoxHead detector as ``image -> tensors`` (see the module docstring).

    Args:
        detector: A built single-stage detector (``extract_feat`` + ``bbox_head``) whose head is
            a ``MultiBoxHead``; its ``data_preprocessor`` gives the normalisation.
        input_size: ``(H, W)`` the default boxes and clipping are computed for (``decode`` and
            ``with_nms`` only).
        normalize: Include the preprocessor's channel flip, mean and std.
        decode: Output decoded boxes and class probabilities.
        with_nms: Output the final detections (implies ``decode``).
        test_cfg: Post-processing settings; default: the head's ``test_cfg``.
    """

    def __init__(
        self,
        detector: nn.Module,
        input_size: Tuple[int, int],
        normalize: bool = True,
        decode: bool = False,
        with_nms: bool = False,
        test_cfg: Optional[dict] = None,
    ) -> None:
        super().__init__()
        head = getattr(detector, 'bbox_head', None)
        if not isinstance(head, MultiBoxHead):
            raise TypeError(
                f'ONNXDetector needs a detector whose bbox_head is a MultiBoxHead, got '
                f'{type(head).__name__}'
            )
        self.detector = detector
        self.input_size = tuple(int(v) for v in input_size)
        self.normalize = normalize
        self.decode = decode or with_nms
        self.with_nms = with_nms
        self.test_cfg = ConfigDict(head.test_cfg if test_cfg is None else test_cfg)
        device = next(detector.parameters()).device
        self.flip, self.mean, self.std = input_convention(detector.data_preprocessor, device)
        if with_nms and self.test_cfg.get('score_thr', 0.0) < 0:
            raise ValueError(f'test_cfg.score_thr must be >= 0, got {self.test_cfg.score_thr}')
        if with_nms and not self.test_cfg.get('nms'):
            raise ValueError('with_nms needs test_cfg.nms=dict(iou_threshold=...)')

    @property
    def output_names(self) -> List[str]:
        if self.with_nms:
            return ['dets', 'labels']
        return ['scores', 'boxes'] if self.decode else ['cls_logits', 'bbox_deltas']

    def preprocess(self, img: Tensor) -> Tensor:
        """What the detector's ``data_preprocessor`` does to a stacked, unpadded float batch.

        Written out with the convention :func:`input_convention` read off it: calling the
        preprocessor in the graph would bake the export size into its padding.
        """
        if self.flip:
            img = img[:, [2, 1, 0]]
        return img if self.mean is None else (img - self.mean) / self.std

    def forward(self, img: Tensor) -> Tuple[Tensor, Tensor]:
        if self.normalize:
            img = self.preprocess(img)
        head = self.detector.bbox_head
        outputs = head(self.detector.extract_feat(img))
        if not self.decode:
            return head.flatten_outputs(*outputs)
        if tuple(img.shape[-2:]) != self.input_size:
            raise ValueError(
                f'decoding is built for {self.input_size} inputs, got {tuple(img.shape[-2:])}'
            )
        # One meta for the whole (dynamic) batch: every image has the input size.
        scores, boxes = head.decode(*outputs, [dict(img_shape=self.input_size)], self.test_cfg)
        if not self.with_nms:
            return scores, boxes
        return self._nms(scores, boxes)

    def _nms(self, scores: Tensor, boxes: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-class NMS and per-image top-k, as :func:`batched_multiclass_nms`, padded."""
        cfg = self.test_cfg
        num_priors, num_classes = scores.shape[1:]
        nms_pre = cfg.get('nms_pre', -1)
        n = min(nms_pre, num_priors) if nms_pre > 0 else num_priors
        # each (image, class) group's n best candidates, then NMS inside every group at once
        top_scores, top_idx = scores.transpose(1, 2).topk(n, dim=2)  # (B, C, n)
        top_boxes = boxes.gather(1, top_idx.flatten(1)[..., None].expand(-1, -1, 4))
        selected = _GroupedNMS.apply(
            top_boxes.reshape(-1, n, 4),
            top_scores.reshape(-1, 1, n),
            float(cfg.nms['iou_threshold']),
            float(cfg.get('score_thr', 0.0)),
        )
        flat_scores = top_scores.flatten()
        kept = torch.zeros_like(flat_scores).scatter(0, selected[:, 0] * n + selected[:, 2], 1.0)
        # suppressed candidates score 0: below every kept one (kept scores are > score_thr >= 0)
        kept_scores = (flat_scores * kept).view_as(top_scores).flatten(1)  # (B, C * n)
        max_per_img = cfg.get('max_per_img', 200)
        k = min(max_per_img, num_classes * n)
        det_scores, det_idx = kept_scores.topk(k, dim=1)
        det_boxes = top_boxes.gather(1, det_idx[..., None].expand(-1, -1, 4))
        # channels -> labels; a channel the head never reports becomes a padding row
        det_labels = self.detector.bbox_head.channel_labels[det_idx // n]
        valid = (det_scores > 0) & (det_labels >= 0)
        det_scores = det_scores * valid
        det_labels = torch.where(valid, det_labels, torch.full_like(det_labels, -1))
        dets = torch.cat([det_boxes * valid[..., None], det_scores[..., None]], dim=-1)
        if k < max_per_img:
            dets = F.pad(dets, (0, 0, 0, max_per_img - k))
            det_labels = F.pad(det_labels, (0, max_per_img - k), value=-1)
        return dets, det_labels


def export_onnx(
    detector: nn.Module,
    out_file: str,
    input_size: Tuple[int, int],
    normalize: bool = True,
    decode: bool = False,
    with_nms: bool = False,
    dynamic_batch: bool = True,
    dynamic_size: bool = False,
    opset: int = 17,
    classes: Optional[Sequence[str]] = None,
) -> ONNXDetector:
    """Export ``detector`` (eval mode, on its device) to ``out_file`` as an ONNX graph.

    Uses the TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs
    ``onnxscript``, and the NMS operator is emitted through an autograd ``symbolic``. The graph's
    metadata records the input size, preprocessing, outputs and class names.

    Args:
        detector: See :class:`ONNXDetector`.
        out_file: Path of the ``.onnx`` file.
        input_size: ``(H, W)`` of the example input (and of the baked default boxes).
        normalize: Preprocessing in the graph (input: 0-255 pixels in the loader's order).
        decode: Output decoded ``scores``/``boxes``.
        with_nms: Output final ``dets``/``labels``.
        dynamic_batch: Dynamic batch dimension.
        dynamic_size: Dynamic height and width (raw outputs only).
        opset: ONNX opset (>= 11 for ``NonMaxSuppression`` as used here).
        classes: Class names to store in the metadata.

    Returns:
        The exported :class:`ONNXDetector`.
    """
    wrapper = ONNXDetector(detector, input_size, normalize, decode, with_nms).eval()
    if dynamic_size and wrapper.decode:
        raise ValueError(
            'dynamic_size needs raw outputs: decoding bakes the default boxes of one input size'
        )
    if with_nms and opset < 11:
        raise ValueError(f'with_nms needs opset >= 11, got {opset}')
    device = next(detector.parameters()).device
    example = torch.rand(1, 3, *wrapper.input_size, device=device) * 255
    axes: Dict[str, Dict[int, str]] = {'input': {}}
    if dynamic_batch:
        axes['input'][0] = 'batch'
        for name in wrapper.output_names:
            axes[name] = {0: 'batch'}
    if dynamic_size:
        axes['input'].update({2: 'height', 3: 'width'})
        for name in wrapper.output_names:
            axes.setdefault(name, {})[1] = 'num_priors'
    with torch.no_grad(), warnings.catch_warnings():
        # shapes turned into constants are intended: only the dynamic axes above vary
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            out_file,
            input_names=['input'],
            output_names=wrapper.output_names,
            dynamic_axes={k: v for k, v in axes.items() if v},
            opset_version=opset,
            dynamo=False,
        )
    model = onnx.load(out_file)
    normalised = wrapper.mean is not None
    meta = dict(
        input_size=json.dumps(list(wrapper.input_size)),
        normalize=json.dumps(normalize),
        input_format='float32 (B, 3, H, W) 0-255 pixels, '
        + ('BGR (flipped to RGB in the graph)' if wrapper.flip else 'loader order')
        if normalize
        else 'preprocessed float32 (B, 3, H, W)',
        mean=json.dumps(wrapper.mean.flatten().tolist() if normalised else None),
        std=json.dumps(wrapper.std.flatten().tolist() if normalised else None),
        outputs=json.dumps(wrapper.output_names),
        test_cfg=json.dumps(wrapper.test_cfg.to_dict() if wrapper.with_nms else None),
        classes=json.dumps(list(classes) if classes is not None else None),
    )
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, out_file)
    return wrapper
