"""Every shipped config states the global batch its lr was tuned for, and scales to it."""

import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
# configs whose name does not say GPUs x images: torchvision's recipes (references/detection:
# ssd300 8 x 4, ssdlite 8 x 24) and the CPU demo (one process x 8)
UNNAMED = {
    'ssd300_vgg16_torchvision_coco.py': 32,
    'ssdlite320_mobilenetv3-large_torchvision_coco.py': 192,
    'ssd_demo_shapes.py': 8,
}


@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(CONFIGS, '*.py'))),
                         ids=osp.basename)  # fmt: skip
def test_config_states_its_base_batch_and_scales(path):
    name = osp.basename(path)
    text = open(path).read()
    match = re.search(r'^auto_scale_lr = dict\(enable=True, base_batch_size=(\d+)\)$', text, re.M)
    assert match, f'{name} does not state auto_scale_lr itself'
    gpus_images = re.search(r'_(\d+)xb(\d+)-', name)
    expected = UNNAMED[name] if gpus_images is None else int(gpus_images[1]) * int(gpus_images[2])
    assert int(match[1]) == expected
    cfg = Config.fromfile(path)
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=expected)
    # the recipe's own launch: 8 GPUs (the demo: 1 process) x the per-process batch
    processes = 1 if name == 'ssd_demo_shapes.py' else 8
    assert processes * cfg.train_dataloader.batch_size == expected
