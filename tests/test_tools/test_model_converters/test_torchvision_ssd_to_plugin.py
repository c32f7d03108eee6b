"""torchvision's SSD300-VGG16 and SSDLite320-MobileNetV3 convert to the plugin's configs with
torchvision's outputs: inputs, head outputs, default boxes and detections on the same pixels."""

import math
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from mmdet.datasets import CocoDataset
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from torchvision.models._meta import _COCO_CATEGORIES
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from tool_runner import load_tool  # noqa: E402  (tests/test_tools, the tools' test helpers)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
TOL = 1e-4

# builder, config, input side, images in the batch, and the scales of the random heads that
# give a trained detector's pattern: the classification-logit scale and background-logit offset
# (mostly background, about 2000 candidates per image above the score threshold, no ties) and
# the regression scale (offsets of unit std).
MODELS_UNDER_TEST = {
    'ssd300_vgg16': (ssd300_vgg16, 'ssd300_vgg16_torchvision_coco.py', 300, 1, 0.1, 12.0, 0.02),
    'ssdlite320_mobilenet_v3_large': (
        ssdlite320_mobilenet_v3_large,
        'ssdlite320_mobilenetv3-large_torchvision_coco.py',
        320,
        2,
        2.0,
        12.0,
        0.25,
    ),
}
# torchvision clamps the decoded log-size offsets dw / 5, dh / 5 from above at log(1000 / 16);
# mmdet's DeltaXYWHBBoxCoder clamps them from both sides. Boxes shrunk by more than 62.5x
# would differ; trained (and these) offsets stay far from that.
SIZE_OFFSET_CLAMP = math.log(1000 / 16)


converter = load_tool('model_converters/torchvision_ssd_to_plugin.py')


def _last_conv(layer: nn.Module) -> nn.Conv2d:
    return [m for m in layer.modules() if isinstance(m, nn.Conv2d)][-1]


def _torchvision_model(builder, images, logit_scale, background_offset, regression_scale):
    """A random torchvision SSD whose features and heads look trained (see MODELS_UNDER_TEST).

    Built on the meta device and initialised here (VGG16's unused 120M-parameter classifier
    is never materialised): convolutions He-normal (VGG16's init); BN layers random affine
    parameters and the statistics of ``images``, a calibration batch (one training-mode pass),
    which keeps every level's features near unit scale; conv4_3's L2 scale 20 (SSD300's init).
    """
    with torch.device('meta'):
        model = builder(weights=None, weights_backbone=None)
    model.to_empty(device='cpu')
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight, mode='fan_out', nonlinearity='relu')
            if conv.bias is not None:
                conv.bias.zero_()
        for bn in batch_norms:
            nn.init.uniform_(bn.weight, 0.5, 1.5)
            nn.init.normal_(bn.bias, std=0.2)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: the statistics of the one pass below
        if hasattr(model.backbone, 'scale_weight'):
            model.backbone.scale_weight.fill_(20.0)
        for layer in model.head.classification_head.module_list:
            conv = _last_conv(layer)
            conv.weight *= logit_scale
            conv.bias.view(-1, len(_COCO_CATEGORIES))[:, 0] += background_offset
        for layer in model.head.regression_head.module_list:
            _last_conv(layer).weight *= regression_scale
        if batch_norms:
            model.train()
            tensors = model.transform(images)[0].tensors
            model.head(list(model.backbone(tensors).values()))
    for bn in batch_norms:
        bn.momentum = 0.03
    return model.eval()


def _capture(module: nn.Module, store: dict, key: str):
    return module.register_forward_hook(lambda mod, args, out: store.__setitem__(key, out))


