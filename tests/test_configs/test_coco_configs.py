"""The SSD300 / SSD512 COCO configs: mmdet's recipe, Caffe default boxes, working pipelines."""

import os.path as osp

import cv2
import mmdet
import numpy as np
import pytest
import torch
from config_values import plain
from mmdet.registry import MODELS, TASK_UTILS
from mmengine.config import Config
from mmengine.dataset import Compose

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MMDET_CONFIGS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
CONFIGS = {
    300: (osp.join(REPO, 'configs', 'ssd300_vgg16_8xb8-120e_coco.py'), 'ssd300_coco.py'),
    512: (osp.join(REPO, 'configs', 'ssd512_vgg16_8xb8-120e_coco.py'), 'ssd512_coco.py'),
}
NUM_PRIORS = {300: 8732, 512: 24564}


@pytest.fixture(scope='module', params=[300, 512])
def configs(request):
    ours, theirs = CONFIGS[request.param]
    return (
        request.param,
        Config.fromfile(ours),
        Config.fromfile(osp.join(MMDET_CONFIGS, 'ssd', theirs)),
    )


def test_training_recipe_is_mmdets(configs):
    _, cfg, ref = configs
    assert cfg.custom_imports == dict(imports=['ssd_plugin'], allow_failed_imports=False)
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=2e-3, momentum=0.9, weight_decay=5e-4)
    assert plain(cfg.param_scheduler) == plain(
        ref.param_scheduler
    )  # 500-iteration warm-up, steps [16, 22]
    assert cfg.train_cfg.max_epochs == 24 and cfg.auto_scale_lr.base_batch_size == 64
    loader = cfg.train_dataloader
    assert loader.batch_size == 8 and loader.batch_sampler is None
    assert loader.dataset.type == 'RepeatDataset' and loader.dataset.times == 5
    assert loader.dataset.dataset.filter_cfg == dict(filter_empty_gt=True, min_size=32)
    assert plain(cfg.model.data_preprocessor) == plain(ref.model.data_preprocessor)
    assert plain(cfg.val_dataloader.dataset.pipeline) == plain(ref.val_dataloader.dataset.pipeline)
    # Same CocoMetric, but scored with the leaderboard's maxDets (1, 10, 100).
    assert plain(cfg.val_evaluator) == {**plain(ref.val_evaluator), 'proposal_nums': [1, 10, 100]}
    assert cfg.test_evaluator.classwise
    assert cfg.model.test_cfg.score_thr == 0.01 and cfg.model.test_cfg.max_per_img == 200
    assert cfg.model.test_cfg.nms.iou_threshold == 0.45 and cfg.model.test_cfg.nms_pre == 400
    pretrained = cfg.model.backbone.init_cfg
    assert pretrained == dict(
        type='Pretrained', checkpoint='checkpoints/vgg16_reducedfc_plugin.pth'
    )


def test_default_boxes_equal_mmdets_caffe_boxes(configs):
    size, cfg, ref = configs
    ours = TASK_UTILS.build(cfg.model.bbox_head.prior_generator)
    theirs = TASK_UTILS.build(ref.model.bbox_head.anchor_generator)
    maps = [(s, s) for s in ([38, 19, 10, 5, 3, 1] if size == 300 else [64, 32, 16, 8, 4, 2, 1])]
    got = torch.cat(ours.grid_priors(maps, device='cpu'))
    expected = torch.cat(theirs.grid_priors(maps, device='cpu'))
    assert got.shape == (NUM_PRIORS[size], 4)
    assert torch.allclose(got, expected, atol=1e-4)


def test_neck_and_head_levels_agree(configs):
    size, cfg, _ = configs
    neck = MODELS.build(cfg.model.neck)
    head = MODELS.build(cfg.model.bbox_head)
    assert tuple(cfg.model.neck.out_channels) == tuple(cfg.model.bbox_head.in_channels)
    first = [(512, -(-size // 8)), (1024, -(-size // 16))]  # ReducedVGG16's ceil-mode sizes
    with torch.no_grad():
        feats = neck([torch.rand(1, c, s, s) for c, s in first])
        cls_scores, _ = head(feats)
    sizes = [f.shape[-1] for f in feats]
    assert sizes == ([38, 19, 10, 5, 3, 1] if size == 300 else [64, 32, 16, 8, 4, 2, 1])
    assert sum(c.shape[1] // 81 * c.shape[2] * c.shape[3] for c in cls_scores) == NUM_PRIORS[size]


def test_train_pipeline_runs(configs, tmp_path):
    size, cfg, _ = configs
    img = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    path = str(tmp_path / 'img.jpg')
    cv2.imwrite(path, img)
    pipeline = Compose(cfg.train_dataloader.dataset.dataset.pipeline)
    types = [t['type'] for t in cfg.train_dataloader.dataset.dataset.pipeline]
    assert types[2:5] == ['ZoomOut', 'MinIoUCrop', 'Resize'] and types[6] == 'PhotometricDistort'
    np.random.seed(0)
    for _ in range(4):
        out = pipeline(dict(
            img_path=path, img_id=0, instances=[
                dict(bbox=[30, 40, 200, 220], bbox_label=3, ignore_flag=0),
                dict(bbox=[220, 10, 310, 90], bbox_label=7, ignore_flag=0)]))  # fmt: skip
        assert out['inputs'].shape == (3, size, size)
        boxes = out['data_samples'].gt_instances.bboxes.tensor
        assert (boxes >= 0).all() and (boxes <= size).all()


@pytest.mark.parametrize(
    'name', ['ssd300_vgg16_8xb8-120e_coco.py', 'ssd512_vgg16_8xb8-240e_voc0712.py']
)
def test_vgg16_configs_need_the_pretrained_file_or_allow_scratch(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no checkpoints/ here
    cfg = Config.fromfile(osp.join(REPO, 'configs', name))
    missing = r"(?s)'checkpoints/vgg16_reducedfc_plugin.pth' .*torchvision_vgg16_to_reduced.py"
    with pytest.raises(FileNotFoundError, match=missing + '.*model.backbone.allow_scratch=True'):
        MODELS.build(cfg.model.backbone).init_weights()
    cfg.merge_from_dict({'model.backbone.allow_scratch': True})  # as --cfg-options does
    with pytest.warns(UserWarning, match='training from scratch'):
        MODELS.build(cfg.model.backbone).init_weights()
