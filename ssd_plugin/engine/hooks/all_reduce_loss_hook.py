"""HOOKS ``AllReduceLossHook``: log the training losses averaged over all ranks.

mmengine 0.10's ``RuntimeInfoHook`` (priority ``VERY_HIGH``) records the ``outputs`` of
``train_step`` into the message hub as they are. Under data-parallel training those are each
rank's losses on its own part of the batch, so the log (written by rank 0) shows rank 0's
share, and every rank's log a different number. DDP averages the *gradients* over ranks, so the
loss that belongs to the update that is applied is the mean over ranks; this hook replaces the
scalar outputs with that mean, in one all-reduce, before anything else reads them. With
``MultiBoxLoss``'s global normaliser (each rank's sum divided by the global batch's positives
over the world size) that mean is the loss of the global batch, as one process computes it.
Every rank then also takes the same decision in hooks that inspect the loss (e.g. mmdet's
``CheckInvalidLossHook``), so none stops while the others wait in a collective.
"""

from typing import Optional

import torch
from mmdet.registry import HOOKS
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from torch import Tensor

__all__ = ['AllReduceLossHook']


@HOOKS.register_module()
class AllReduceLossHook(Hook):
    """Replace each scalar tensor in the training outputs by its mean over all ranks.

    Runs at priority ``HIGHEST``, before ``RuntimeInfoHook`` logs the outputs. Does nothing
    outside distributed training. ``tools/train.py`` adds it to distributed runs whose config
    does not list it in ``custom_hooks``.
    """

    priority = 'HIGHEST'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:  # fmt: skip
        if not outputs or get_world_size() == 1:
            return
        keys = [k for k, v in outputs.items() if isinstance(v, Tensor) and v.numel() == 1]
        if not keys:
            return
        # one collective for all values; float64 so the mean of large losses stays exact
        values = torch.stack([outputs[k].detach().reshape(()).double() for k in keys])
        all_reduce(values, op='mean')
        for key, value in zip(keys, values):
            outputs[key] = value.to(outputs[key].dtype)