@pytest.fixture(scope='module', params=list(MODELS_UNDER_TEST))
def pair(request, tmp_path_factory):
    """Both models on the same images: inputs, head outputs, default boxes and detections."""
    builder, config, size, num_images, *head_scales = MODELS_UNDER_TEST[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(num_images)]
    paths = [str(tmp / f'{i}.png') for i in range(len(rgb))]
    for path, image in zip(paths, rgb):
        cv2.imwrite(path, image[..., ::-1])  # lossless, BGR on disk as any image file
    tv_images = [torch.from_numpy(img).permute(2, 0, 1).float() / 255 for img in rgb]

    torch.manual_seed(0)
    calibration = [torch.rand(3, size, size) for _ in range(8)]
    theirs = _torchvision_model(builder, calibration, *head_scales)
    src, dst = str(tmp / 'torchvision.pth'), str(tmp / 'plugin.pth')
    torch.save(theirs.state_dict(), src)
    converter.main([src, dst])

    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    ours = MODELS.build(cfg.model)
    ours.load_state_dict(torch.load(dst, map_location='cpu'), strict=True)
    ours.eval()

    tv, plugin = {}, {}
    hooks = [
        _capture(theirs.head, tv, 'head'),
        _capture(theirs.anchor_generator, tv, 'anchors'),
        _capture(ours.data_preprocessor, plugin, 'preprocessed'),
    ]
    pipeline = Compose([t for t in cfg.test_dataloader.dataset.pipeline
                        if t['type'] != 'LoadAnnotations'])  # fmt: skip
    data = pseudo_collate([pipeline(dict(img_path=p, img_id=i)) for i, p in enumerate(paths)])
    with torch.no_grad():
        tv['detections'] = theirs(tv_images)
        tv['inputs'] = theirs.transform(tv_images)[0].tensors
        plugin['detections'] = ours.test_step(data)
        # The head outputs on torchvision's own normalised input: the conversion alone.
        plugin['head'] = ours.bbox_head(ours.extract_feat(tv['inputs']))
    for hook in hooks:
        hook.remove()
    featmap_sizes = [s.shape[-2:] for s in plugin['head'][0]]
    generator = ours.bbox_head.prior_generator
    plugin['priors'] = torch.cat(generator.grid_priors(featmap_sizes, device='cpu'))
    return cfg, tv, plugin


def _flat(maps, columns):
    """Per-level ``(N, k * columns, H, W)`` maps as ``(N, P, columns)``, the plugin's order."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, columns) for m in maps], 1)


def _by_label_then_score(labels, scores, boxes):
    """Detections ordered by label, then descending score.

    Float rounding (a few 1e-6) may swap two detections of different classes whose scores are
    that close in the score-sorted lists; within one class such near-ties do not occur here.
    """
    order = np.lexsort((-scores.numpy(), labels.numpy()))
    return labels[order], scores[order], boxes[order]


def test_inputs_are_normalised_as_torchvision(pair):
    _, tv, plugin = pair
    assert (plugin['preprocessed']['inputs'] - tv['inputs']).abs().max() <= TOL


def test_head_outputs_equal_torchvision(pair):
    _, tv, plugin = pair
    cls_scores, bbox_preds = plugin['head']
    theirs_cls = tv['head']['cls_logits']
    ours_cls = _flat(cls_scores, theirs_cls.shape[-1])
    ours_reg = _flat(bbox_preds, 4)
    assert (ours_reg - tv['head']['bbox_regression']).abs().max() <= TOL
    assert (ours_cls[..., -1] - theirs_cls[..., 0]).abs().max() <= TOL  # background
    assert (ours_cls[..., :-1] - theirs_cls[..., 1:]).abs().max() <= TOL  # channel c - 1 = c
    assert theirs_cls.std() > 1  # not a trivially equal output
    assert 0.5 < tv['head']['bbox_regression'].std() < 2


def test_default_boxes_equal_torchvision_anchors(pair):
    _, tv, plugin = pair
    for anchors in tv['anchors']:
        assert plugin['priors'].shape == anchors.shape
        assert (plugin['priors'] - anchors).abs().max() <= TOL


def test_detections_equal_torchvision_without_na(pair):
    """Each image's detections: torchvision's minus those with an N/A label, mmdet's labels."""
    cfg, tv, plugin = pair
    class_channels = list(cfg.model.bbox_head.class_channels)
    num_dropped = 0
    assert tv['head']['bbox_regression'][..., 2:].abs().max() / 5 < SIZE_OFFSET_CLAMP
    for theirs, ours in zip(tv['detections'], plugin['detections']):
        ours = ours.pred_instances
        reported = torch.tensor([_COCO_CATEGORIES[c] != 'N/A' for c in theirs['labels']])
        num_dropped += int((~reported).sum())
        labels = torch.tensor([class_channels.index(c - 1) for c in theirs['labels'][reported]])
        scores, boxes = theirs['scores'][reported], theirs['boxes'][reported]
        assert len(ours) == len(labels) > 50
        assert len(scores.unique()) == len(scores)  # no ties: the order is determined
        # both sorted by descending score
        torch.testing.assert_close(ours.scores, scores, atol=1e-5, rtol=1e-4)
        ours_sorted = _by_label_then_score(ours.labels, ours.scores, ours.bboxes)
        theirs_sorted = _by_label_then_score(labels, scores, boxes)
        assert torch.equal(ours_sorted[0], theirs_sorted[0])
        torch.testing.assert_close(ours_sorted[1], theirs_sorted[1], atol=1e-5, rtol=1e-4)
        # within 1e-3 px: each side normalises the pixels with its own float rounding (1e-5),
        # which the random network amplifies (on the same input the offsets agree to 1e-4)
        torch.testing.assert_close(ours_sorted[2], theirs_sorted[2], atol=1e-3, rtol=1e-5)
    assert num_dropped > 0  # the test does exercise dropping the N/A channels


