"""SSD post-processing as an ONNX graph, bounded by score prefixes as the PyTorch path is.

The input is what :meth:`MultiBoxHead.decode` returns, ``scores (B, P, C)`` and ``boxes
(B, P, 4)``; the output is ``dets (B, K, 5)`` ``[x1, y1, x2, y2, score]`` and ``labels (B, K)``,
``K = max_per_img``, equal to :func:`~ssd_plugin.functional.batched_multiclass_nms` (score
threshold, per-class top-``nms_pre``, per-class NMS, per-image top-``max_per_img``), padding
rows with score 0 and label -1.

The argument is :mod:`ssd_plugin.functional.postprocess`'s: NMS over a *score prefix* (every
candidate at or above a cut-off) decides each candidate in it exactly, and once the prefix keeps
``max_per_img`` boxes they are the image's output. A prefix stage takes each image's ``k`` default
boxes with the best best-class score (``k = PREFIX_START * max_per_img``, growing by
``PREFIX_GROWTH``), keeps the scores at or above the ``k``-th one, caps each class at
``nms_pre`` and runs ONNX's ``NonMaxSuppression`` on those few hundred candidates. The graph
chains the stages with ``If``: a stage's result is the output when it is exact for every image of
the batch (its prefix kept ``max_per_img`` boxes or held every score above the threshold),
otherwise the next stage runs; the last one is the unbounded per-(image, class) top-``nms_pre``
of every default box. A trained model and an untrained one (every score above the paper's 0.01)
end after the first stage; only crowded images widen.

``NonMaxSuppression`` keeps at most ``max_per_img`` boxes per (image, class): exact, since no
class can place more than that in an image's top ``max_per_img``. Ties between equal scores at a
cut-off may be ordered differently from the PyTorch path (ties of float scores are rare).
"""

import io
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import Tensor
from torchvision.ops import batched_nms

from ssd_plugin.functional.postprocess import PREFIX_GROWTH, PREFIX_START, group_rank
from ssd_plugin.models.dense_heads.inference_cfg import read_test_cfg

