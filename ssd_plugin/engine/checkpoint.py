"""Checkpoint loading with torch's weights-only unpickler, and errors that say what is wrong.

torch 2.6 made ``torch.load`` default to ``weights_only=True``. mmengine 0.10.7 loads local
checkpoints without that argument, and its checkpoints carry the MessageHub (``HistoryBuffer``
objects holding numpy arrays) and numpy scalars, which the weights-only unpickler rejects, so
``--resume`` fails. :func:`load_local_checkpoint` keeps the weights-only unpickler and allow-lists
exactly the types mmengine itself writes, rather than unpickling arbitrary code.

Importing :mod:`ssd_plugin` changes nothing in mmengine: the plugin's tools (``tools/train.py``,
``tools/test.py``, ``tools/image_demo.py``, ``tools/deploy/export_onnx.py``, and so ``mim``) run
inside :func:`weights_only_checkpoint_loading`, which puts :func:`load_local_checkpoint` in place
of mmengine's local-file loader for the duration of the block, and only with the torch and
mmengine versions that need it (torch >= 2.6 with mmengine < 0.11).

Before unpickling, a file in torch's zip format is checked against the CRC-32 checksums its zip
directory holds (about as fast as reading the file): ``torch.load`` reports a truncated file as
``OSError: [Errno 22] Invalid argument`` and loads flipped bytes in tensor data without a word.
Files in torch's other layouts (legacy stream, tar, bare pickle) have no checksums: their pickle
streams are read without running anything they name (:mod:`~ssd_plugin.engine.checkpoint_scan`),
so a refusal says whether the file is damaged (with what to do, by where it lies) or unsafe (it
names globals outside the allow-list), whatever torch's own message for that layout says.
"""

import contextlib
import os.path as osp
import pickle
import warnings
import zipfile
from typing import Callable, Iterator, List, Optional, Set, Tuple, Union

import mmengine
import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import digit_version

from .checkpoint_scan import scan_checkpoint, weights_only_names

__all__ = [
    'MMENGINE_SAFE_GLOBALS',
    'checkpoint_damage',
    'damage_remedy',
    'load_local_checkpoint',
    'load_state_dict_file',
    'mmengine_load_is_weights_only',
    'refusal_message',
    'weights_only_checkpoint_loading',
]

_ZIP_MAGIC = b'PK\x03\x04'  # torch >= 1.6 saves zip archives; older torch a bare pickle stream
_AGAIN = 'Copy or download it again.'
_LFS_POINTER = 'Git LFS pointer'
_NAMED = 3  # foreign globals named in a refusal


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


def checkpoint_damage(filename: str) -> Optional[str]:
    """Why ``filename`` cannot be a complete checkpoint, or None when no damage is found.

    An empty file and a Git LFS pointer are named as such. A zip archive (torch's format) must
    have its central directory (a truncated file has none) and every member must match the
    CRC-32 recorded for it (members saved without a checksum are not checked). A file in torch's
    legacy (pre-1.6) format, a tar archive or a bare pickle has no checksums: its pickle streams
    must parse to their end and (legacy) its tensor data must be all there
    (:func:`~ssd_plugin.engine.checkpoint_scan.scan_checkpoint`, which runs nothing the file
    names). A file naming globals outside the allow-list is not called damaged: loading it
    refuses it as unsafe.

    Args:
        filename (str): Path of an existing file.

    Returns:
        str | None: What completes "Checkpoint <filename> ...", without a remedy: what to do
        depends on where the file came from (see :func:`damage_remedy`).
    """
    size = osp.getsize(filename)
    if size == 0:
        return 'is empty (0 bytes)'
    with open(filename, 'rb') as f:
        head = f.read(len(_ZIP_MAGIC) + 40)
    if head.startswith(b'version https://git-lfs'):
        return f'is a {_LFS_POINTER}, not the checkpoint itself: fetch it with `git lfs pull`'
    if not head.startswith(_ZIP_MAGIC):
        scan = scan_checkpoint(filename, _allowed_names())
        return None if scan.foreign else scan.damage  # an unsafe file is refused, not skipped
    try:
        with zipfile.ZipFile(filename) as archive:
            for member in archive.infolist():
                if member.CRC == 0 and member.file_size > 0:
                    continue  # saved with torch.serialization.set_crc32_options(False)
                with archive.open(member) as stream:  # raises BadZipFile on a CRC mismatch
                    while stream.read(1 << 24):
                        pass
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        reason = str(err)
        if 'CRC' in reason:
            return f'is corrupt: the bytes of a part do not match their checksum ({reason})'
        return f'is truncated or corrupt: its zip archive is incomplete ({size} bytes; {reason})'
    return None


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
        RuntimeError: The file is truncated or corrupt (see :func:`checkpoint_damage`), or it
            references a type outside :data:`MMENGINE_SAFE_GLOBALS`; the message starts with
            the file and what is wrong with it.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} can not be found.')
    damage = checkpoint_damage(filename)
    if damage is not None:
        remedy = '' if _LFS_POINTER in damage else f' {damage_remedy(filename)}'
        raise RuntimeError(f'Checkpoint {filename} {damage}.{remedy}')
    with torch.serialization.safe_globals(MMENGINE_SAFE_GLOBALS), warnings.catch_warnings():
        # a bare pickle of protocol 4+: refused below with a message that says what it is
        warnings.filterwarnings('ignore', message='Detected pickle protocol')
        try:
            return torch.load(filename, map_location=map_location, weights_only=True)
        except Exception as err:  # whatever a hostile or broken file makes torch raise
            raise RuntimeError(refusal_message(filename, err)) from err


