from .mobilenet_v3 import MobileNetV3
from .reduced_vgg16 import ReducedVGG16

__all__ = ['MobileNetV3', 'ReducedVGG16']
