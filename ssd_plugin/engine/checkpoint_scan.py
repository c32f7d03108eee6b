"""What a checkpoint file holds, read without running any of it: damaged, unsafe or neither.

torch reads four layouts: the zip archive (torch >= 1.6), the legacy stream (five pickles, then
the raw bytes of each storage: torch < 1.6, or ``_use_new_zipfile_serialization=False``), the
tar archive of torch < 0.4, and a bare pickle (``pickle.dump``). torch's weights-only loader
refuses a malicious file and a damaged one alike, with messages that differ by layout and by
torch version (a truncated legacy file can even be reported as an unsupported global).
:func:`scan_checkpoint` tells them apart by reading each pickle stream with an unpickler whose
globals are inert stand-ins (nothing the file names is imported or called): a stream that ends
early or does not parse is damage; a global outside the weights-only allow-list is unsafe.
"""

import _compat_pickle
import io
import pickle
import tarfile
import warnings
import zipfile
from typing import BinaryIO, List, NamedTuple, Optional, Sequence, Set

import torch

__all__ = ['CheckpointScan', 'scan_checkpoint', 'weights_only_names']

_ZIP_MAGIC = b'PK\x03\x04'
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_LEGACY_PICKLES = 5  # magic number, protocol version, sys info, the object, storage keys
_TAR_MEMBERS = ('sys_info', 'pickle', 'storages', 'tensors')
_MAX_GLOBALS = 10000


class CheckpointScan(NamedTuple):
    """The layout of a checkpoint file and what is wrong with it."""

    layout: str  # 'zip', 'legacy', 'tar' or 'pickle'
    damage: Optional[str]  # completes "Checkpoint <file> ..."; None when intact
    foreign: List[str]  # globals (and getattr uses) outside the allow-list, in file order


def weights_only_names(extra: Sequence = ()) -> Set[str]:
    """Dotted names torch's weights-only unpickler accepts, and those of ``extra`` globals.

    ``extra`` takes the form of :func:`torch.serialization.safe_globals`' argument.
    """
    unpickler = getattr(torch, '_weights_only_unpickler', None)
    names = set(getattr(unpickler, '_get_allowed_globals', dict)())
    for item in [*torch.serialization.get_safe_globals(), *extra]:
        names.add(item[1] if isinstance(item, tuple) else f'{item.__module__}.{item.__qualname__}')
    return names


class _Inert:
    """Stands for whatever a pickle names or builds: accepts every call, keeps nothing."""

    _name = '?'

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, *args, **kwargs) -> '_Inert':
        return _Inert()

    def __setstate__(self, state) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, value) -> None:
        pass

    def extend(self, values) -> None:
        pass


class _DryRun(pickle.Unpickler):
    """Unpickles one stream with inert globals, noting the foreign ones and the storages."""

    def __init__(self, file: BinaryIO, allowed: Set[str], foreign: List[str]) -> None:
        super().__init__(file, encoding='latin1')
        self.allowed, self.foreign = allowed, foreign
        self.storages: dict = {}  # legacy: key -> dotted name of the storage class
        self.classes: dict = {}  # dotted name -> its inert stand-in class
        self.noted = set(foreign)

    def _note(self, what: str) -> None:
        if what not in self.noted:
            self.noted.add(what)
            self.foreign.append(what)

    def find_class(self, module: str, name: str):
        # Python 2 names (pickle protocols 0-2), mapped as pickle's own find_class does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f'{module}.{name}'
        if full == 'builtins.getattr':  # mmengine's HistoryBuffer methods, public ones only
            return self._getattr
        if full not in self.classes:
            if len(self.classes) >= _MAX_GLOBALS:  # a checkpoint names a few dozen
                raise pickle.UnpicklingError(f'more than {_MAX_GLOBALS} different globals')
            self.classes[full] = type('Inert', (_Inert,), {'_name': full})
        if full not in self.allowed:
            self._note(full)
        return self.classes[full]

    def _getattr(self, owner, name) -> _Inert:
        owner_name = getattr(owner, '_name', type(owner).__name__)
        if not (owner_name.endswith('.HistoryBuffer') and not str(name).startswith('_')):
            self._note(f'getattr({owner_name}, {name!r})')
        return _Inert()

    def persistent_load(self, pid) -> _Inert:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage':
            self.storages[str(pid[2])] = getattr(pid[1], '_name', '')
        return _Inert()


def _dry_run(stream: BinaryIO, allowed: Set[str], foreign: List[str]) -> _DryRun:
    """Read one pickle from ``stream``; its result is in ``.result``. Raises on a bad stream."""
    unpickler = _DryRun(stream, allowed, foreign)
    unpickler.result = unpickler.load()
    return unpickler


def _stream_damage(err: BaseException) -> str:
    return (
        f'is truncated or corrupt: its pickle stream does not parse ({type(err).__name__}: {err})'
    )


