"""Caffe's message classes (``caffe_pb2``-like) and the readers of prototxt and caffemodel files.

The classes are built at import from :mod:`ssd_plugin.caffe.converter.schema` with protobuf's
descriptor API in a private descriptor pool (no ``protoc`` build step, and no clash with another
``caffe.proto`` loaded in the same process). Parsing is protobuf's own: ``text_format`` for
prototxts, ``ParseFromString`` for caffemodels.

Text fields the schema does not declare (other forks' options, OpenCV's additions) are skipped
and reported with a warning, except inside the parameters the converter reads
(:data:`~ssd_plugin.caffe.converter.schema.READ_MESSAGES`), where an unknown option could change the
results: those are a :class:`CaffeFormatError` naming the file, line and field.
"""

import os
import warnings
from typing import List, Tuple, Union

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.internal import api_implementation
from google.protobuf.message import DecodeError

from .errors import CaffeFormatError
from .schema import ENUMS, MESSAGES, READ_MESSAGES

__all__ = [
    'BACKEND',
    'DEFAULT_MAX_PROTOTXT_MIB',
    'CaffeFormatError',
    'NetParameter',
    'LayerParameter',
    'BlobProto',
    'BlobShape',
    'LabelMap',
    'read_prototxt',
    'read_caffemodel',
    'read_labelmap',
    'parse_prototxt',
]

PathLike = Union[str, os.PathLike]

_PACKAGE = 'ssd_plugin_caffe'  # not 'caffe': never clashes with a real caffe_pb2
DEFAULT_MAX_PROTOTXT_MIB = 8.0
# 'upb' (compiled; protobuf's wheels) decodes a caffemodel at C speed; 'python' takes minutes
BACKEND = api_implementation.Type()
_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    'int32': _FDP.TYPE_INT32,
    'int64': _FDP.TYPE_INT64,
    'uint32': _FDP.TYPE_UINT32,
    'float': _FDP.TYPE_FLOAT,
    'double': _FDP.TYPE_DOUBLE,
    'bool': _FDP.TYPE_BOOL,
    'string': _FDP.TYPE_STRING,
}


def _default_text(kind: str, value: object) -> str:
    if kind == 'bool':
        return 'true' if value else 'false'
    return repr(value) if kind in ('float', 'double') else str(value)


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(
        name='ssd_plugin/caffe/caffe_subset.proto', package=_PACKAGE, syntax='proto2'
    )
    messages = {name: fdp.message_type.add(name=name) for name in MESSAGES}
    for enum_name, values in ENUMS.items():
        parent, _, short = enum_name.rpartition('.')
        enum = (messages[parent].enum_type if parent else fdp.enum_type).add(name=short)
        for value_name, number in values.items():
            enum.value.add(name=value_name, number=number)
    for msg_name, rows in MESSAGES.items():
        msg = messages[msg_name]
        for name, number, label, kind, extra in rows:
            field = msg.field.add(name=name, number=number)
            field.label = _FDP.LABEL_OPTIONAL if label == 'opt' else _FDP.LABEL_REPEATED
            if label == 'rep+':
                field.options.packed = True
            if kind == 'msg':
                field.type, field.type_name = _FDP.TYPE_MESSAGE, f'.{_PACKAGE}.{extra}'
            elif kind == 'enum':
                enum_name, default = extra
                field.type, field.type_name = _FDP.TYPE_ENUM, f'.{_PACKAGE}.{enum_name}'
                field.default_value = default
            else:
                field.type = _SCALARS[kind]
                if extra is not None:
                    field.default_value = _default_text(kind, extra)
    return fdp


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _message_class(name: str) -> type:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f'{_PACKAGE}.{name}'))


NetParameter = _message_class('NetParameter')
LayerParameter = _message_class('LayerParameter')
BlobProto = _message_class('BlobProto')
BlobShape = _message_class('BlobShape')
LabelMap = _message_class('LabelMap')


# protobuf offers no public hook for the names of skipped fields; its text parser skips each one
# in ``_Parser._SkipFieldContents`` (protobuf 4 to 7). Without that method unknown fields are
# errors (strict parsing), never skipped unnoticed.
_CAN_RECORD = hasattr(text_format._Parser, '_SkipFieldContents')


class _RecordingParser(text_format._Parser):
    """protobuf's text parser, noting each field it skips (``allow_unknown_field``)."""

    def __init__(self) -> None:
        super().__init__(allow_unknown_field=_CAN_RECORD)
        self.skipped: List[Tuple[int, str, str]] = []
        self._depth = 0  # fields inside a skipped message are not reported again

    def _SkipFieldContents(self, tokenizer, field_name, immediate_message_type):  # noqa: N802
        if not self._depth:
            line = getattr(tokenizer, '_line', -1) + 1
            self.skipped.append((line, immediate_message_type, field_name))
        self._depth += 1
        try:
            return super()._SkipFieldContents(tokenizer, field_name, immediate_message_type)
        finally:
            self._depth -= 1