__all__ = [
    'PostProcess',
    'PostProcessStage',
    'attach_postprocess',
    'batch_axes',
    'postprocess_onnx',
    'prefix_sizes',
    'trace_onnx',
]


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (``center_point_box=0``).

    Eager: torchvision's ``batched_nms`` over the candidates scoring above ``score_thr`` (the same
    strict ``>`` tests on scores and IoU as the operator), then each (batch, class)'s first
    ``max_per_class`` survivors. Exported: the operator itself.
    """

    @staticmethod
    def forward(
        ctx, boxes: Tensor, scores: Tensor, max_per_class: int, iou_thr: float, score_thr: float
    ) -> Tensor:
        """``boxes (N, n, 4)``, ``scores (N, G, n)`` -> ``(S, 3)`` int64 ``[batch, class, box]``."""
        num_batches, num_classes, n = scores.shape
        flat = scores.reshape(-1)
        cand = (flat > score_thr).nonzero().squeeze(1)
        group, box = cand // n, cand % n  # group: batch * G + class
        keep = batched_nms(boxes[group // num_classes, box], flat[cand], group, iou_thr)
        order, rank = group_rank(group[keep], flat[cand[keep]], num_batches * num_classes)
        index = cand[keep[order[rank < max_per_class]]]
        return torch.stack([index // (num_classes * n), index // n % num_classes, index % n], 1)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou_thr: float, score_thr: float):
        max_out = g.op('Constant', value_t=torch.tensor([max_per_class], dtype=torch.long))
        iou = g.op('Constant', value_t=torch.tensor([iou_thr], dtype=torch.float))
        thr = g.op('Constant', value_t=torch.tensor([score_thr], dtype=torch.float))
        return g.op('NonMaxSuppression', boxes, scores, max_out, iou, thr)


def prefix_sizes(num_priors: int, max_per_img: int) -> List[int]:
    """Default boxes per image of the prefix stages (the ones below ``num_priors``)."""
    sizes, size = [], PREFIX_START * max_per_img
    while size < num_priors:
        sizes.append(size)
        size *= PREFIX_GROWTH
    return sizes


class PostProcessStage(nn.Module):
    """One stage: a score prefix of ``prefix`` default boxes per image, or all (``None``).

    Args:
        test_cfg: ``score_thr``, ``nms=dict(iou_threshold=...)``, ``nms_pre``, ``max_per_img``,
            read as the head reads them (:func:`~ssd_plugin.models.dense_heads.inference_cfg.
            read_test_cfg`; ``nms`` is required).
        channel_labels: ``(C,)`` the head's channel -> label map (-1: never reported).
        prefix: Default boxes per image, or None for the unbounded stage.

    ``forward(scores, boxes)`` returns ``(dets, labels)``, and for a prefix stage also ``done``:
    a bool scalar, True when the result is exact for every image.
    """

    def __init__(self, test_cfg: dict, channel_labels: Tensor, prefix: Optional[int]) -> None:
        super().__init__()
        settings = read_test_cfg(test_cfg, need_nms=True)
        self.score_thr, self.iou_thr = settings.score_thr, settings.iou_thr
        self.nms_pre, self.max_per_img = settings.nms_pre, settings.max_per_img
        self.prefix = prefix
        self.register_buffer('channel_labels', channel_labels.detach().clone(), persistent=False)

    def forward(self, scores: Tensor, boxes: Tensor):
        num_priors, num_classes = scores.shape[1:]
        if self.prefix is None:
            n = min(self.nms_pre, num_priors) if self.nms_pre > 0 else num_priors
            # each (image, class)'s n best, NMS inside every (image, class) group at once
            cand, idx = scores.transpose(1, 2).topk(n, dim=2)  # (B, C, n)
            table = boxes.gather(1, idx.flatten(1)[..., None].expand(-1, -1, 4))  # (B, C*n, 4)
            selected = _NonMaxSuppression.apply(
                table.reshape(-1, n, 4), cand.reshape(-1, 1, n), self.max_per_img, self.iou_thr,
                self.score_thr)  # fmt: skip
            dets, labels, _ = self._top_k(cand, selected, table, shared=False)
            return dets, labels
        n = self.prefix
        best, idx = scores.amax(dim=2).topk(n, dim=1)  # (B, n), descending
        cutoff = best[:, -1:]
        # the prefix's rows as one row gather (ONNX Gather): OpenVINO 2026.4 folds the decode's
        # background-dropping Slice into a GatherElements of (B, n, C) indices and then
        # refuses the graph (its data, the softmax, has C + 1 channels)
        rows = idx + torch.arange(idx.shape[0], device=idx.device)[:, None] * num_priors
        cand = scores.reshape(-1, num_classes)[rows.flatten()].reshape(-1, n, num_classes)
        # below the cut-off: 0, which never passes "score > score_thr >= 0"
        cand = cand * (cand >= cutoff[..., None])
        if 0 < self.nms_pre < n:  # scores in the prefix rank as in the whole image
            kth = cand.topk(self.nms_pre, dim=1).values[:, -1:]
            cand = cand * (cand >= kth)
        cand = cand.transpose(1, 2)  # (B, C, n)
        table = boxes.gather(1, idx[..., None].expand(-1, -1, 4))  # (B, n, 4)
        selected = _NonMaxSuppression.apply(
            table, cand, self.max_per_img, self.iou_thr, self.score_thr)  # fmt: skip
        dets, labels, kept = self._top_k(cand, selected, table, shared=True)
        complete = cutoff[:, 0] <= self.score_thr  # the prefix holds every candidate
        done = (complete | (kept >= self.max_per_img)).all()
        return dets, labels, done

    def _top_k(
        self, cand: Tensor, selected: Tensor, table: Tensor, shared: bool
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """The image's ``max_per_img`` best NMS survivors, padded, and the survivors' count.

        ``cand (B, C, n)`` candidate scores, ``selected`` the operator's ``[group, class,
        box]`` rows (group ``b`` with ``shared`` boxes ``table (B, n, 4)``, else ``b * C + c``
        with ``table (B, C * n, 4)``).
        """
        num_classes, n = cand.shape[1:]
        flat = cand.flatten()
        if shared:
            at = (selected[:, 0] * num_classes + selected[:, 1]) * n + selected[:, 2]
        else:
            at = selected[:, 0] * n + selected[:, 2]
        kept = torch.zeros_like(flat).scatter(0, at, 1.0)
        # suppressed candidates score 0: below every kept one (kept scores are > score_thr >= 0)
        # (shapes from cand: a batch size read into a Python int would be traced as a constant)
        kept_scores = (flat * kept).view_as(cand).flatten(1)
        k = min(self.max_per_img, num_classes * n)
        det_scores, det_idx = kept_scores.topk(k, dim=1)
        box_idx = det_idx % n if shared else det_idx
        det_boxes = table.gather(1, box_idx[..., None].expand(-1, -1, 4))
        # channels -> labels; a channel the head never reports becomes a padding row
        det_labels = self.channel_labels[det_idx // n]
        valid = (det_scores > 0) & (det_labels >= 0)
        det_labels = torch.where(valid, det_labels, torch.full_like(det_labels, -1))
        dets = torch.cat([det_boxes * valid[..., None], (det_scores * valid)[..., None]], dim=-1)
        if k < self.max_per_img:
            dets = F.pad(dets, (0, 0, 0, self.max_per_img - k))
            det_labels = F.pad(det_labels, (0, self.max_per_img - k), value=-1)
        return dets, det_labels, kept.view_as(cand).flatten(1).sum(1)


class PostProcess(nn.Module):
    """The stages for a number of default boxes, run eagerly or built into one ONNX graph.

    Args:
        test_cfg: See :class:`PostProcessStage`.
        channel_labels: The head's ``channel_labels``.
        bounded: Prefix stages first; False runs only the unbounded stage.
    """

    def __init__(self, test_cfg: dict, channel_labels: Tensor, bounded: bool = True) -> None:
        super().__init__()
        self.test_cfg = dict(test_cfg)
        self.bounded = bounded
        self.register_buffer('channel_labels', channel_labels.detach().clone(), persistent=False)
        PostProcessStage(self.test_cfg, self.channel_labels, None)  # check the settings now

    def stages(self, num_priors: int) -> List[PostProcessStage]:
        max_per_img = read_test_cfg(self.test_cfg, need_nms=True).max_per_img
        sizes = prefix_sizes(num_priors, max_per_img) if self.bounded else []
        return [PostProcessStage(self.test_cfg, self.channel_labels, k) for k in sizes + [None]]

    def run(self, scores: Tensor, boxes: Tensor) -> Tuple[Tensor, Tensor, int]:
        """``(dets, labels, stage)``: the detections and the index of the stage that ended."""
        *prefixes, full = self.stages(scores.shape[1])
        for i, stage in enumerate(prefixes):
            dets, labels, done = stage(scores, boxes)
            if done:
                return dets, labels, i
        return (*full(scores, boxes), len(prefixes))

    def forward(self, scores: Tensor, boxes: Tensor) -> Tuple[Tensor, Tensor]:
        return self.run(scores, boxes)[:2]


def batch_axes(names: Sequence[str]) -> Dict[str, Dict[int, str]]:
    """A dynamic first (batch) axis for each of ``names`` but a stage's scalar ``done``."""
    return {name: {0: 'batch'} for name in names if name != 'done'}


