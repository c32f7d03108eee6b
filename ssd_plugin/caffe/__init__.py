"""Caffe SSD (weiliu89/caffe ``ssd``) models converted to the plugin's components.

Importing this package registers :class:`CaffeNet`, :class:`CaffeMultiBoxHead` and
:class:`CaffeCenterSizeCoder` (converted configs import it) and exposes :func:`convert`.
"""

from .caffe_coder import CaffeCenterSizeCoder
from .caffe_head import CaffeMultiBoxHead
from .caffe_net import CaffeNet
from .convert import convert
from .proto import CaffeFormatError

__all__ = ['CaffeCenterSizeCoder', 'CaffeFormatError', 'CaffeMultiBoxHead', 'CaffeNet', 'convert']
