"""MODELS ``CaffeMultiBoxHead``: ``MultiBoxHead`` with a Caffe net's predictor kernel sizes."""

from typing import Optional, Sequence

import torch.nn as nn
from mmdet.registry import MODELS
from torch import Tensor

from ssd_plugin.models.dense_heads.multibox_head import MultiBoxHead

__all__ = ['CaffeMultiBoxHead']


@MODELS.register_module()
class CaffeMultiBoxHead(MultiBoxHead):
    """:class:`MultiBoxHead` whose level-``l`` predictors are ``k_l x k_l`` convs, padding ``p_l``.

    Caffe SSD nets choose the ``mbox_loc``/``mbox_conf`` kernels per net (VGG16 SSD and the face
    detector: 3x3, MobileNet-SSD: 1x1). Everything else (outputs, loss, decoding, state-dict
    keys ``{cls,reg}_convs.{l}.pred.*``) is ``MultiBoxHead``'s; converted nets set
    ``clip_border=False`` as Caffe's ``DetectionOutput`` does not clip.

    Caffe's PriorBox steps are explicit and need not be the input over the map size (the face
    detector's last two 5x5 levels have steps 100 and 300), so a converted net records the
    feature-map sizes Caffe's arithmetic gives at its input size (``featmap_sizes``) and the
    network must give exactly those, at exactly that input size.

    Args:
        kernel_sizes: Predictor kernel size per level (default 3).
        paddings: Predictor padding per level (default ``kernel_size // 2``).
        featmap_sizes: ``(H, W)`` per level at the generator's ``input_size``, as the
            converter computed them; None checks the maps as :class:`MultiBoxHead` does.
        **kwargs: :class:`MultiBoxHead`'s arguments (not ``use_depthwise``).
    """

    def __init__(
        self,
        kernel_sizes: Optional[Sequence[int]] = None,
        paddings: Optional[Sequence[int]] = None,
        featmap_sizes: Optional[Sequence[Sequence[int]]] = None,
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
        self.featmap_sizes = (
            None if featmap_sizes is None else [tuple(int(v) for v in s) for s in featmap_sizes]
        )
        for convs in (self.cls_convs, self.reg_convs):
            for level, (k, p) in enumerate(zip(kernel_sizes, paddings)):
                pred = convs[level].pred
                if (k, p) != (3, 1):
                    convs[level].pred = nn.Conv2d(pred.in_channels, pred.out_channels, k, padding=p)

    def check_featmap_sizes(self, outputs: Sequence[Tensor], input_shape: Sequence[int]) -> None:
        """Raise unless the maps are the converted net's, on the input size it was converted at.

        Without ``featmap_sizes``: :meth:`MultiBoxHead.check_featmap_sizes`.
        """
        if self.featmap_sizes is None:
            return super().check_featmap_sizes(outputs, input_shape)
        sizes = [tuple(int(v) for v in o.shape[-2:]) for o in outputs]
        hw = tuple(int(v) for v in input_shape[:2])
        want_hw = tuple(self.prior_generator.input_size)
        if sizes != self.featmap_sizes or hw != want_hw:
            raise ValueError(
                f'CaffeMultiBoxHead: the network gives feature maps {sizes} on a {hw[0]}x{hw[1]} '
                f'input; the Caffe net was converted for {self.featmap_sizes} on '
                f'{want_hw[0]}x{want_hw[1]} (its PriorBox steps hold only there): resize the '
                f"images to {want_hw[1]}x{want_hw[0]}, as the converted config's pipeline does"
            )
