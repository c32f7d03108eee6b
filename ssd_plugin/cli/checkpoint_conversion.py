"""The command line shared by the checkpoint converters in ``tools/model_converters/``.

Every converter reads one ``.pth`` file, renames (and sometimes reshapes) its tensors with a pure
``convert(state_dict, source)`` function and saves the result; :func:`converter_main` is that
``main`` after parsing, so the tools hold only their ``convert`` and their help texts. Their
parser (``SRC DST --debug``) is :func:`ssd_plugin_cli.options.converter_parser`: ``--help``
answers before this module (and torch) is imported.
"""

import argparse
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from ..engine.checkpoint import load_state_dict_file

__all__ = ['StateDictConverter', 'convert_checkpoint_file', 'converter_main']

#: ``convert(state_dict, source)``: the converted state dict; ``source`` names the file in errors.
StateDictConverter = Callable[[Dict[str, Tensor], str], Dict[str, Tensor]]


def convert_checkpoint_file(
    src: str, dst: str, convert: StateDictConverter, keep_wrapper: bool = True
) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """Convert the state dict in ``src`` and save it to ``dst``.

    Args:
        src: Input ``.pth``: a bare state dict or mmengine's ``{'state_dict': ..., 'meta': ...}``.
        dst: Output ``.pth``.
        convert: The converter's pure function.
        keep_wrapper: Save a wrapped input wrapped again, with its ``meta`` (whole-detector
            checkpoints, which ``load_from`` reads either way). False: always a bare state dict
            (backbone checkpoints, which ``init_cfg=dict(type='Pretrained')`` loads).

    Returns:
        ``(state_dict, converted)``: the state dict read from ``src`` and the one saved.
    """
    state_dict, checkpoint = load_state_dict_file(src)
    converted = convert(state_dict, src)
    output = converted
    if keep_wrapper and checkpoint is not None:
        output = dict(state_dict=converted)
        if 'meta' in checkpoint:
            output['meta'] = checkpoint['meta']
    torch.save(output, dst)
    return state_dict, converted


def converter_main(
    convert: StateDictConverter,
    args: argparse.Namespace,
    keep_wrapper: bool = True,
    describe: Optional[Callable[[Dict[str, Tensor], str], str]] = None,
) -> None:
    """``main`` of a converter tool after parsing: the conversion, then one line on stdout.

    Args:
        convert: The converter's pure function.
        args: The arguments of :func:`ssd_plugin_cli.options.converter_parser` (``src``,
            ``dst``).
        keep_wrapper: See :func:`convert_checkpoint_file`.
        describe: ``describe(state_dict, src)`` names what was converted in the printed line
            (e.g. the source model) from the input state dict; None names nothing.
    """
    state_dict, converted = convert_checkpoint_file(args.src, args.dst, convert, keep_wrapper)
    what = '' if describe is None else f' of {describe(state_dict, args.src)}'
    print(f'converted {len(converted)} tensors{what} from {args.src} to {args.dst}')