_STREAM_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                  IndexError, KeyError, MemoryError, UnicodeDecodeError, OverflowError)  # fmt: skip


def _element_size(storage_class: str) -> Optional[int]:
    """Bytes per element of a legacy storage class name (``torch.FloatStorage``)."""
    module, _, name = storage_class.rpartition('.')
    cls = getattr(torch, name, None) if module == 'torch' and name.endswith('Storage') else None
    with warnings.catch_warnings():  # the legacy storage classes are deprecated
        warnings.simplefilter('ignore')
        dtype = getattr(cls, 'dtype', None)
    return torch.empty((), dtype=dtype).element_size() if isinstance(dtype, torch.dtype) else None


def _legacy_tail_damage(f: BinaryIO, keys, storages: dict, size: int) -> Optional[str]:
    """The raw storage bytes after the pickles: each an int64 count, then its elements."""
    pos = f.tell()
    for key in keys if isinstance(keys, list) else []:
        element = _element_size(storages.get(str(key), ''))
        if element is None:
            return None  # a storage class this check does not know: left to torch
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            return f'is truncated or corrupt: it ends at byte {size}, inside its tensor data'
        pos += 8 + int.from_bytes(header, 'little', signed=True) * element
    if pos > size:
        return f'is truncated or corrupt: its tensor data needs {pos} bytes, the file has {size}'
    return None


def _scan_pickles(f: BinaryIO, size: int, allowed: Set[str], foreign: List[str]) -> CheckpointScan:
    """The legacy stream or a bare pickle."""
    try:
        first = _dry_run(f, allowed, foreign)
    except _STREAM_ERRORS as err:
        return CheckpointScan('pickle', _stream_damage(err), foreign)
    if not (isinstance(first.result, int) and first.result == _LEGACY_MAGIC):
        return CheckpointScan('pickle', None, foreign)
    storages: dict = {}
    try:
        for _ in range(_LEGACY_PICKLES - 1):
            unpickler = _dry_run(f, allowed, foreign)
            storages.update(unpickler.storages)
    except _STREAM_ERRORS as err:
        return CheckpointScan('legacy', _stream_damage(err), foreign)
    return CheckpointScan(
        'legacy', _legacy_tail_damage(f, unpickler.result, storages, size), foreign
    )


def _scan_zip(filename: str, allowed: Set[str], foreign: List[str]) -> CheckpointScan:
    with zipfile.ZipFile(filename) as archive:
        names = [n for n in archive.namelist() if n.endswith('data.pkl')]
        if not names:
            return CheckpointScan(
                'zip', 'is not a torch checkpoint: its zip archive has no data.pkl', foreign
            )
        with archive.open(names[0]) as stream:
            try:
                _dry_run(io.BytesIO(stream.read()), allowed, foreign)
            except _STREAM_ERRORS as err:
                return CheckpointScan('zip', _stream_damage(err), foreign)
    return CheckpointScan('zip', None, foreign)


def _scan_tar(filename: str, allowed: Set[str], foreign: List[str]) -> CheckpointScan:
    try:
        with tarfile.open(filename, mode='r:') as archive:
            data = {
                m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()
            }
    except (tarfile.TarError, OSError, EOFError) as err:
        return CheckpointScan(
            'tar', f'is truncated or corrupt: its tar archive is incomplete ({err})', foreign
        )
    missing = [m for m in _TAR_MEMBERS if m not in data]
    if missing:
        return CheckpointScan(
            'tar', f'is truncated or corrupt: its tar archive lacks {missing}', foreign
        )
    try:
        _dry_run(io.BytesIO(data['pickle']), allowed, foreign)
    except _STREAM_ERRORS as err:
        return CheckpointScan('tar', _stream_damage(err), foreign)
    return CheckpointScan('tar', None, foreign)


def scan_checkpoint(filename: str, allowed: Set[str]) -> CheckpointScan:
    """Read ``filename`` (an existing file) as torch would, running nothing it names.

    Zip archives are not checked for damage here (their CRC-32s are: see
    :func:`~ssd_plugin.engine.checkpoint.checkpoint_damage`), only for foreign globals.

    Args:
        filename: The checkpoint file.
        allowed: Dotted names of the globals a checkpoint may name (:func:`weights_only_names`).

    Returns:
        CheckpointScan: Its layout, its damage (None when none is found) and the foreign
        globals read before any damage.
    """
    foreign: List[str] = []
    with open(filename, 'rb') as f:
        head = f.read(512)
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        if head.startswith(_ZIP_MAGIC):
            return _scan_zip(filename, allowed, foreign)
        if head[257:262] == b'ustar':
            return _scan_tar(filename, allowed, foreign)
        return _scan_pickles(f, size, allowed, foreign)
