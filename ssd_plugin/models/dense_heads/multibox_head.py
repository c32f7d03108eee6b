"""MODELS ``MultiBoxHead``: SSD's per-level predictors, batched loss and batched inference."""

from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import ConfigType, InstanceList, MultiConfig, OptConfigType, OptInstanceList
from mmengine.structures import InstanceData
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from ssd_plugin.functional.head_outputs import level_views
from ssd_plugin.functional.postprocess import batched_multiclass_nms
from ssd_plugin.models.utils import DerivedWeights

from .inference_cfg import InferenceCfg, read_test_cfg
from .merged_predictors import merged_pair, run_merged

__all__ = ['MultiBoxHead']


@MODELS.register_module()
class MultiBoxHead(BaseDenseHead):
    """SSD's multibox predictors (paper Sec. 2.1, Fig. 2) with a batched loss and inference.

    Level ``l`` (``k_l`` default boxes per location) gets a 3x3 (padding 1) conv to
    ``k_l * (C + 1)`` class scores (background last) and one to ``k_l * 4`` offsets. With
    ``use_depthwise`` (SSDLite, Sandler et al. 2018) each is a depthwise 3x3 ConvModule
    (``norm_cfg``/``act_cfg``) followed by a 1x1 conv, as mmdet's SSDHead.

    State-dict keys: ``cls_convs.{l}.pred.{weight,bias}`` and ``reg_convs.{l}.pred.*``; with
    ``use_depthwise`` also ``{cls,reg}_convs.{l}.depthwise.{conv,bn}.*``.

    Training matches all default boxes of the batch to the padded ground truths in one matcher
    call, encodes the offsets with ``bbox_coder`` and calls ``loss`` once on the outputs' level
    views (no flattened copy). Inference (:meth:`decode`, then :func:`batched_multiclass_nms`)
    handles the whole batch at once; unlike mmdet 3.3's SSDHead it never reads
    ``self.loss_cls`` (mmdet issue #11063).

    The first time the head sees an input shape (training, inference or ONNX export) it checks
    that the feature maps are the levels its default boxes are laid out for
    (:meth:`check_featmap_sizes`): a neck whose last map is 2x2 where the strides expect 1x1
    is an error, not default boxes centred off the image.

    A head may have more foreground output channels than classes (torchvision's COCO SSDs
    predict 90 category ids, ten of them unused "N/A"): ``class_channels`` names the channel of
    each class; the other channels take part in the softmax but are never reported (dropped
    after the per-image top-k) and are background-only in training.

    Args:
        num_classes: Object classes ``C`` (background excluded), the labels the head reports.
        in_channels: Channels of each input level; one level per prior-generator level.
        use_depthwise: SSDLite predictors.
        conv_cfg: Conv config of the depthwise ConvModules.
        norm_cfg: Norm config of the depthwise ConvModules (SSDLite: BN).
        act_cfg: Activation config of the depthwise ConvModules (SSDLite: ReLU6).
        prior_generator: Default-box generator (``TASK_UTILS``); sets ``k_l``.
        bbox_coder: Offset coder; the default is the paper's variances (0.1, 0.1, 0.2, 0.2).
        matcher: ``TASK_UTILS`` matcher with ``batch_assign(priors, gt_bboxes, gt_valid)``.
        loss: ``MODELS`` loss taking ``(cls_scores, bbox_preds, labels, bbox_targets)``.
        train_cfg: Unused (matching and loss are configured above); kept for mmdet detectors.
        test_cfg: mmdet's keys: ``score_thr``, ``nms=dict(iou_threshold=...)``, ``nms_pre``,
            ``max_per_img`` and optional ``min_bbox_size`` (boxes not wider and taller than it
            are dropped, as mmdet does); read and checked by
            :func:`~ssd_plugin.models.dense_heads.inference_cfg.read_test_cfg`. ``nms_pre`` caps
            the candidates per image and *class* before NMS (Caffe's ``top_k``, 400), not per
            feature level over all classes as in mmdet's SSDHead; mmdet's ``nms_pre=1000``
            works and costs about the same.
        init_cfg: Xavier uniform, zero bias (Caffe's ``xavier`` filler, mmdet's SSDHead).
        class_channels: Foreground output channel of each class label (length ``num_classes``);
            default: label ``i`` is channel ``i``.
        num_class_channels: Foreground output channels; default ``num_classes``. The
            background is channel ``num_class_channels`` (the last).
        clip_border: Clip decoded boxes to the image (mmdet); Caffe's SSD does not.
    """

    def __init__(
        self,
        num_classes: int = 80,
        in_channels: Sequence[int] = (512, 1024, 512, 256, 256, 256),
        use_depthwise: bool = False,
        conv_cfg: OptConfigType = None,
        norm_cfg: OptConfigType = None,
        act_cfg: OptConfigType = None,
        prior_generator: ConfigType = dict(
            type='DefaultBoxGenerator',
            input_size=300,
            strides=(8, 16, 32, 64, 100, 300),
            ratios=([2], [2, 3], [2, 3], [2, 3], [2], [2]),
            scale_range=(0.15, 0.9),
            scale_mode='caffe',
        ),
        bbox_coder: ConfigType = dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[0.1, 0.1, 0.2, 0.2],
        ),
        matcher: ConfigType = dict(type='MultiBoxMatcher', pos_iou_thr=0.5),
        loss: ConfigType = dict(type='MultiBoxLoss', neg_pos_ratio=3, beta=1.0, alpha=1.0),
        train_cfg: OptConfigType = None,
        test_cfg: OptConfigType = None,
        init_cfg: MultiConfig = dict(type='Xavier', layer='Conv2d', distribution='uniform', bias=0),
        class_channels: Optional[Sequence[int]] = None,
        num_class_channels: Optional[int] = None,
        clip_border: bool = True,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        self.num_classes = num_classes
        self.num_class_channels = num_classes if num_class_channels is None else num_class_channels
        channels = list(range(num_classes)) if class_channels is None else list(class_channels)
        if (
            len(channels) != num_classes
            or len(set(channels)) != num_classes
            or not all(0 <= c < self.num_class_channels for c in channels)
        ):
            raise ValueError(
                f'MultiBoxHead: class_channels must list {num_classes} distinct channels in '
                f'[0, {self.num_class_channels}) (num_class_channels), got {class_channels}'
            )
        self.cls_out_channels = self.num_class_channels + 1
        # channel -> reported label (-1: never reported), and label -> channel
        channel_labels = torch.full((self.num_class_channels,), -1, dtype=torch.long)
        channel_labels[channels] = torch.arange(num_classes)
        self.register_buffer('channel_labels', channel_labels, persistent=False)
        self.register_buffer('class_channels', torch.tensor(channels), persistent=False)
        self.in_channels = tuple(in_channels)
        self.prior_generator = TASK_UTILS.build(prior_generator)
        self.num_base_priors = list(self.prior_generator.num_base_priors)
        if len(self.in_channels) != len(self.num_base_priors):
            raise ValueError(
                f'MultiBoxHead: in_channels={self.in_channels} has {len(self.in_channels)} '
                f'levels but prior_generator has {len(self.num_base_priors)} '
                f'(num_base_priors={self.num_base_priors}); they must match'
            )
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.matcher = TASK_UTILS.build(matcher)
        self.loss_module = MODELS.build(loss)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.clip_border = clip_border

        layer_cfg = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for channels, k in zip(self.in_channels, self.num_base_priors):
            for convs, out in (
                (self.cls_convs, k * self.cls_out_channels),
                (self.reg_convs, k * 4),
            ):
                layers = OrderedDict()
                if use_depthwise:
                    layers['depthwise'] = ConvModule(
                        channels, channels, 3, padding=1, groups=channels, **layer_cfg
                    )
                    layers['pred'] = nn.Conv2d(channels, out, 1)
                else:
                    layers['pred'] = nn.Conv2d(channels, out, 3, padding=1)
                convs.append(nn.Sequential(layers))
        self._merged = DerivedWeights()  # run_merged's stacked predictor weights (not state)
        self._checked_shapes: Set[tuple] = set()  # (feature-map sizes, input shape) seen

    def forward(self, x: Iterable[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """Per-level ``(N, k*(C+1), H, W)`` class scores and ``(N, k*4, H, W)`` offsets."""
        x = list(x)  # any iterable of levels, as mmdet's heads take (its tests pass generators)
        if len(x) != len(self.cls_convs):
            raise ValueError(
                f'MultiBoxHead got {len(x)} feature maps but has {len(self.cls_convs)} levels '
                f'(in_channels={self.in_channels}, one per prior_generator level); make the '
                "neck's num_outs, the head's in_channels and the generator's ratios/strides agree"
            )
        # level by level, as mmdet's SSDHead: each feature map is read by its two convs in turn,
        # while it is still in cache (SSDLite's 10x10x1280 map is 4 MB at batch 8)
        cls_scores, bbox_preds = [], []
        for level, (feat, cls_conv, reg_conv) in enumerate(zip(x, self.cls_convs, self.reg_convs)):
            # inference: a level's two plain predictors as one convolution (merged_predictors)
            pair = None if self.training else merged_pair(cls_conv, reg_conv)
            outs = pair and run_merged(feat, *pair, self._merged, str(level))
            cls_score, bbox_pred = outs or (cls_conv(feat), reg_conv(feat))
            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
        return cls_scores, bbox_preds

    def check_featmap_sizes(self, outputs: Sequence[Tensor], input_shape: Sequence[int]) -> None:
        """Raise unless the outputs' maps are the levels the default boxes assume.

        See :meth:`DefaultBoxGenerator.check_featmap_sizes`; checked once per (sizes, input
        shape), so it costs nothing per step, and with Python ints only (tracing-safe).

        Args:
            outputs: Per-level head outputs (or feature maps) ``(B, *, H, W)``.
            input_shape: ``(h, w)`` of the network input (the padded batch).
        """
        sizes = tuple(tuple(int(v) for v in o.shape[-2:]) for o in outputs)
        key = (sizes, tuple(int(v) for v in input_shape[:2]))
        if key not in self._checked_shapes:
            try:
                self.prior_generator.check_featmap_sizes(key[0], key[1])
            except ValueError as e:
                raise ValueError(f'MultiBoxHead: {e}') from None
            self._checked_shapes.add(key)

    def _check_metas(self, outputs: Sequence[Tensor], batch_img_metas: Sequence[dict]) -> None:
        """:meth:`check_featmap_sizes` with the network input shape from the metas.

        mmdet's ``batch_input_shape`` (the padded batch), else the first image's ``img_shape``
        (one input size: ONNX export, tools that build metas themselves).
        """
        meta = batch_img_metas[0]
        self.check_featmap_sizes(outputs, meta.get('batch_input_shape', meta['img_shape']))

    def priors(self, cls_scores: List[Tensor]) -> Tensor:
        """The ``(P, 4)`` default boxes of these outputs, float32 whatever the outputs' dtype.

        Matching and decoding in float16 would round 300-pixel coordinates to quarter pixels.
        """
        return torch.cat(
            self.prior_generator.grid_priors(
                [s.shape[-2:] for s in cls_scores], dtype=torch.float32, device=cls_scores[0].device
            )
        )

    def flatten_outputs(
        self, cls_scores: List[Tensor], bbox_preds: List[Tensor]
    ) -> Tuple[Tensor, Tensor]:
        """``(B, P, C+1)`` class logits and ``(B, P, 4)`` offsets in default-box order."""
        num_imgs = cls_scores[0].shape[0]
        flat_cls = torch.cat(
            [
                s.permute(0, 2, 3, 1).reshape(num_imgs, -1, self.cls_out_channels)
                for s in cls_scores
            ],
            dim=1,
        )
        flat_reg = torch.cat(
            [b.permute(0, 2, 3, 1).reshape(num_imgs, -1, 4) for b in bbox_preds], dim=1
        )
        return flat_cls, flat_reg

    def decode(
        self,
        cls_scores: List[Tensor],
        bbox_preds: List[Tensor],
        batch_img_metas: Sequence[dict],
        cfg: OptConfigType = None,
    ) -> Tuple[Tensor, Tensor]:
        """Class probabilities and boxes of every default box, what NMS takes.

        Softmax over all channels, background dropped; offsets decoded with ``bbox_coder`` and
        clipped to each image's ``img_shape`` (``batch_img_metas`` may also hold one meta for
        the whole batch); the scores of boxes not wider and taller than ``min_bbox_size`` (from
        ``cfg``, default ``test_cfg``) set to 0, as mmdet does. Shared by :meth:`predict_by_feat`
        and the ONNX export.

        Returns:
            ``scores (B, P, num_class_channels)`` and ``boxes (B, P, 4)`` (``xyxy`` input
            pixels), float32.
        """
        cfg = self.test_cfg if cfg is None else cfg
        min_size = read_test_cfg(cfg).min_bbox_size if cfg is not None else -1
        self._check_metas(cls_scores, batch_img_metas)
        flat_cls, flat_reg = self.flatten_outputs(cls_scores, bbox_preds)
        priors = self.priors(cls_scores)
        num_imgs, num_priors = flat_reg.shape[:2]
        logits = flat_cls.float()
        if logits.shape[-1] < 16:
            # PyTorch's CPU softmax over a last dim narrower than its SIMD width (16 floats) is
            # ~10x slower than over a middle one (1-class face detector: 0.43 vs 0.03 ms).
            probs = logits.transpose(1, 2).softmax(1).transpose(1, 2)
        else:
            probs = logits.softmax(-1)
        scores = probs[..., : self.num_class_channels]
        boxes = self.bbox_coder.decode(
            priors.expand(num_imgs, -1, -1).reshape(-1, 4), flat_reg.float().reshape(-1, 4)
        ).view(num_imgs, num_priors, 4)
        # Clip per image (x to width, y to height), as mmdet's decode with max_shape=img_shape;
        # Caffe's DetectionOutput does not clip (clip_border=False).
        if self.clip_border:
            img_hw = boxes.new_tensor([meta['img_shape'][:2] for meta in batch_img_metas])
            boxes = torch.minimum(boxes, img_hw.flip(1).repeat(1, 2)[:, None]).clamp(min=0)
        if min_size >= 0:
            too_small = ((boxes[..., 2:] - boxes[..., :2]) <= min_size).any(-1)
            scores.masked_fill_(too_small[..., None], 0)
        return scores, boxes

    def loss_by_feat(
        self,
        cls_scores: List[Tensor],
        bbox_preds: List[Tensor],
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        batch_gt_instances_ignore: OptInstanceList = None,
    ) -> Dict[str, Tensor]:
        """MultiBox loss of a batch (paper Eq. 1), matched and mined without a per-image loop.

        Ignored (crowd) instances are kept apart by mmdet and never match, so they are left out;
        their default boxes stay candidates for background, as with mmdet's SSD settings
        (``ignore_iof_thr=-1``) and Caffe.

        Returns:
            ``dict(loss_cls=..., loss_bbox=...)``, scalars normalised by the batch's positives.
        """
        self._check_metas(cls_scores, batch_img_metas)
        priors = self.priors(cls_scores)
        num_imgs, num_priors = cls_scores[0].shape[0], priors.shape[0]
        gt_bboxes, gt_labels, gt_valid = _pad_ground_truths(batch_gt_instances, priors)
        matched, _ = self.matcher.batch_assign(priors, gt_bboxes, gt_valid)

        # Only the positives need labels and encoded targets; the rest is background.
        img_ids, prior_ids = (matched >= 0).nonzero(as_tuple=True)
        gt_ids = matched[img_ids, prior_ids]
        labels = matched.new_full((num_imgs, num_priors), self.num_class_channels)
        labels[img_ids, prior_ids] = self.class_channels[gt_labels[img_ids, gt_ids]]
        bbox_targets = priors.new_zeros((num_imgs, num_priors, 4))
        bbox_targets[img_ids, prior_ids] = self.bbox_coder.encode(
            priors[prior_ids], gt_bboxes[img_ids, gt_ids]
        )
        return self.loss_module(
            level_views(cls_scores, self.num_base_priors),
            level_views(bbox_preds, self.num_base_priors),
            labels,
            bbox_targets,
        )

    def images_above(self, cls_scores: List[Tensor], score_thr: float) -> Tensor:
        """``(B,)`` bool: images where some foreground probability may exceed ``score_thr``.

        A bound read off the outputs where the convolutions wrote them (no flattened copy, no
        full softmax): a default box's best foreground probability is
        ``1 / sum_c exp(x_c - x_best)``. The threshold is lowered by 1e-4 of itself so that
        rounding never drops an image whose softmax score passes; images that fail cannot have
        detections (an untrained model's first validation at mmdet's 0.02 has none).
        """
        best = []
        for logits in level_views(cls_scores, self.num_base_priors):
            logits = logits.float()
            top = logits[:, :, : self.num_class_channels].amax(dim=2, keepdim=True)
            denom = (logits - top).exp_().sum(dim=2)  # >= 1; inf (prob 0) if background overflows
            best.append(denom.flatten(1).amin(dim=1))
        return 1 / torch.stack(best, dim=1).amin(dim=1) > score_thr * (1 - 1e-4)

    def predict_by_feat(
        self,
        cls_scores: List[Tensor],
        bbox_preds: List[Tensor],
        score_factors: Optional[List[Tensor]] = None,
        batch_img_metas: Optional[List[dict]] = None,
        cfg: OptConfigType = None,
        rescale: bool = False,
        with_nms: bool = True,
    ) -> InstanceList:
        """Detections of a batch (paper Sec. 3 "Inference"), all images at once.

        Boxes are decoded and clipped to each image's ``img_shape``; with ``rescale`` they are
        divided by its ``scale_factor`` (NMS runs before rescaling: IoU is invariant to scaling
        each axis). ``batch_img_metas`` holds one meta per image or, as :meth:`decode` takes,
        one for the whole batch. ``score_factors`` must be None (SSD has none);
        ``with_nms=False`` or no ``test_cfg.nms`` skips NMS. The test config is read by
        :func:`~ssd_plugin.models.dense_heads.inference_cfg.read_test_cfg` (its defaults).

        Returns:
            One ``InstanceData(bboxes, scores, labels)`` per image, sorted by descending score.
        """
        if score_factors is not None:
            raise ValueError('MultiBoxHead has no score factors; score_factors must be None')
        cfg = self.test_cfg if cfg is None else cfg
        settings = read_test_cfg(cfg)
        num_imgs = cls_scores[0].shape[0]
        if batch_img_metas is None or len(batch_img_metas) not in (1, num_imgs):
            raise ValueError(
                f'MultiBoxHead.predict_by_feat: batch_img_metas must hold one meta per image '
                f'({num_imgs}) or one for the whole batch, got '
                f'{None if batch_img_metas is None else len(batch_img_metas)}'
            )
        self._check_metas(cls_scores, batch_img_metas)
        empty = cls_scores[0].new_zeros((0, 4))
        results = [
            InstanceData(bboxes=empty, scores=empty[:, 0], labels=empty[:, 0].long())
            for _ in range(num_imgs)
        ]
        decoded, cls_scores, bbox_preds, batch_img_metas = self._images_to_decode(
            cls_scores, bbox_preds, batch_img_metas, settings.score_thr
        )
        if not decoded:
            return results
        scores, boxes = self.decode(cls_scores, bbox_preds, batch_img_metas, cfg)
        detections = self._nms(scores, boxes, settings, with_nms)
        if rescale:
            scale = boxes.new_tensor([meta['scale_factor'] for meta in batch_img_metas])
            detections[0] = detections[0] / scale.repeat(1, 2)[:, None]
        # Slice each row's valid detections with one host read.
        det_boxes, det_scores, det_labels, det_valid = detections
        for i, n, boxes_i, scores_i, labels_i in zip(
            decoded, det_valid.sum(1).tolist(), det_boxes, det_scores, det_labels
        ):
            results[i] = InstanceData(bboxes=boxes_i[:n], scores=scores_i[:n], labels=labels_i[:n])
        return results

    def _images_to_decode(
        self,
        cls_scores: List[Tensor],
        bbox_preds: List[Tensor],
        batch_img_metas: List[dict],
        score_thr: float,
    ) -> Tuple[List[int], List[Tensor], List[Tensor], List[dict]]:
        """The images that can have detections, and their outputs and metas.

        Decoding costs a full softmax and copy: :meth:`images_above` (one host read) skips the
        images whose every score is at or below ``score_thr``.
        """
        decoded = list(range(cls_scores[0].shape[0]))
        if score_thr > 0:
            active = self.images_above(cls_scores, score_thr).tolist()
            decoded = [i for i in decoded if active[i]]
        if 0 < len(decoded) < cls_scores[0].shape[0]:
            index = torch.tensor(decoded, device=cls_scores[0].device)
            cls_scores = [s[index] for s in cls_scores]
            bbox_preds = [b[index] for b in bbox_preds]
            if len(batch_img_metas) > 1:  # a single meta stands for every image
                batch_img_metas = [batch_img_metas[i] for i in decoded]
        return decoded, cls_scores, bbox_preds, batch_img_metas

    def _nms(
        self, scores: Tensor, boxes: Tensor, settings: InferenceCfg, with_nms: bool
    ) -> List[Tensor]:
        """:func:`batched_multiclass_nms` with channels mapped to labels, valid rows first.

        Returns:
            ``[boxes (B, K, 4), scores (B, K), labels (B, K), valid (B, K)]``.
        """
        det_boxes, det_scores, det_labels, det_valid = batched_multiclass_nms(
            boxes,
            scores,
            score_thr=settings.score_thr,
            iou_thr=settings.iou_thr if with_nms else None,
            nms_pre_per_class=settings.nms_pre,
            max_per_img=settings.max_per_img,
        )
        det_labels = self.channel_labels[det_labels]
        if self.num_classes < self.num_class_channels:
            det_valid &= det_labels >= 0  # unreported channels leave after the top-k
            # Valid detections lead each row, but unreported channels can leave gaps: compact
            # them to the front (a stable sort of the valid flags).
            order = torch.argsort((~det_valid).to(torch.uint8), dim=1, stable=True)
            det_boxes = det_boxes.gather(1, order[..., None].expand(-1, -1, 4))
            det_scores, det_labels = det_scores.gather(1, order), det_labels.gather(1, order)
        return [det_boxes, det_scores, det_labels, det_valid]


def _pad_ground_truths(
    batch_gt_instances: InstanceList, priors: Tensor
) -> Tuple[Tensor, Tensor, Tensor]:
    """Stack per-image ground truths into ``(B, G, 4)`` boxes, ``(B, G)`` labels and validity.

    Padding and degenerate boxes (non-finite, or without positive width and height) are
    invalid, so they never match.
    """
    boxes = [get_box_tensor(gt.bboxes).to(priors) for gt in batch_gt_instances]
    gt_bboxes = pad_sequence(boxes, batch_first=True)
    gt_labels = pad_sequence([gt.labels for gt in batch_gt_instances], batch_first=True)
    # Made on the device (a tensor of the lengths would be a host-to-device copy, a sync).
    present = pad_sequence(
        [torch.ones(len(b), dtype=torch.bool, device=priors.device) for b in boxes],
        batch_first=True,
    )
    wh = gt_bboxes[..., 2:] - gt_bboxes[..., :2]
    gt_valid = present & torch.isfinite(gt_bboxes).all(-1) & (wh > 0).all(-1)
    return gt_bboxes, gt_labels.to(priors.device).long(), gt_valid
