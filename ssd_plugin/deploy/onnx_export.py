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
  ``NonMaxSuppression`` operator, bounded by score prefixes as the PyTorch path
  (:mod:`ssd_plugin.deploy.onnx_postprocess`): ``dets (B, K, 5)`` ``[x1, y1, x2, y2, score]``
  sorted by descending score and ``labels (B, K)`` int64, ``K = max_per_img``; padding rows have
  score 0 and label -1. Boxes are in input pixels: divide by the resize scale for the original
  image.

:func:`export_head_postprocess_onnx` exports the ``with_nms`` graph's part after the network
alone: the head's per-level outputs to ``dets`` and ``labels``.

With ``normalize`` (default) the graph takes what OpenCV decodes, resized to the input size:
float32 pixel values 0-255 in the data preprocessor's input channel order (BGR for SSD configs);
it applies the preprocessor's channel flip, mean and std. Without it the input is the
preprocessed (flipped, normalised) tensor.
"""

import json
from typing import Dict, List, Optional, Sequence, Tuple

import onnx
import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from torch import Tensor

from ssd_plugin.models.dense_heads.multibox_head import MultiBoxHead

from .onnx_postprocess import PostProcess, attach_postprocess, batch_axes, trace_onnx

__all__ = ['ONNXDetector', 'export_head_postprocess_onnx', 'export_onnx', 'input_convention']


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
        bounded: Post-processing bounded by score prefixes (False: every default box's
            per-class top-``nms_pre``, as before the bound; the same detections).
    """

    def __init__(
        self,
        detector: nn.Module,
        input_size: Tuple[int, int],
        normalize: bool = True,
        decode: bool = False,
        with_nms: bool = False,
        test_cfg: Optional[dict] = None,
        bounded: bool = True,
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
        self.post = None
        if with_nms:
            channel_labels = detector.bbox_head.channel_labels
            self.post = PostProcess(self.test_cfg.to_dict(), channel_labels, bounded)

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
        if not self.decode:  # (decode checks them itself)
            head.check_featmap_sizes(outputs[0], img.shape[-2:])
            return head.flatten_outputs(*outputs)
        if tuple(img.shape[-2:]) != self.input_size:
            raise ValueError(
                f'decoding is built for {self.input_size} inputs, got {tuple(img.shape[-2:])}'
            )
        # One meta for the whole (dynamic) batch: every image has the input size.
        scores, boxes = head.decode(*outputs, [dict(img_shape=self.input_size)], self.test_cfg)
        if not self.with_nms:
            return scores, boxes
        return self.post(scores, boxes)


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
    bounded: bool = True,
) -> ONNXDetector:
    """Export ``detector`` (eval mode, on its device) to ``out_file`` as an ONNX graph.

    Uses the TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs
    ``onnxscript``, and the NMS operator is emitted through an autograd ``symbolic``. With
    ``with_nms`` the traced decoding graph is joined to :func:`postprocess_onnx`'s by
    :func:`attach_postprocess` (tracing cannot record the bounded stages' ``If``). The graph's
    metadata records the input size, preprocessing, outputs, post-processing and class names.

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
        bounded: See :class:`ONNXDetector`.

    Returns:
        The exported :class:`ONNXDetector`.
    """
    wrapper = ONNXDetector(detector, input_size, normalize, decode, with_nms, bounded=bounded)
    wrapper.eval()
    if dynamic_size and wrapper.decode:
        raise ValueError(
            'dynamic_size needs raw outputs: decoding bakes the default boxes of one input size'
        )
    if with_nms and opset < 11:
        raise ValueError(f'with_nms needs opset >= 11, got {opset}')
    device = next(detector.parameters()).device
    example = torch.rand(1, 3, *wrapper.input_size, device=device) * 255
    # the traced part: the network, and decoding for decode/with_nms
    traced = wrapper
    if with_nms:
        traced = ONNXDetector(detector, input_size, normalize, decode=True).eval()
    axes: Dict[str, Dict[int, str]] = {'input': {}}
    if dynamic_batch:
        axes['input'][0] = 'batch'
        for name in traced.output_names:
            axes[name] = {0: 'batch'}
    if dynamic_size:
        axes['input'].update({2: 'height', 3: 'width'})
        for name in traced.output_names:
            axes.setdefault(name, {})[1] = 'num_priors'
    model = trace_onnx(traced, (example,), ['input'], traced.output_names, opset,
                       {k: v for k, v in axes.items() if v})  # fmt: skip
    if with_nms:
        with torch.no_grad():
            num_priors, num_classes = traced(example)[0].shape[1:]
        model = attach_postprocess(
            model, wrapper.post, num_priors, num_classes, opset, dynamic_batch)  # fmt: skip
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
        postprocess=json.dumps('bounded' if bounded else 'unbounded') if with_nms else 'null',
        classes=json.dumps(list(classes) if classes is not None else None),
    )
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, out_file)
    return wrapper


