from .multibox_head import MultiBoxHead

__all__ = ['MultiBoxHead']
