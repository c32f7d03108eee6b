"""Inference-only weights derived from a module's parameters, cached until those change.

Eval-time schedules (a Caffe net's folded BatchNorm, the head's merged predictors) compute
weights from the trainable ones once and reuse them on every call; the cache is keyed on the
sources' identity and version, so ``load_state_dict``, optimiser steps and ``.to()`` invalidate
it without hooks.
"""

from typing import Sequence

from torch import Tensor

__all__ = ['DerivedWeights', 'version_key']


def version_key(tensors: Sequence[Tensor]) -> tuple:
    """What identifies the values of ``tensors``: storage, in-place version, device, dtype.

    In-place updates (``load_state_dict``, optimiser steps) bump ``_version``; ``.to()``
    changes the storage: either changes the key.
    """
    return tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in tensors)


class DerivedWeights(dict):
    """A module's cache of derived weights: never copied or pickled with it.

    Some derived weights (oneDNN's prepacked ones) have no storage that ``copy.deepcopy`` or
    ``pickle`` can read, and none is state: a copy of the module starts with an empty cache and
    refills it on its first call.
    """

    def __deepcopy__(self, memo) -> 'DerivedWeights':
        return DerivedWeights()

    def __reduce__(self):
        return DerivedWeights, ()
