"""Check a config's datasets before a long run: every problem of every image and annotation file.

Decodes every image of the chosen splits (progress bar with the rate) and runs the checked
datasets' annotation checks, then lists every problem by file: unreadable, missing or empty
(0 bytes) images, truncated JPEG/PNG files, undecodable files, a depth other than 8 bits, an
EXIF quarter turn with boxes in the stored orientation, an image size other than the
annotation's width/height, and the annotation files' box problems and errors. Exits with 1 when
there is any problem, 0 otherwise. Example::

    python tools/analysis/check_dataset.py configs/my_voc.py --split train val --workers 4
"""

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

# ssd_plugin (mmdet, torch) is imported after the arguments are parsed: --help and a wrong
# option answer without loading the detection stack
from ssd_plugin_cli.errors import add_debug_arg, run_tool  # noqa: E402
from ssd_plugin_cli.options import add_data_root_arg  # noqa: E402

#: The dataloaders --split names (ssd_plugin.datasets.dataset_check.SPLITS; a test checks that
#: they agree).
SPLITS = ('train', 'val', 'test')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--split', nargs='+', choices=SPLITS, default=list(SPLITS),
                        help='the dataloaders to check (default: all three)')  # fmt: skip
    parser.add_argument('--workers', type=int, default=min(8, os.cpu_count() or 1),
                        help='processes decoding images (default: cores, at most 8)')  # fmt: skip
    add_data_root_arg(parser)
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f'--workers must be >= 1, got {args.workers}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import ssd_plugin  # noqa: F401  (registers the components)
    from ssd_plugin.cli.data_root import load_config_with_data_root
    from ssd_plugin.datasets.dataset_check import check_datasets, format_reports

    cfg = load_config_with_data_root(args.config, args.data_root)
    reports = check_datasets(cfg, args.split, workers=args.workers)
    print(format_reports(reports))
    return 1 if any(r.num_problems for r in reports) else 0


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
