"""``PriorBox`` and ``DetectionOutput`` layers -> the plugin's default boxes, coder and test_cfg.

Caffe's ``PriorBox`` options map onto :class:`DefaultBoxGenerator`'s pixel mode (its sizes cast
to ``int`` as Caffe does; derived steps kept as floats), its variances onto the box coder's
``target_stds``, and ``DetectionOutput``'s options onto ``test_cfg`` (``top_k`` per class is
``nms_pre``, ``keep_top_k`` is ``max_per_img``). Options the plugin cannot express are errors.
"""

import math
from typing import List, Sequence, Tuple

from .errors import field_error

__all__ = ['prior_generator_cfg', 'detection_cfg', 'class_permutation', 'f32']


def f32(value: float) -> float:
    """A float32 field as the short decimal it was written as (0.1, not 0.10000000149)."""
    return float(f'{value:.7g}')


def _positive(layer, field: str, values: Sequence[float]) -> List[float]:
    """``values`` as written (:func:`f32`); each must be a finite number above 0."""
    for v in values:
        if not math.isfinite(v) or v <= 0:
            raise field_error(layer, f'prior_box_param.{field}', f'{v!r}; must be above 0')
    return [f32(v) for v in values]


def _variances(layer) -> List[float]:
    v = _positive(layer, 'variance', layer.prior_box_param.variance)
    if not v:
        return [0.1] * 4  # Caffe's default
    if len(v) == 1:
        return v * 4
    if len(v) != 4:
        raise field_error(layer, 'prior_box_param.variance', f'{v}: needs 1 or 4 values')
    return v


def _sizes(layer, notes: List[str]) -> Tuple[List[int], List[int]]:
    """``min_size`` and ``max_size`` cast to int as Caffe does; max above min, pairwise."""
    p = layer.prior_box_param
    if not p.min_size:
        raise field_error(layer, 'prior_box_param.min_size', 'missing')
    floats = [_positive(layer, f, getattr(p, f)) for f in ('min_size', 'max_size')]
    mins, maxs = ([int(s) for s in values] for values in floats)
    if min(mins) < 1:
        raise field_error(layer, 'prior_box_param.min_size', f'{floats[0]}: below 1 pixel')
    if floats[0] + floats[1] != [float(s) for s in mins + maxs]:
        notes.append(
            f'PriorBox {layer.name!r}: sizes {floats[0]}/{floats[1]} truncated to '
            f'{mins}/{maxs} as Caffe does'
        )
    if maxs and len(maxs) != len(mins):
        raise field_error(
            layer,
            'prior_box_param.max_size',
            f'{len(maxs)} values for {len(mins)} min_size (Caffe pairs them)',
        )
    for lo, hi in zip(mins, maxs):
        if hi <= lo:
            raise field_error(
                layer, 'prior_box_param.max_size', f'{hi} is not above its min_size {lo}'
            )
    return mins, maxs


def _steps(layer, featmap_hw: Tuple[int, int], input_hw: Tuple[int, int]) -> Tuple[float, float]:
    """``(step_w, step_h)``: as written, else the input size over the feature-map size."""
    p = layer.prior_box_param
    if not (p.HasField('step') or p.HasField('step_h') or p.HasField('step_w')):
        return f32(input_hw[1] / featmap_hw[1]), f32(input_hw[0] / featmap_hw[0])
    fields = ('step', 'step_h', 'step_w')
    _positive(layer, 'step', [getattr(p, f) for f in fields if p.HasField(f)])
    return f32(p.step_w or p.step), f32(p.step_h or p.step)


