"""The command line shared by the checkpoint converters in ``tools/model_converters/``.

Every converter reads one ``.pth`` file, renames (and sometimes reshapes) its tensors with a pure
``convert(state_dict, source)`` function and saves the result; :func:`converter_main` is that
``main``, so the tools hold only their ``convert`` and their help texts.
"""

import argparse
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..engine.checkpoint import load_state_dict_file
from ..engine.cli_errors import add_debug_arg

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
    description: str,
    src_help: str,
    dst_help: str,
    argv: Optional[Sequence[str]] = None,
    keep_wrapper: bool = True,
    describe: Optional[Callable[[Dict[str, Tensor], str], str]] = None,
) -> None:
    """``main`` of a converter tool: ``SRC DST`` arguments, conversion, one line on stdout.

    Args:
        convert: The converter's pure function.
        description: The tool's ``--help`` description.
        src_help: Help text of ``src``.
        dst_help: Help text of ``dst``.
        argv: Arguments (default: ``sys.argv[1:]``).
        keep_wrapper: See :func:`convert_checkpoint_file`.
        describe: ``describe(state_dict, src)`` names what was converted in the printed line
            (e.g. the source model) from the input state dict; None names nothing.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help=src_help)
    parser.add_argument('dst', help=dst_help)
    add_debug_arg(parser)
    args = parser.parse_args(argv)

    state_dict, converted = convert_checkpoint_file(args.src, args.dst, convert, keep_wrapper)
    what = '' if describe is None else f' of {describe(state_dict, args.src)}'
    print(f'converted {len(converted)} tensors{what} from {args.src} to {args.dst}')
