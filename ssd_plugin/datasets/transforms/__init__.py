"""SSD's data augmentation (paper Sec. 2.2 and 3.6) as mmdet ``TRANSFORMS``.

Train pipeline order: ``ZoomOut`` -> ``MinIoUCrop`` -> ``Resize`` -> ``RandomFlip`` ->
``PhotometricDistort`` (see ``docs/design.md``).
"""

from .min_iou_crop import MinIoUCrop
from .photometric_distort import PhotometricDistort
from .zoom_out import ZoomOut

__all__ = ['MinIoUCrop', 'PhotometricDistort', 'ZoomOut']