def _allowed_names() -> Set[str]:
    return weights_only_names(MMENGINE_SAFE_GLOBALS)


def refusal_message(filename: str, err: BaseException) -> str:
    """Why torch's weights-only loader refused ``filename``: unsafe, damaged or unreadable.

    The file is read again without running anything it names
    (:func:`~ssd_plugin.engine.checkpoint_scan.scan_checkpoint`), in whichever layout torch
    wrote it: globals outside the allow-list make it unsafe, whatever torch's own message
    says; a pickle stream that ends early or does not parse makes it damaged.
    """
    # torch wraps the unpickler's own reason in a long generic message
    reason = str(err.__context__ or err).strip().split('\n')[0].split(' was not an allowed')[0]
    scan = scan_checkpoint(filename, _allowed_names())
    if scan.foreign:
        named = ', '.join(scan.foreign[:_NAMED])
        more = f' and {len(scan.foreign) - _NAMED} more' if len(scan.foreign) > _NAMED else ''
        return (
            f'Checkpoint {filename} is unsafe: it holds objects that are not weights or mmengine '
            f'training state ({named}{more}). It is not loaded because unpickling them could run '
            f'any code; if you trust its source, load it with torch.load(..., '
            f'weights_only=False) and save its state dict alone.'
        )
    if scan.damage is not None:
        return f'Checkpoint {filename} {scan.damage}. {damage_remedy(filename)}'
    if scan.layout == 'pickle':
        return (
            f'Checkpoint {filename} is a bare pickle, not a file written by torch.save, and '
            f"torch's weights-only loader cannot read it ({reason}). Re-save its tensors with "
            f'torch.save from the program that wrote it.'
        )
    return f'Checkpoint {filename} could not be loaded: {reason}'


def damage_remedy(filename: str) -> str:
    """What to do about a damaged checkpoint, by where it lies.

    A file next to a ``last_checkpoint`` is one a training run wrote into its work dir (and was
    most likely writing when it was stopped: killed, out of disk space), so fetching it again
    is no answer: a plain ``--resume`` continues from the newest intact checkpoint there. Any
    other file was copied or downloaded, and can be again.
    """
    if osp.isfile(osp.join(osp.dirname(osp.abspath(filename)), 'last_checkpoint')):
        return (
            'It lies in the work dir of a training run, which was probably stopped while '
            'writing it: `tools/train.py CONFIG --resume` (without a path) continues from the '
            'newest intact checkpoint there.'
        )
    return _AGAIN


def _is_zip(filename: str) -> bool:
    with open(filename, 'rb') as f:
        return f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC


def mmengine_load_is_weights_only() -> bool:
    """Whether mmengine's own local loader uses torch's weights-only unpickler.

    mmengine up to 0.10.7 calls a bare ``torch.load``, which is weights-only from torch 2.6 on
    and then fails on mmengine's own training checkpoints; mmengine 0.11 passes
    ``weights_only=False``.
    """
    return digit_version(torch.__version__) >= digit_version('2.6.0') and digit_version(
        mmengine.__version__
    ) < digit_version('0.11.0rc0')


@contextlib.contextmanager
def weights_only_checkpoint_loading() -> Iterator[None]:
    """Within the block, mmengine loads local checkpoints with :func:`load_local_checkpoint`.

    Does nothing where mmengine's own loader works (:func:`mmengine_load_is_weights_only` is
    False). The loader that was registered before is put back on exit, also when the block
    raises.
    """
    if not mmengine_load_is_weights_only():
        yield
        return
    previous = CheckpointLoader._schemes.get('')  # mmengine's local scheme is the empty prefix
    CheckpointLoader.register_scheme(prefixes='', force=True)(load_local_checkpoint)
    try:
        yield
    finally:
        if previous is None:
            del CheckpointLoader._schemes['']
        else:
            CheckpointLoader.register_scheme(prefixes='', force=True)(previous)


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
