"""A test-only hook, imported by the distributed runs of ``test_dist_train.py``.

It runs at priority HIGHEST and is listed in ``custom_hooks`` before ``AllReduceLossHook`` (which
``tools/train.py`` appends), so it sees each rank's own loss; after training it saves, per rank,
those losses, the loss history the message hub recorded (what the logs show) and the weights.
"""

import os.path as osp

import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


@HOOKS.register_module()
class RankProbeHook(Hook):
    priority = 'HIGHEST'

    def __init__(self) -> None:
        self.own_losses = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.own_losses.append(float(outputs['loss'].detach()))

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        logged, _ = runner.message_hub.get_scalar('train/loss').data
        torch.save(
            dict(own_losses=self.own_losses, logged=logged.tolist(),
                 params={k: v.detach().clone() for k, v in model.named_parameters()}),
            osp.join(runner.work_dir, f'probe_rank{get_rank()}.pth'),
        )  # fmt: skip