def test_configs_report_mmdets_coco_classes_from_their_category_channels():
    names = CocoDataset.METAINFO['classes']
    for _, config, *_ in MODELS_UNDER_TEST.values():
        head = Config.fromfile(osp.join(REPO, 'configs', config)).model.bbox_head
        assert head.num_classes == len(names) == 80 and head.num_class_channels == 90
        # torchvision's category list is indexed by its output channel (0: background)
        assert list(head.class_channels) == [_COCO_CATEGORIES.index(n) - 1 for n in names]


def test_any_number_of_classes_moves_background_last():
    torch.manual_seed(0)
    theirs = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    state = theirs.state_dict()
    converted = converter.convert(state)
    for level in range(6):
        for param in ('weight', 'bias'):
            ours = converted[f'bbox_head.cls_convs.{level}.pred.{param}']
            ref = state[f'head.classification_head.module_list.{level}.1.{param}']
            for box in range(6):  # six default boxes per location, classes (bg, 1, 2) each
                rows = ref[3 * box : 3 * box + 3]
                assert torch.equal(ours[3 * box : 3 * box + 3], rows[[1, 2, 0]])


def test_unknown_state_dict_is_named(tmp_path):
    path = str(tmp_path / 'resnet.pth')
    torch.save({'conv1.weight': torch.zeros(1)}, path)
    with pytest.raises(KeyError, match=r'resnet\.pth is neither a torchvision ssd300_vgg16'):
        converter.main([path, str(tmp_path / 'out.pth')])


def test_unexpected_keys_are_named():
    state = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).state_dict()
    state['backbone.extra.9.weight'] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"model\.pth: 1 keys .*'backbone\.extra\.9\.weight'"):
        converter.convert(state, source='model.pth')


def test_missing_backbone_keys_are_named():
    with torch.device('meta'):  # key names and shapes only
        state = ssd300_vgg16(weights=None, weights_backbone=None).state_dict()
    del state['backbone.extra.0.3.weight']  # conv5_2
    with pytest.raises(KeyError, match=r"vgg\.pth: incomplete .* missing \['backbone\.conv5_2"):
        converter.convert(state, source='vgg.pth')
