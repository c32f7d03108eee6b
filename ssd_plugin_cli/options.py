"""The command-line options the plugin's tools share, built without importing torch or mmdet.

The builders only add arguments; what an option does to a config is applied after parsing by
:mod:`ssd_plugin.cli` (``load_cfg``, ``apply_amp_cfg``, ``apply_train_options``,
``converter_main``), which the tools import once their arguments are parsed. Where a choice
list mirrors a runtime table (:data:`AMP_DTYPE_NAMES`), a test checks that the two agree.
"""

import argparse

from mmengine.config import DictAction

from .errors import add_debug_arg

__all__ = [
    'AMP_DTYPE_NAMES',
    'SYNC_BN_IMPLEMENTATIONS',
    'add_amp_args',
    'add_data_root_arg',
    'add_launch_args',
    'add_train_options',
    'converter_parser',
]

#: ``--amp-dtype``'s choices: the keys of :data:`ssd_plugin.engine.amp.AMP_DTYPES` (which maps
#: them to torch dtypes, so it cannot be imported here).
AMP_DTYPE_NAMES = ('auto', 'bfloat16', 'bf16', 'float16', 'fp16')
#: mmengine's ``sync_bn`` values: torch's SyncBatchNorm or mmcv's.
SYNC_BN_IMPLEMENTATIONS = ('torch', 'mmcv')


def add_data_root_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-root DIR`` (applied by :func:`ssd_plugin.cli.data_root.move_data_root`)."""
    parser.add_argument(
        '--data-root',
        metavar='DIR',
        help="read the config's datasets from DIR instead of its data_root: every dataset root "
        'and evaluator annotation file moves, keeping its path relative to the root '
        '(applied before --cfg-options)',
    )


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--work-dir``, ``--data-root``, ``--cfg-options``, ``--launcher``, ``--local-rank``.

    Applied by :func:`ssd_plugin.cli.launch.load_cfg`.
    """
    parser.add_argument('--work-dir', help='folder for logs, checkpoints and metrics')
    add_data_root_arg(parser)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (e.g. '
                        'train_dataloader.batch_size=4 model.bbox_head.num_classes=3)')  # fmt: skip
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')  # fmt: skip
    # torch.distributed.launch passes --local-rank (torch >= 2.0), older launchers --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def add_amp_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--amp`` and ``--amp-dtype`` (tools/train.py, tools/test.py, image_demo.py).

    Applied by :func:`ssd_plugin.cli.amp.apply_amp_cfg` (or the tool's own autocast).
    """
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed precision for the network: bf16 autocast + channels_last on CPUs with '
        'native bf16 (else float32) and bf16-capable GPUs, float16 with a loss scaler on other '
        'GPUs; fp32 weights, loss and post-processing')  # fmt: skip
    parser.add_argument(
        '--amp-dtype', choices=list(AMP_DTYPE_NAMES),
        help='the --amp precision instead of auto (float16: GPUs only)')  # fmt: skip


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--[no-]auto-scale-lr``, ``--sync-bn``, ``--seed`` and ``--deterministic``.

    Applied by :func:`ssd_plugin.cli.train_options.apply_train_options`.
    """
    parser.add_argument(
        '--auto-scale-lr', action=argparse.BooleanOptionalAction, default=None,
        help='scale the lr by total batch / auto_scale_lr.base_batch_size (the default where '
        'the config names the base; --no-auto-scale-lr keeps the lr as written)')  # fmt: skip
    parser.add_argument(
        '--sync-bn', nargs='?', const='torch', choices=SYNC_BN_IMPLEMENTATIONS,
        help="BatchNorm statistics over all processes (mmengine's sync_bn; 'torch' unless "
        "'mmcv' is named); needs GPUs, helps when each GPU holds a few images")  # fmt: skip
    parser.add_argument('--seed', type=int, help='random seed (randomness.seed)')
    parser.add_argument('--deterministic', action='store_true',
                        help='deterministic algorithms (randomness.deterministic)')  # fmt: skip


def converter_parser(description: str, src_help: str, dst_help: str) -> argparse.ArgumentParser:
    """The parser of a checkpoint converter in ``tools/model_converters/``: ``SRC DST --debug``.

    The parsed arguments go to :func:`ssd_plugin.cli.checkpoint_conversion.converter_main`.

    Args:
        description: The tool's ``--help`` description.
        src_help: Help text of ``src``.
        dst_help: Help text of ``dst``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help=src_help)
    parser.add_argument('dst', help=dst_help)
    add_debug_arg(parser)
    return parser
