"""The tiny Caffe SSD converted: backbone, default boxes, head channels and decode vs Caffe."""

import numpy as np
import pytest
import torch
from caffe_reference import backbone, decode_center_size, head_outputs, priors
from mmdet.apis import inference_detector, init_detector
from mmdet.registry import MODELS
from mmengine.config import Config
from tiny_ssd import LEVELS, write_net

from ssd_plugin.caffe.caffe_net import CaffeNet, module_key
from ssd_plugin.caffe.converter import convert

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


def _build(config_path, checkpoint_path):
    cfg = Config.fromfile(config_path)
    model = MODELS.build(cfg.model).eval()
    state = torch.load(checkpoint_path, map_location='cpu', weights_only=True)['state_dict']
    model.load_state_dict(state)
    return cfg, model


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('tiny')
    prototxt, caffemodel, blobs = write_net(tmp, background=1)
    lines = []
    paths = convert(prototxt, caffemodel, tmp / 'out', mean=(10, 20, 30), log=lines.append)
    return paths, blobs, lines


def test_backbone_matches_caffe_layers(converted):
    (config_path, checkpoint_path), blobs, _ = converted
    _, model = _build(config_path, checkpoint_path)
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        feats = model.backbone(x)
    ref = backbone(x, blobs)
    assert [tuple(f.shape[-2:]) for f in feats] == [lv[2] for lv in LEVELS]  # pool1: ceil
    for got, want in zip(feats, ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_default_boxes_match_caffe_prior_box(converted):
    (config_path, checkpoint_path), _, _ = converted
    _, model = _build(config_path, checkpoint_path)
    sizes = [lv[2] for lv in LEVELS]
    got = torch.cat(model.bbox_head.prior_generator.grid_priors(sizes, device='cpu'))
    want = priors() * 40
    assert got.shape == (sum(h * w * k for (_, _, (h, w), _, _, k) in LEVELS), 4)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-4)


def test_scores_and_boxes_match_caffe_detection_output(converted):
    """Background (Caffe label 1) moved last, boxes decoded as Caffe's CENTER_SIZE, no clip."""
    (config_path, checkpoint_path), blobs, _ = converted
    _, model = _build(config_path, checkpoint_path)
    x = torch.randn(2, 3, 40, 40) * 3
    with torch.no_grad():
        cls, reg = model.bbox_head(model.backbone(x))
        metas = [dict(img_shape=(40, 40))] * 2
        scores, boxes = model.bbox_head.decode(cls, reg, metas)
    loc, conf = head_outputs(backbone(x, blobs), blobs)
    np.testing.assert_allclose(scores.numpy(), conf[..., [0, 2]], rtol=1e-4, atol=1e-6)
    want = decode_center_size(loc, priors()) * 40
    assert (want < 0).any() or (want > 40).any()  # some boxes leave the image: not clipped
    np.testing.assert_allclose(boxes.numpy(), want, rtol=1e-4, atol=1e-3)


def test_config_and_printed_assumptions(converted):
    (config_path, _), _, lines = converted
    cfg = Config.fromfile(config_path)
    assert cfg.model.data_preprocessor.mean == [10.0, 20.0, 30.0]
    assert cfg.model.data_preprocessor.std == [1.0, 1.0, 1.0]
    assert not cfg.model.data_preprocessor.bgr_to_rgb
    assert cfg.model.test_cfg == dict(
        score_thr=pytest.approx(0.01),
        nms_pre=100,
        nms=dict(type='nms', iou_threshold=pytest.approx(0.45)),
        max_per_img=50,
    )
    assert cfg.model.bbox_head.clip_border is False
    assert cfg.model.bbox_head.kernel_sizes == [3, 1, 3]
    assert cfg.metainfo.classes == ('class0', 'class2')
    assert cfg.test_pipeline[1] == dict(type='Resize', scale=(40, 40), keep_ratio=False)
    text = '\n'.join(lines)
    assert 'BGR input, mean [10, 20, 30], std none' in text
    assert '727 default boxes' in text  # 10*10*4 + 5*5*12 + 3*3*3


