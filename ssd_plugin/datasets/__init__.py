from .checked_coco import CheckedCocoDataset  # noqa: F401
from .checked_voc import CheckedVOCDataset  # noqa: F401
from .transforms import *  # noqa: F401,F403
