"""Resumable training with torch >= 2.6 and mmengine 0.10.

torch 2.6 made ``torch.load`` default to ``weights_only=True``. mmengine 0.10.7 loads local
checkpoints without that argument, and its checkpoints carry the MessageHub (``HistoryBuffer``
objects holding numpy arrays) and numpy scalars, which the weights-only unpickler rejects, so
``--resume`` fails. Importing :mod:`ssd_plugin` replaces mmengine's local-file loader with
:func:`load_local_checkpoint`, which keeps the weights-only unpickler and allow-lists exactly the
types mmengine itself writes, rather than unpickling arbitrary code.
"""

import os.path as osp
import pickle
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['load_local_checkpoint', 'load_state_dict_file', 'MMENGINE_SAFE_GLOBALS']


def _numpy_globals() -> List[Union[Callable, type]]:
    """The numpy reconstruction helpers and dtype classes found in pickled arrays and scalars."""
    multiarray = getattr(np, '_core', np.core).multiarray
    dtype_classes = {type(np.dtype(t)) for t in np.sctypeDict.values()}
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]


def _history_buffer_getattr(owner: type, name: str) -> Callable:
    """Stand-in for ``builtins.getattr``, which pickle uses to name HistoryBuffer's methods.

    A general ``getattr`` would let a crafted file reach any module, so only public attributes
    of :class:`HistoryBuffer` resolve.
    """
    if owner is HistoryBuffer and not name.startswith('_'):
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not an mmengine checkpoint field'
    )


#: Globals an mmengine checkpoint may reference besides tensors and builtin containers.
MMENGINE_SAFE_GLOBALS = [
    HistoryBuffer,
    (_history_buffer_getattr, 'builtins.getattr'),
    *_numpy_globals(),
]


def load_local_checkpoint(
    filename: str, map_location: Optional[Union[str, Callable]] = None
) -> dict:
    """Load a local checkpoint written by mmengine with torch's weights-only unpickler.

    Args:
        filename (str): Path of the checkpoint file.
        map_location (str | Callable, optional): Same as :func:`torch.load`. Defaults to None.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        RuntimeError: The file references a type outside :data:`MMENGINE_SAFE_GLOBALS`; the
            message names the file and the type.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} can not be found.')
    with torch.serialization.safe_globals(MMENGINE_SAFE_GLOBALS):
        try:
            return torch.load(filename, map_location=map_location, weights_only=True)
        except Exception as err:  # torch raises UnpicklingError wrapped in various types
            raise RuntimeError(
                f'{filename} holds objects that are not plain weights or mmengine training '
                f'state, so it is not loaded (torch weights-only unpickler: {err}).'
            ) from err


# mmengine's local scheme is the empty prefix; force=True replaces its torch.load call.
CheckpointLoader.register_scheme(prefixes='', force=True)(load_local_checkpoint)


def load_state_dict_file(filename: str) -> Tuple[dict, Optional[dict]]:
    """The state dict in a ``.pth`` file, bare or wrapped as mmengine's ``{'state_dict': ...}``.

    Args:
        filename (str): Path of the file (loaded by :func:`load_local_checkpoint` on the CPU).

    Returns:
        tuple: ``(state_dict, checkpoint)``: ``checkpoint`` is the wrapping dict (with ``meta``
        and the like), or None when the file holds a bare state dict.

    Raises:
        TypeError: The file holds no dict; the message names the file.
    """
    checkpoint = load_local_checkpoint(filename, map_location='cpu')
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('state_dict'), dict):
        return checkpoint['state_dict'], checkpoint
    if not isinstance(checkpoint, dict):
        raise TypeError(
            f'{filename}: expected a state dict or a dict with "state_dict", got '
            f'{type(checkpoint).__name__}'
        )
    return checkpoint, None
