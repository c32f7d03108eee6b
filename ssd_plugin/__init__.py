"""SSD (Liu et al., ECCV 2016) as MMDetection 3.x registry components.

Importing this package registers every component into mmdet's own registries (scope ``mmdet``),
which is what a config's ``custom_imports=dict(imports=['ssd_plugin'])`` relies on.
"""

from . import caffe, datasets, engine, models, visualization  # noqa: F401  (registration side effects)
from .version import __version__

__all__ = ['__version__']
