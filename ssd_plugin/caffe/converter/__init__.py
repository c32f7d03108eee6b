"""The offline converter: a Caffe SSD deploy prototxt + caffemodel -> mmdet config + checkpoint.

Not imported by ``import ssd_plugin`` (its message classes are built when this package is
imported); the converted models run on the components of :mod:`ssd_plugin.caffe`.
``tools/model_converters/caffe_ssd_to_plugin.py`` is its command line.
"""

from .convert import DEFAULT_MAX_MEMORY_GIB, DEFAULT_MAX_PROTOTXT_MIB, DEFAULT_MEAN, convert
from .errors import CaffeFormatError

__all__ = [
    'DEFAULT_MAX_MEMORY_GIB',
    'DEFAULT_MAX_PROTOTXT_MIB',
    'DEFAULT_MEAN',
    'CaffeFormatError',
    'convert',
]