def _prior_level(layer, featmap_hw, input_hw, notes: List[str]) -> dict:
    """One PriorBox layer's DefaultBoxGenerator options (and its clip and variances)."""
    p = layer.prior_box_param
    h, w = input_hw
    for field in ('img_size', 'img_h', 'img_w'):
        if p.HasField(field) and getattr(p, field) < 1:
            raise field_error(layer, f'prior_box_param.{field}', '0; must be at least 1')
    img_h, img_w = p.img_h or p.img_size or h, p.img_w or p.img_size or w
    if (img_h, img_w) != (h, w):
        raise field_error(
            layer, 'prior_box_param.img_size', f'{img_h}x{img_w} differs from the input {h}x{w}'
        )
    if not math.isclose(p.offset, 0.5, abs_tol=1e-6):
        raise field_error(
            layer,
            'prior_box_param.offset',
            f'{p.offset}; DefaultBoxGenerator centres boxes at offset 0.5 only',
        )
    mins, maxs = _sizes(layer, notes)
    return dict(
        min_size=mins[0] if len(mins) == 1 else mins,
        max_size=(maxs[0] if len(maxs) == 1 else maxs) if maxs else None,
        ratios=_positive(layer, 'aspect_ratio', p.aspect_ratio),
        flip=bool(p.flip),
        clip=bool(p.clip),
        stride=_steps(layer, featmap_hw, input_hw),
        variances=_variances(layer),
    )


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

    Raises:
        CaffeFormatError: A field out of its range (a size, ratio, step or variance not above
            0, a max_size not above its min_size) or one the plugin cannot express, naming the
            layer and the field.
    """
    levels = [
        _prior_level(layer, hw, input_hw, notes) for layer, hw in zip(prior_layers, featmap_sizes)
    ]
    clips = [lv['clip'] for lv in levels]
    variances = [lv['variances'] for lv in levels]
    for layer, lv in zip(prior_layers, levels):
        if lv['clip'] != clips[0]:
            raise field_error(
                layer,
                'prior_box_param.clip',
                f'{lv["clip"]}, {clips[0]} in {prior_layers[0].name!r}; DefaultBoxGenerator '
                'clips all levels or none',
            )
        if lv['variances'] != variances[0]:
            raise field_error(
                layer,
                'prior_box_param.variance',
                f'{lv["variances"]}, {variances[0]} in {prior_layers[0].name!r}; the box coder '
                'has one set',
            )
    cfg = dict(
        type='DefaultBoxGenerator',
        input_size=tuple(input_hw),
        strides=[lv['stride'] for lv in levels],
        ratios=[lv['ratios'] for lv in levels],
        min_sizes=[lv['min_size'] for lv in levels],
        max_sizes=[lv['max_size'] for lv in levels],
        flip=[lv['flip'] for lv in levels],
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
    field = 'detection_output_param'
    if not p.share_location:
        raise field_error(
            layer,
            f'{field}.share_location',
            'share_location: false (one box per class) is not supported; the plugin predicts '
            'one box per default box',
        )
    code = _enum_name(p, 'code_type')
    if code != 'CENTER_SIZE':
        raise field_error(
            layer,
            f'{field}.code_type',
            f"code_type {code} is not supported (CENTER_SIZE only; Caffe's default is CORNER, "
            'so SSD nets set it)',
        )
    if p.nms_param.eta != 1:
        raise field_error(
            layer,
            f'{field}.nms_param.eta',
            f'{p.nms_param.eta} (adaptive NMS below 1; Caffe refuses above 1) is not supported',
        )
    _check_detection_ranges(layer)
    if p.background_label_id < 0 or p.background_label_id >= p.num_classes:
        raise field_error(
            layer,
            f'{field}.background_label_id',
            f'{p.background_label_id} outside 0..{p.num_classes - 1}; the plugin needs a '
            'background class',
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


def _check_detection_ranges(layer) -> None:
    """Caffe's ranges of DetectionOutput's numbers (it CHECKs them at set-up)."""
    p = layer.detection_output_param
    field = 'detection_output_param'
    if p.num_classes < 2:
        raise field_error(
            layer, f'{field}.num_classes', f'{p.num_classes}; the background and 1 class or more'
        )
    nms = p.nms_param.nms_threshold
    if not (math.isfinite(nms) and 0 <= nms <= 1):
        raise field_error(layer, f'{field}.nms_param.nms_threshold', f'{nms!r}; must be in [0, 1]')
    if p.HasField('confidence_threshold') and not math.isfinite(p.confidence_threshold):
        raise field_error(
            layer, f'{field}.confidence_threshold', f'{p.confidence_threshold!r}; not finite'
        )


def class_permutation(num_classes: int, background: int) -> List[int]:
    """Caffe class channel of each plugin channel: foreground in Caffe's order, background last."""
    return [c for c in range(num_classes) if c != background] + [background]