def test_inference_detector_on_an_image_file(converted, tmp_path):
    """mmdet's API takes the converted files as they are; boxes come back in image pixels."""
    import cv2

    (config_path, checkpoint_path), blobs, _ = converted
    img = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, img)
    model = init_detector(config_path, checkpoint_path, device='cpu')
    assert model.dataset_meta['classes'] == ('class0', 'class2')
    result = inference_detector(model, path).pred_instances
    # the same image through Caffe's arithmetic: uint8 resize, mean subtraction, decode
    blob = cv2.resize(img, (40, 40), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    blob = torch.from_numpy(blob - np.float32([10, 20, 30])).permute(2, 0, 1)[None]
    loc, conf = head_outputs(backbone(blob, blobs), blobs)
    boxes = decode_center_size(loc, priors())[0] * [80, 60, 80, 60]
    fg = conf[0][:, [0, 2]]  # foreground classes in label order
    prior, label = np.unravel_index(np.argmax(fg), fg.shape)
    top = int(result.scores.argmax())
    assert int(result.labels[top]) == label
    assert float(result.scores[top]) == pytest.approx(fg[prior, label], abs=1e-4)
    np.testing.assert_allclose(result.bboxes[top].numpy(), boxes[prior], rtol=1e-4, atol=1e-2)


def test_names_never_become_code(tmp_path):
    """A layer name with quotes, newlines and code stays a string in config.py."""
    from tiny_ssd import prototxt_text

    evil = 'x\\"; import os; os.system(\\"echo pwned\\") #\\n'
    text = prototxt_text().replace('name: "conv3"', f'name: "{evil}"')
    text = text.replace('name: "conv3_relu"', 'name: "conv3 relu"')
    prototxt = tmp_path / 'deploy.prototxt'
    prototxt.write_text(text)
    from tiny_ssd import random_blobs, write_caffemodel

    from ssd_plugin.caffe.converter.proto import read_prototxt

    evil_name = [n.name for n in read_prototxt(prototxt).layer if n.name.startswith('x"')][0]
    blobs = random_blobs()
    blobs[evil_name] = blobs.pop('conv3')
    caffemodel = str(tmp_path / 'm.caffemodel')
    write_caffemodel(caffemodel, str(prototxt), blobs)
    config_path, _ = convert(str(prototxt), caffemodel, tmp_path / 'out', classes=['a"b', "c'\n"])
    cfg = Config.fromfile(config_path)
    names = [layer['name'] for layer in cfg.model.backbone.layers]
    assert evil_name in names and 'conv3 relu' in names
    assert cfg.metainfo.classes == ('a"b', "c'\n")
    assert module_key(evil_name) in dict(
        CaffeNet(cfg.model.backbone.layers, ['norm']).layers.named_children()
    )


def test_the_head_checks_the_maps_the_net_was_converted_for(tmp_path):
    """Caffe's steps hold for the feature-map sizes at the converted input size only (tiny_ssd's
    LEVELS: 10x10, 5x5 and 3x3 on 40x40); another input size is an error naming both."""
    prototxt, caffemodel, _ = write_net(tmp_path)
    config_path, _ = convert(prototxt, caffemodel, tmp_path / 'out', log=lambda line: None)
    cfg = Config.fromfile(config_path)
    assert cfg.model.bbox_head.featmap_sizes == [list(hw) for _, _, hw, *_ in LEVELS]
    head = MODELS.build(cfg.model).bbox_head
    feats = [torch.zeros(1, c, h, w) for _, c, (h, w), *_ in LEVELS]
    head.check_featmap_sizes(feats, (40, 40))
    with pytest.raises(
        ValueError, match=r'converted for \[\(10, 10\), \(5, 5\), \(3, 3\)\] on 40x40'
    ):
        head.check_featmap_sizes(feats, (48, 48))