def trace_onnx(
    module: nn.Module, example: Tuple[Tensor, ...], inputs: Sequence[str], outputs: Sequence[str],
    opset: int, dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None,
) -> onnx.ModelProto:  # fmt: skip
    """``module(*example)`` traced into an ONNX model (TorchScript exporter, see onnx_export).

    Shapes the tracer turns into constants are intended: only ``dynamic_axes`` vary.
    """
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        torch.onnx.export(module, example, buffer, input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes=dynamic_axes or {},
                          opset_version=opset, dynamo=False)  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def _chain(models: List[onnx.ModelProto]) -> onnx.ModelProto:
    """One model running ``models`` (prefix stages, then the unbounded one) through ``If``."""
    graphs = [onnx.compose.add_prefix(m, f'stage{i}/').graph for i, m in enumerate(models)]

    def typed(name: str, elem_type: int) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, elem_type, None)

    def nodes_of(i: int, dets: str, labels: str) -> List[onnx.NodeProto]:
        p = f'stage{i}/'
        nodes = [helper.make_node('Identity', [name], [p + name]) for name in ('scores', 'boxes')]
        nodes += list(graphs[i].node)
        ends = [helper.make_node('Identity', [p + 'dets'], [dets]),
                helper.make_node('Identity', [p + 'labels'], [labels])]  # fmt: skip
        if i == len(graphs) - 1:
            return nodes + ends
        then = helper.make_graph(
            [helper.make_node('Identity', [p + 'dets'], [p + 'then/dets']),
             helper.make_node('Identity', [p + 'labels'], [p + 'then/labels'])],
            p + 'exact', [],
            [typed(p + 'then/dets', TensorProto.FLOAT),
             typed(p + 'then/labels', TensorProto.INT64)])  # fmt: skip
        later = (f'stage{i + 1}/out/dets', f'stage{i + 1}/out/labels')
        widen = helper.make_graph(
            nodes_of(i + 1, *later), p + 'widen', [],
            [typed(later[0], TensorProto.FLOAT), typed(later[1], TensorProto.INT64)])  # fmt: skip
        return nodes + [helper.make_node('If', [p + 'done'], [dets, labels], then_branch=then,
                                         else_branch=widen, name=p + 'if_exact')]  # fmt: skip

    graph = helper.make_graph(
        nodes_of(0, 'dets', 'labels'),
        'ssd_postprocess',
        list(models[0].graph.input),
        list(models[-1].graph.output),
        initializer=[init for g in graphs for init in g.initializer],
    )
    model = helper.make_model(graph, opset_imports=list(models[0].opset_import))
    model.ir_version = models[0].ir_version
    return model


