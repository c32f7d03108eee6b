"""VISUALIZERS ``BorderSafeDetLocalVisualizer``: boxes at the image's far edges drawn quietly.

A detector's boxes are clipped to the image, ``[0, w] x [0, h]``, so many end exactly at its
right or bottom edge. mmengine's ``Visualizer`` places pixel centres at integer coordinates and
warns "bbox is out of bounds" (and once per box "polygon is out of bounds") for any corner not
in ``[0, w) x [0, h)``, though the box is inside the image. This visualizer draws such edges
on the last pixel column and row, where they are visible, without the warnings.
"""

from typing import List, Optional

import numpy as np
import torch
from mmdet.registry import VISUALIZERS
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import ConfigType
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData

__all__ = ['BorderSafeDetLocalVisualizer', 'border_safe']


@VISUALIZERS.register_module()
class BorderSafeDetLocalVisualizer(DetLocalVisualizer):
    """mmdet's ``DetLocalVisualizer`` that draws boxes clamped to the image's pixel centres.

    Only the drawing is clamped (to ``[0, w - 1] x [0, h - 1]``); the data sample is unchanged.
    Takes :class:`mmdet.visualization.DetLocalVisualizer`'s arguments.
    """

    def _draw_instances(self, image: np.ndarray, instances: InstanceData,
                        classes: Optional[List[str]], palette) -> np.ndarray:  # fmt: skip
        if 'bboxes' in instances and len(instances):
            h, w = image.shape[:2]
            boxes = get_box_tensor(instances.bboxes)
            last = boxes.new_tensor([w, h, w, h]) - 1
            instances = instances.clone()
            instances.bboxes = torch.minimum(boxes.clamp(min=0), last)
        return super()._draw_instances(image, instances, classes, palette)


def border_safe(visualizer_cfg: ConfigType) -> ConfigType:
    """The visualizer config with mmdet's ``DetLocalVisualizer`` replaced by this one, in place.

    The configs inherit mmdet's ``default_runtime.py`` visualizer; the plugin's drawing tools
    use this one instead. Any other visualizer type is left as it is.
    """
    if str(visualizer_cfg.get('type')).split('.')[-1] == 'DetLocalVisualizer':
        visualizer_cfg['type'] = 'BorderSafeDetLocalVisualizer'
    return visualizer_cfg