def parse_prototxt(text: str, message, source: str = '<text>'):
    """Parse prototxt ``text`` into ``message`` (a class instance above); returns ``message``.

    Raises:
        CaffeFormatError: Malformed text, or an unknown option of a parameter the converter
            reads (:data:`~ssd_plugin.caffe.converter.schema.READ_MESSAGES`); names ``source``
            and the line.
    """
    parser = _RecordingParser()
    try:
        parser.ParseLines(text.splitlines(), message)
    except text_format.ParseError as err:
        raise CaffeFormatError(f'{source}: not a readable Caffe prototxt: {err}') from err
    except RecursionError:  # protobuf's text parser recurses once per nested message
        raise CaffeFormatError(
            f'{source}: messages nested too deep to parse (Caffe nets nest a few levels); '
            'not a Caffe prototxt'
        ) from None
    relevant, harmless = [], []
    for line, msg_type, field in parser.skipped:
        short = msg_type.rsplit('.', 1)[-1]
        (relevant if short in READ_MESSAGES else harmless).append(f'{short}.{field} (line {line})')
    if relevant:
        raise CaffeFormatError(
            f'{source}: options the converter does not know and that may change the results: '
            f'{_listed(relevant)}; they are not part of Caffe SSD (weiliu89) and are refused '
            'rather than ignored'
        )
    if harmless:
        warnings.warn(
            f'{source}: ignored fields not used for inference: {_listed(harmless)}',
            stacklevel=2,
        )
    return message


def _listed(items: List[str], most: int = 10) -> str:
    """The first ``most`` items, and how many more there are."""
    more = f' and {len(items) - most} more' if len(items) > most else ''
    return ', '.join(items[:most]) + more


def _read_bytes(path: PathLike, what: str) -> bytes:
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} not found: {os.fspath(path)!r}')
    with open(path, 'rb') as f:
        return f.read()


def read_prototxt(path: PathLike, max_mib: float = DEFAULT_MAX_PROTOTXT_MIB):
    """A text prototxt (``deploy.prototxt``; CRLF line ends fine) as a ``NetParameter``.

    Args:
        path: The file.
        max_mib: Larger files are refused before parsing: protobuf parses text in Python
            (whichever its backend), about a second per 2 MiB, and SSD deploy nets are
            smaller than 1 MiB.

    Raises:
        CaffeFormatError: The file is larger than ``max_mib``, not text, not a prototxt or
            nested deeper than Python's recursion allows (naming the file).
    """
    _check_size(path, max_mib)
    data = _read_bytes(path, 'Caffe prototxt')
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as err:
        raise CaffeFormatError(
            f'{os.fspath(path)!r} is not a text prototxt (a binary caffemodel given as the '
            'prototxt?)'
        ) from err
    return parse_prototxt(text, NetParameter(), repr(os.fspath(path)))


def _check_size(path: PathLike, max_mib: float) -> None:
    """Refuse a text file larger than ``max_mib`` before parsing it (naming the limit's flag)."""
    if os.path.isfile(path) and os.path.getsize(path) > max_mib * 2**20:
        size = os.path.getsize(path) / 2**20
        raise CaffeFormatError(
            f'{os.fspath(path)!r} is {size:.1f} MiB, more than the {max_mib:g} MiB a Caffe text '
            f'file is allowed (SSD deploy nets and label maps take well under 1 MiB); refused '
            f'before parsing. If it is one, raise the limit (max_prototxt_mib={int(size) + 1}; '
            f'the converter tool: --max-prototxt-mib {int(size) + 1})'
        )


def read_labelmap(path: PathLike, max_mib: float = DEFAULT_MAX_PROTOTXT_MIB):
    """SSD's ``labelmap.prototxt`` (``item { name label display_name }``) as a ``LabelMap``.

    Files larger than ``max_mib`` are refused before parsing, as by :func:`read_prototxt`.
    """
    _check_size(path, max_mib)
    text = _read_bytes(path, 'label map').decode('utf-8', errors='replace')
    return parse_prototxt(text, LabelMap(), repr(os.fspath(path)))


def read_caffemodel(path: PathLike):
    """A binary ``.caffemodel`` as a ``NetParameter`` (layers with their ``blobs``).

    Raises:
        CaffeFormatError: A truncated or non-caffemodel file (names the file).
    """
    data = _read_bytes(path, 'caffemodel')
    net = NetParameter()
    try:
        net.ParseFromString(data)
    except RecursionError:  # the pure-Python decoder recurses once per nested message
        raise CaffeFormatError(
            f'{os.fspath(path)!r}: messages nested too deep to decode; not a binary caffemodel'
        ) from None
    except (DecodeError, RuntimeError, ValueError) as err:
        raise CaffeFormatError(
            f'{os.fspath(path)!r} is not a complete binary caffemodel ({len(data)} bytes; '
            f'truncated download?): {err}'
        ) from err
    if not net.layer and not net.layers:
        raise CaffeFormatError(
            f'{os.fspath(path)!r} holds no layers: not a binary caffemodel (a text prototxt?)'
        )
    return net