def postprocess_onnx(
    post: PostProcess,
    num_priors: int,
    num_classes: int,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> onnx.ModelProto:
    """``post`` as an ONNX model: ``scores (B, P, C)``, ``boxes (B, P, 4)`` -> ``dets``,
    ``labels``.

    Args:
        post: The post-processing (its ``bounded`` decides whether prefix stages come first).
        num_priors: ``P``, fixed in the graph.
        num_classes: ``C``, the head's class channels.
        opset: ONNX opset (>= 11 for ``NonMaxSuppression``; ``If`` chains need >= 11 too).
        dynamic_batch: Dynamic batch dimension.
    """
    if opset < 11:
        raise ValueError(f'post-processing in ONNX needs opset >= 11, got {opset}')
    example = (torch.rand(1, num_priors, num_classes), torch.rand(1, num_priors, 4) * 100)
    *prefixes, full = post.stages(num_priors)
    inputs = ('scores', 'boxes')

    def trace(stage: PostProcessStage, outputs: Tuple[str, ...]) -> onnx.ModelProto:
        axes = batch_axes(inputs + outputs) if dynamic_batch else None
        return trace_onnx(stage, example, inputs, outputs, opset, axes)

    models = [trace(stage, ('dets', 'labels', 'done')) for stage in prefixes]
    models.append(trace(full, ('dets', 'labels')))
    if prefixes:
        model = _chain(models)
    else:  # names apart from the network's graph, which export_onnx merges this into
        model = onnx.compose.add_prefix(models[0], 'stage0/', rename_inputs=False,
                                        rename_outputs=False)  # fmt: skip
    onnx.checker.check_model(model)
    return model


def attach_postprocess(
    model: onnx.ModelProto,
    post: PostProcess,
    num_priors: int,
    num_classes: int,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> onnx.ModelProto:
    """``model``, whose outputs are ``scores (B, P, C)`` and ``boxes (B, P, 4)``, followed by
    :func:`postprocess_onnx`'s graph: one model with ``model``'s inputs and the outputs ``dets``,
    ``labels``.

    Args:
        model: A traced graph ending in :meth:`MultiBoxHead.decode`'s outputs.
        post: See :func:`postprocess_onnx`.
        num_priors: ``P``.
        num_classes: ``C``.
        opset: The opset ``model`` was exported with.
        dynamic_batch: Dynamic batch dimension.
    """
    post_model = postprocess_onnx(post, num_priors, num_classes, opset, dynamic_batch)
    model = onnx.compose.merge_models(
        model, post_model, io_map=[('scores', 'scores'), ('boxes', 'boxes')])  # fmt: skip
    # merge_models lists each graph's opset: one entry per domain is the standard's rule
    opsets = sorted({(o.domain, o.version) for o in model.opset_import})
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets)
    return model
