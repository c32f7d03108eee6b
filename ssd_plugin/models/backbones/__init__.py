from .reduced_vgg16 import ReducedVGG16

__all__ = ['ReducedVGG16']
