"""MODELS ``CaffeMultiBoxHead``: ``MultiBoxHead`` with a Caffe net's predictor kernel sizes."""

from typing import Optional, Sequence

import torch.nn as nn
from mmdet.registry import MODELS

from ssd_plugin.models.dense_heads.multibox_head import MultiBoxHead

__all__ = ['CaffeMultiBoxHead']


@MODELS.register_module()
class CaffeMultiBoxHead(MultiBoxHead):
    """:class:`MultiBoxHead` whose level-``l`` predictors are ``k_l x k_l`` convs, padding ``p_l``.

    Caffe SSD nets choose the ``mbox_loc``/``mbox_conf`` kernels per net (VGG16 SSD and the face
    detector: 3x3, MobileNet-SSD: 1x1). Everything else (outputs, loss, decoding, state-dict
    keys ``{cls,reg}_convs.{l}.pred.*``) is ``MultiBoxHead``'s; converted nets set
    ``clip_border=False`` as Caffe's ``DetectionOutput`` does not clip.

    Args:
        kernel_sizes: Predictor kernel size per level (default 3).
        paddings: Predictor padding per level (default ``kernel_size // 2``).
        **kwargs: :class:`MultiBoxHead`'s arguments (not ``use_depthwise``).
    """

    def __init__(
        self,
        kernel_sizes: Optional[Sequence[int]] = None,
        paddings: Optional[Sequence[int]] = None,
        **kwargs,
    ) -> None:
        if kwargs.get('use_depthwise'):
            raise ValueError('CaffeMultiBoxHead: use_depthwise is not supported')
        super().__init__(**kwargs)
        num_levels = len(self.in_channels)
        kernel_sizes = [3] * num_levels if kernel_sizes is None else list(kernel_sizes)
        paddings = [k // 2 for k in kernel_sizes] if paddings is None else list(paddings)
        if len(kernel_sizes) != num_levels or len(paddings) != num_levels:
            raise ValueError(
                f'CaffeMultiBoxHead: kernel_sizes={kernel_sizes} and paddings={paddings} need '
                f'one entry per level ({num_levels})'
            )
        self.kernel_sizes, self.paddings = kernel_sizes, paddings
        for convs in (self.cls_convs, self.reg_convs):
            for level, (k, p) in enumerate(zip(kernel_sizes, paddings)):
                pred = convs[level].pred
                if (k, p) != (3, 1):
                    convs[level].pred = nn.Conv2d(pred.in_channels, pred.out_channels, k, padding=p)
