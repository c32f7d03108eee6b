"""``PriorBox`` and ``DetectionOutput`` layers -> the plugin's default boxes, coder and test_cfg.

Caffe's ``PriorBox`` options map onto :class:`DefaultBoxGenerator`'s pixel mode (its sizes cast
to ``int`` as Caffe does; derived steps kept as floats), its variances onto the box coder's
``target_stds``, and ``DetectionOutput``'s options onto ``test_cfg`` (``top_k`` per class is
``nms_pre``, ``keep_top_k`` is ``max_per_img``). Options the plugin cannot express are errors.
"""

from typing import List, Sequence, Tuple

from .proto import CaffeFormatError

__all__ = ['prior_generator_cfg', 'detection_cfg', 'class_permutation', 'f32']


def f32(value: float) -> float:
    """A float32 field as the short decimal it was written as (0.1, not 0.10000000149)."""
    return float(f'{value:.7g}')


def _variances(layer) -> List[float]:
    v = [f32(x) for x in layer.prior_box_param.variance]
    if not v:
        return [0.1] * 4  # Caffe's default
    if len(v) == 1:
        return v * 4
    if len(v) != 4:
        raise CaffeFormatError(f'PriorBox {layer.name!r}: variance needs 1 or 4 values, got {v}')
    return v


def prior_generator_cfg(
    prior_layers: Sequence[object],
    featmap_sizes: Sequence[Tuple[int, int]],
    input_hw: Tuple[int, int],
    notes: List[str],
) -> Tuple[dict, List[float]]:
    """The ``DefaultBoxGenerator`` config of the ``PriorBox`` layers and the variances.

    Args:
        prior_layers: One ``PriorBox`` LayerParameter per level.
        featmap_sizes: ``(H, W)`` of each level's feature map (computed by the backbone).
        input_hw: Network input ``(H, W)``.
        notes: Receives what was assumed (printed by the converter).
    """
    h, w = input_hw
    min_sizes, max_sizes, ratios, flips, clips, strides, variances = [], [], [], [], [], [], []
    for layer, (fh, fw) in zip(prior_layers, featmap_sizes):
        p = layer.prior_box_param
        name = layer.name
        img_h = p.img_h or p.img_size or h
        img_w = p.img_w or p.img_size or w
        if (img_h, img_w) != (h, w):
            raise CaffeFormatError(
                f'PriorBox {name!r}: img_size {img_h}x{img_w} differs from the input {h}x{w}'
            )
        if abs(p.offset - 0.5) > 1e-6:
            raise CaffeFormatError(
                f'PriorBox {name!r}: offset {p.offset}; DefaultBoxGenerator centres boxes at '
                'offset 0.5 only'
            )
        if not p.min_size:
            raise CaffeFormatError(f'PriorBox {name!r}: min_size missing')
        # Caffe stores min_size/max_size as float but casts them to int.
        mins = [int(s) for s in p.min_size]
        maxs = [int(s) for s in p.max_size]
        if [float(s) for s in p.min_size] + [float(s) for s in p.max_size] != [
            float(s) for s in mins + maxs
        ]:
            notes.append(
                f'PriorBox {name!r}: sizes {list(p.min_size)}/{list(p.max_size)} truncated to '
                f'{mins}/{maxs} as Caffe does'
            )
        if maxs and len(maxs) != len(mins):
            raise CaffeFormatError(
                f'PriorBox {name!r}: {len(maxs)} max_size for {len(mins)} min_size (Caffe pairs '
                'them)'
            )
        if p.HasField('step') or p.step_h or p.step_w:
            step_h = f32(p.step_h or p.step)
            step_w = f32(p.step_w or p.step)
        else:
            step_h, step_w = h / fh, w / fw
        min_sizes.append(mins[0] if len(mins) == 1 else mins)
        max_sizes.append((maxs[0] if len(maxs) == 1 else maxs) if maxs else None)
        ratios.append([f32(r) for r in p.aspect_ratio])
        flips.append(bool(p.flip))
        clips.append(bool(p.clip))
        strides.append((f32(step_w), f32(step_h)))
        variances.append(_variances(layer))
    if len(set(clips)) != 1:
        raise CaffeFormatError(
            f'PriorBox clip differs between levels ({clips}); DefaultBoxGenerator clips all or none'
        )
    if any(v != variances[0] for v in variances):
        raise CaffeFormatError(
            f'PriorBox variances differ between levels ({variances}); the box coder has one set'
        )
    cfg = dict(
        type='DefaultBoxGenerator',
        input_size=(h, w),
        strides=strides,
        ratios=ratios,
        min_sizes=min_sizes,
        max_sizes=max_sizes,
        flip=flips,
        clip=clips[0],
    )
    return cfg, variances[0]


def _enum_name(message, field: str) -> str:
    return (
        message.DESCRIPTOR.fields_by_name[field]
        .enum_type.values_by_number[getattr(message, field)]
        .name
    )


def detection_cfg(layer, variances: Sequence[float], num_priors: int) -> Tuple[dict, dict, bool]:
    """``(test_cfg, bbox_coder, clip)`` of a ``DetectionOutput`` layer.

    Raises:
        CaffeFormatError: ``share_location: false``, a ``code_type`` other than CENTER_SIZE,
            ``nms_param { eta }`` below 1 (adaptive NMS) or no background class.
    """
    p = layer.detection_output_param
    name = layer.name
    if not p.share_location:
        raise CaffeFormatError(
            f'DetectionOutput {name!r}: share_location: false (one box per class) is not '
            'supported; the plugin predicts one box per default box'
        )
    code = _enum_name(p, 'code_type')
    if code != 'CENTER_SIZE':
        raise CaffeFormatError(
            f'DetectionOutput {name!r}: code_type {code} is not supported (CENTER_SIZE only; '
            "Caffe's default is CORNER, so SSD nets set it)"
        )
    if p.nms_param.eta < 1:
        raise CaffeFormatError(
            f'DetectionOutput {name!r}: nms_param eta {p.nms_param.eta} (adaptive NMS) is not '
            'supported'
        )
    if p.background_label_id < 0 or p.background_label_id >= p.num_classes:
        raise CaffeFormatError(
            f'DetectionOutput {name!r}: background_label_id {p.background_label_id} outside '
            f'0..{p.num_classes - 1}; the plugin needs a background class'
        )
    top_k = p.nms_param.top_k if p.nms_param.HasField('top_k') else -1
    keep = p.keep_top_k if p.keep_top_k > 0 else num_priors * (p.num_classes - 1)
    test_cfg = dict(
        # Caffe keeps scores strictly above the threshold (all of them if unset).
        score_thr=f32(p.confidence_threshold) if p.HasField('confidence_threshold') else 0.0,
        nms_pre=int(top_k) if top_k > 0 else -1,
        nms=dict(type='nms', iou_threshold=f32(p.nms_param.nms_threshold)),
        max_per_img=int(keep),
    )
    stds = [1.0] * 4 if p.variance_encoded_in_target else list(variances)
    # DeltaXYWHBBoxCoder without mmdet's size clamp (Caffe has none)
    coder = dict(type='CaffeCenterSizeCoder', target_means=[0.0] * 4, target_stds=stds)
    return test_cfg, coder, bool(p.clip)


def class_permutation(num_classes: int, background: int) -> List[int]:
    """Caffe class channel of each plugin channel: foreground in Caffe's order, background last."""
    return [c for c in range(num_classes) if c != background] + [background]
