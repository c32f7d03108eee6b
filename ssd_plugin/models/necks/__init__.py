from .l2_norm import L2Norm
from .ssd_extra_layers import SSDExtraLayers

__all__ = ['L2Norm', 'SSDExtraLayers']