class _HeadDecode(nn.Module):
    """``head.decode`` of per-level outputs ``(cls_score_0, ..., bbox_pred_0, ...)`` of images of
    one size, with one meta for the whole (dynamic) batch as :class:`ONNXDetector`."""

    def __init__(self, head: MultiBoxHead, input_size: Tuple[int, int], test_cfg: dict) -> None:
        super().__init__()
        self.head = head
        self.input_size = input_size
        self.test_cfg = test_cfg

    def forward(self, *outputs: Tensor) -> Tuple[Tensor, Tensor]:
        num_levels = len(outputs) // 2
        return self.head.decode(list(outputs[:num_levels]), list(outputs[num_levels:]),
                                [dict(img_shape=self.input_size)], self.test_cfg)  # fmt: skip


def export_head_postprocess_onnx(
    head: MultiBoxHead,
    featmap_sizes: Sequence[Tuple[int, int]],
    input_size: Tuple[int, int],
    out_file: Optional[str] = None,
    test_cfg: Optional[dict] = None,
    bounded: bool = True,
    opset: int = 17,
) -> onnx.ModelProto:
    """The head's post-processing alone as an ONNX graph: per-level outputs -> detections.

    For running the post-processing in ONNX Runtime when the network runs elsewhere (another
    runtime or accelerator that hands back the head's raw outputs), and for measuring ONNX
    Runtime's post-processing against :meth:`MultiBoxHead.predict_by_feat` on the same outputs.
    The graph is :meth:`MultiBoxHead.decode` (traced; default boxes baked in for
    ``featmap_sizes``, boxes clipped to ``input_size``) followed by :func:`postprocess_onnx`'s
    graph, what :func:`export_onnx` with ``with_nms`` puts after the network.

    Inputs: ``cls_score_0 .. cls_score_{L-1}`` ``(B, k*(C+1), H, W)`` and ``bbox_pred_0 ..
    bbox_pred_{L-1}`` ``(B, k*4, H, W)`` float32, the head's ``forward`` outputs (dynamic batch).
    Outputs: ``dets (B, K, 5)`` and ``labels (B, K)`` as :func:`export_onnx` with ``with_nms``
    (padding rows: score 0, label -1); boxes in input pixels.

    Args:
        head: The ``MultiBoxHead`` (its mode is left as it is: decoding has no train-mode part).
        featmap_sizes: ``(H, W)`` of each level's outputs.
        input_size: ``(H, W)`` of the network's input, the boxes are clipped to.
        out_file: Also save the model there.
        test_cfg: Post-processing settings; default: the head's ``test_cfg``.
        bounded: See :class:`ONNXDetector`.
        opset: ONNX opset (>= 11).

    Returns:
        The checked ONNX model.
    """
    if not isinstance(head, MultiBoxHead):
        raise TypeError(f'needs a MultiBoxHead, got {type(head).__name__}')
    if len(featmap_sizes) != len(head.num_base_priors):
        raise ValueError(
            f'featmap_sizes has {len(featmap_sizes)} levels, the head {len(head.num_base_priors)}'
        )
    if opset < 11:
        raise ValueError(f'post-processing in ONNX needs opset >= 11, got {opset}')
    cfg = ConfigDict(head.test_cfg if test_cfg is None else test_cfg)
    input_size = tuple(int(v) for v in input_size)
    decoder = _HeadDecode(head, input_size, cfg)
    device = head.channel_labels.device
    example = tuple(
        [torch.randn(1, k * channels, h, w, device=device)
         for channels in (head.cls_out_channels, 4)
         for (h, w), k in zip(featmap_sizes, head.num_base_priors)]
    )  # fmt: skip
    num_levels = len(featmap_sizes)
    names = [f'cls_score_{i}' for i in range(num_levels)]
    names += [f'bbox_pred_{i}' for i in range(num_levels)]
    model = trace_onnx(decoder, example, names, ('scores', 'boxes'), opset,
                       batch_axes([*names, 'scores', 'boxes']))  # fmt: skip
    with torch.no_grad():
        num_priors, num_classes = decoder(*example)[0].shape[1:]
    # postprocess_onnx traces its stages on the CPU
    post = PostProcess(cfg.to_dict(), head.channel_labels.cpu(), bounded)
    model = attach_postprocess(model, post, num_priors, num_classes, opset, dynamic_batch=True)
    meta = dict(
        input_size=json.dumps(list(input_size)),
        featmap_sizes=json.dumps([list(s) for s in featmap_sizes]),
        outputs=json.dumps(['dets', 'labels']),
        test_cfg=json.dumps(cfg.to_dict()),
        postprocess=json.dumps('bounded' if bounded else 'unbounded'),
    )
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    if out_file is not None:
        onnx.save(model, out_file)
    return model
