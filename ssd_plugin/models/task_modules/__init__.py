from .default_box_generator import DefaultBoxGenerator
from .multibox_matcher import MultiBoxMatcher

__all__ = ['DefaultBoxGenerator', 'MultiBoxMatcher']
