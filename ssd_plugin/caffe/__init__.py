"""Caffe SSD (weiliu89/caffe ``ssd``) models run as the plugin's components.

Importing this package registers :class:`CaffeNet`, :class:`CaffeMultiBoxHead` and
:class:`CaffeCenterSizeCoder`, which converted configs use. The offline converter (Caffe files ->
config + checkpoint) is :mod:`ssd_plugin.caffe.converter`, imported only where it is used: it
builds protobuf message classes, which a training run does not need.
"""

from .caffe_coder import CaffeCenterSizeCoder
from .caffe_head import CaffeMultiBoxHead
from .caffe_net import CaffeNet

__all__ = ['CaffeCenterSizeCoder', 'CaffeMultiBoxHead', 'CaffeNet']
