"""TASK_UTILS ``CaffeCenterSizeCoder``: mmdet's ``DeltaXYWHBBoxCoder`` without the size clamp."""

from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
from mmdet.registry import TASK_UTILS

__all__ = ['CaffeCenterSizeCoder']


@TASK_UTILS.register_module()
class CaffeCenterSizeCoder(DeltaXYWHBBoxCoder):
    """Caffe's CENTER_SIZE decode: ``DeltaXYWHBBoxCoder`` whose size clamp is set at construction.

    mmdet clamps the size offsets ``dw, dh`` (after the stds) to ``|log(wh_ratio_clip)|``, 62.5x
    the default box with its 16/1000; Caffe's ``DecodeBBox`` does not clamp. The default 1e-30
    puts the clamp at ``e^69``, beyond any box a float32 network decodes to a finite size.

    Args:
        wh_ratio_clip: Size clamp used by :meth:`decode` unless a call passes its own.
        **kwargs: ``DeltaXYWHBBoxCoder``'s arguments (``target_means``, ``target_stds``, ...).
    """

    def __init__(self, wh_ratio_clip: float = 1e-30, **kwargs) -> None:
        super().__init__(**kwargs)
        self.wh_ratio_clip = wh_ratio_clip

    def decode(self, bboxes, pred_bboxes, max_shape=None, wh_ratio_clip=None):
        """``DeltaXYWHBBoxCoder.decode`` with this coder's ``wh_ratio_clip`` by default."""
        clip = self.wh_ratio_clip if wh_ratio_clip is None else wh_ratio_clip
        return super().decode(bboxes, pred_bboxes, max_shape, clip)
