"""Configs that now inherit instead of copying keep every resulting value.

``data/config_values_before_inheritance.json`` holds ``Config.fromfile(...).to_dict()`` of each
config as it was before its blocks were inherited (written once, from the copying versions); the
configs must give the same values, except for the deliberate changes listed in ``CHANGES``.
"""

import copy
import json
import os.path as osp

import pytest
from config_values import plain
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BEFORE = osp.join(
    osp.dirname(osp.abspath(__file__)), 'data', 'config_values_before_inheritance.json'
)
# torchvision's RandomIoUCrop: its patch geometry and its 40 trials per sampler (issue 17, item 15)
TORCHVISION_CROP = dict(type='MinIoUCrop', patch_mode='torchvision', max_trials=40)


def _torchvision_crop(values: dict) -> None:
    pipelines = [values['train_pipeline']]
    pipelines.append(values['train_dataloader']['dataset']['dataset']['pipeline'])
    for pipeline in pipelines:
        (index,) = [i for i, step in enumerate(pipeline) if step['type'] == 'MinIoUCrop']
        pipeline[index] = dict(TORCHVISION_CROP)


def _torchvision_crop_and_scaled_lr(values: dict) -> None:
    _torchvision_crop(values)
    values['auto_scale_lr']['enable'] = True  # the lr follows the global batch (issue 22)


CHANGES = {
    'ssd300_vgg16_torchvision_coco.py': _torchvision_crop_and_scaled_lr,
    'ssdlite320_mobilenetv3-large_torchvision_coco.py': _torchvision_crop_and_scaled_lr,
}


def config_values(path: str) -> dict:
    return plain(json.loads(json.dumps(Config.fromfile(path).to_dict())))


with open(BEFORE) as f:
    SAVED = json.load(f)


@pytest.mark.parametrize('name', sorted(SAVED))
def test_inherited_config_keeps_its_values(name):
    expected = copy.deepcopy(SAVED[name])
    CHANGES.get(name, lambda values: None)(expected)
    got = config_values(osp.join(REPO, 'configs', name))
    assert got.keys() == expected.keys()
    for key in expected:  # one key at a time: a failure names the key
        assert got[key] == expected[key], key


def test_torchvision_configs_inherit_the_shared_blocks():
    """The shared blocks come from one place: the class channels and the SSDLite structure."""
    for name in CHANGES:
        text = open(osp.join(REPO, 'configs', name)).read()
        assert '_base_/torchvision_coco_classes.py' in text and '0, 1, 2, 3,' not in text
    ssdlite = open(osp.join(REPO, 'configs', 'ssdlite320_mobilenetv3-large_torchvision_coco.py'))
    assert "'./ssdlite_mobilenetv2_8xb24-600e_coco.py'" in ssdlite.read()
