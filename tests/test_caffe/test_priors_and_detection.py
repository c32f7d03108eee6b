"""PriorBox -> DefaultBoxGenerator and DetectionOutput -> test_cfg, against Caffe's rules."""

import numpy as np
import pytest
from caffe_prior_box import caffe_prior_box
from google.protobuf import text_format
from mmdet.registry import TASK_UTILS

from ssd_plugin.caffe.converter.head_spec import (
    class_permutation,
    detection_cfg,
    prior_generator_cfg,
)
from ssd_plugin.caffe.converter.proto import CaffeFormatError, LayerParameter


def _layer(text: str):
    return text_format.Parse(text, LayerParameter())


def _priors(layers, sizes, input_hw):
    notes = []
    cfg, variances = prior_generator_cfg(layers, sizes, input_hw, notes)
    gen = TASK_UTILS.build(cfg)
    return (
        np.concatenate([p.numpy() for p in gen.grid_priors(sizes, device='cpu')]),
        variances,
        notes,
    )


def test_res10_levels_with_explicit_steps_leave_the_image():
    """The face detector's 5x5 levels with steps 100 and 300: centres up to 1350 px; 8892 boxes."""
    table = [
        ((38, 38), 30, 60, [2], 8),
        ((19, 19), 60, 111, [2, 3], 16),
        ((10, 10), 111, 162, [2, 3], 32),
        ((5, 5), 162, 213, [2, 3], 64),
        ((5, 5), 213, 264, [2], 100),
        ((5, 5), 264, 315, [2], 300),
    ]
    layers = [
        _layer(
            f'name: "p{i}" type: "PriorBox" prior_box_param {{ min_size: {lo} max_size: {hi} '
            + ' '.join(f'aspect_ratio: {r}' for r in ratios)
            + f' flip: true clip: false variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 '
            f'step: {step} offset: 0.5 }}'
        )
        for i, (_, lo, hi, ratios, step) in enumerate(table)
    ]
    got, variances, _ = _priors(layers, [t[0] for t in table], (300, 300))
    want = np.concatenate(
        [
            np.asarray(caffe_prior_box(fm, (300, 300), [lo], [hi], r, step_hw=(s, s))) * 300
            for fm, lo, hi, r, s in table
        ]
    )
    assert got.shape == (8892, 4)
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert got[:, 2].max() > 1300
    assert variances == [pytest.approx(v) for v in (0.1, 0.1, 0.2, 0.2)]


def test_derived_float_step_min_size_only_and_int_cast():
    """MobileNet-SSD's first level (min 60 only, step 300/19) and a truncated size (35.84 -> 35)."""
    layers = [
        _layer('name: "a" prior_box_param { min_size: 60 aspect_ratio: 2 flip: true }'),
        _layer(
            'name: "b" prior_box_param { min_size: 35.84 min_size: 50 max_size: 76.8 '
            'max_size: 90 aspect_ratio: 3 flip: false variance: 0.1 }'
        ),
    ]
    got, variances, notes = _priors(layers, [(19, 19), (3, 4)], (300, 400))
    scale = np.array([400, 300, 400, 300])
    want = np.concatenate(
        [
            np.asarray(caffe_prior_box((19, 19), (300, 400), [60], None, [2])) * scale,
            np.asarray(caffe_prior_box((3, 4), (300, 400), [35, 50], [76, 90], [3], flip=False))
            * scale,
        ]
    )
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert variances == [pytest.approx(0.1)] * 4
    assert any('truncated' in n and "'b'" in n for n in notes)


@pytest.mark.parametrize(
    'text, match',
    [
        ('prior_box_param { min_size: 30 offset: 0.3 }', 'offset'),
        ('prior_box_param { min_size: 30 img_size: 512 }', 'img_size'),
        ('prior_box_param { min_size: 30 variance: 0.1 variance: 0.2 }', 'variance'),
        ('prior_box_param { max_size: 30 }', 'min_size: missing'),
    ],
)
def test_prior_box_options_the_plugin_cannot_express(text, match):
    with pytest.raises(CaffeFormatError, match=match):
        prior_generator_cfg([_layer(f'name: "pb" {text}')], [(2, 2)], (300, 300), [])


def test_detection_output_to_test_cfg():
    layer = _layer(
        'name: "det" detection_output_param { num_classes: 21 background_label_id: 0 '
        'nms_param { nms_threshold: 0.45 top_k: 400 } code_type: CENTER_SIZE keep_top_k: 200 '
        'confidence_threshold: 0.01 }'
    )
    test_cfg, coder, clip = detection_cfg(layer, [0.1, 0.1, 0.2, 0.2], 8732)
    assert test_cfg == dict(
        score_thr=pytest.approx(0.01),
        nms_pre=400,
        nms=dict(type='nms', iou_threshold=pytest.approx(0.45)),
        max_per_img=200,
    )
    assert coder['target_stds'] == [pytest.approx(v) for v in (0.1, 0.1, 0.2, 0.2)]
    assert clip is False
    # no threshold, no top_k, no keep_top_k: Caffe keeps everything
    bare = _layer(
        'name: "d" detection_output_param { num_classes: 3 code_type: CENTER_SIZE '
        'variance_encoded_in_target: true clip: true }'
    )
    test_cfg, coder, clip = detection_cfg(bare, [0.1, 0.1, 0.2, 0.2], 100)
    assert (test_cfg['score_thr'], test_cfg['nms_pre'], test_cfg['max_per_img']) == (0.0, -1, 200)
    assert coder['target_stds'] == [1.0] * 4 and clip is True


@pytest.mark.parametrize(
    'text, match',
    [
        ('share_location: false code_type: CENTER_SIZE', 'share_location'),
        ('code_type: CORNER', 'code_type CORNER'),
        ('keep_top_k: 5', 'code_type CORNER'),  # Caffe's default code type
        ('code_type: CENTER_SIZE nms_param { eta: 0.9 }', 'eta'),
        ('code_type: CENTER_SIZE background_label_id: -1', 'background'),
    ],
)
def test_detection_output_options_refused(text, match):
    layer = _layer(f'name: "det" detection_output_param {{ num_classes: 3 {text} }}')
    with pytest.raises(CaffeFormatError, match=match):
        detection_cfg(layer, [0.1] * 4, 10)


def test_class_permutation_moves_background_last():
    assert class_permutation(4, 0) == [1, 2, 3, 0]
    assert class_permutation(4, 2) == [0, 1, 3, 2]
