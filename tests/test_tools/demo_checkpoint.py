"""A checkpoint of ``configs/ssd_demo_shapes.py`` (no training) for the inference and export tools.

The weights are the config's init (seeded) with the class-logit biases of the head drawn from
N(0, 3^2) per channel: the class probabilities then spread over (0, 1) instead of sitting near
1/6, so the score threshold, NMS and the top-k all act. Scores of one class at nearby locations
can still be close, so the tests match detections by label, score and box, not by rank.
"""

import os.path as osp

import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.runner import save_checkpoint

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(REPO, 'configs', 'ssd_demo_shapes.py')


def demo_checkpoint(path: str) -> str:
    """Write the checkpoint (with the config's class names in its meta) to ``path``."""
    cfg = Config.fromfile(DEMO_CONFIG)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():
        for conv in model.bbox_head.cls_convs:
            conv.pred.bias.normal_(0, 3)
    meta = dict(dataset_meta=dict(classes=cfg.metainfo['classes']))
    save_checkpoint(dict(state_dict=model.state_dict(), meta=meta), path)
    return path
