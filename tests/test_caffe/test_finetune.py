"""A converted Caffe model fine-tunes on another class count with the plugin's recipe."""

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.runner import Runner, load_checkpoint
from tiny_ssd import write_net

from ssd_plugin.caffe.converter import convert
from ssd_plugin.datasets.demo_shapes import DEMO_CLASSES, make_demo_dataset

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


def _child_config(tmp_path, config_path, checkpoint_path, data_root, iters):
    text = f"""_base_ = [{str(config_path)!r}]
metainfo = dict(classes={DEMO_CLASSES!r})
model = dict(bbox_head=dict(num_classes={len(DEMO_CLASSES)}))
load_from = {str(checkpoint_path)!r}
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={data_root!r}, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/')))
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters={iters}, val_interval={iters + 1})
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1000))
randomness = dict(seed=0)
"""
    path = tmp_path / 'finetune.py'
    path.write_text(text)
    return str(path)


def test_finetune_reinitialises_class_layers_and_lowers_the_loss(tmp_path):
    prototxt, caffemodel, _ = write_net(tmp_path)
    config_path, checkpoint_path = convert(
        prototxt, caffemodel, tmp_path / 'converted', log=lambda line: None
    )
    data_root = str(tmp_path / 'data')
    make_demo_dataset(data_root, num_train=8, num_val=1, image_size=64)
    iters = 30
    cfg = Config.fromfile(_child_config(tmp_path, config_path, checkpoint_path, data_root, iters))

    # what the runner's load_from does: everything but the class predictors comes from Caffe
    model = MODELS.build(cfg.model)
    model.init_weights()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_checkpoint(model, checkpoint_path, map_location='cpu', strict=False)
    caffe = torch.load(checkpoint_path, map_location='cpu', weights_only=True)['state_dict']
    for key, value in model.state_dict().items():
        if key.startswith('bbox_head.cls_convs.'):
            assert value.shape != caffe[key].shape
            torch.testing.assert_close(value, before[key])  # re-initialised, not loaded
        else:
            torch.testing.assert_close(value, caffe[key])

    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = np.asarray(runner.message_hub.get_scalar('train/loss')._log_history)
    assert len(losses) == iters and np.isfinite(losses).all()
    assert losses[-5:].mean() < losses[:5].mean()
