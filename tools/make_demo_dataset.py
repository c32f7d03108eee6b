"""Write the deterministic COCO-format demo "shapes" dataset (train and val splits).

Example::

    python tools/make_demo_dataset.py --out data/demo_shapes --seed 0

The same arguments always give byte-identical files (see ``ssd_plugin/datasets/demo_shapes.py``).
"""

import argparse
import json
import time

from ssd_plugin_cli.errors import add_debug_arg, run_tool


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected an integer, got {text!r}') from None
        if value < low:
            raise argparse.ArgumentTypeError(f'must be at least {low}, got {value}')
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f'must be in (0, 1], got {value}')
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='dataset root to write')
    parser.add_argument('--seed', type=_int_at_least(0), default=0, help='base random seed')
    parser.add_argument('--num-train', type=_int_at_least(1), default=2000)
    parser.add_argument('--num-val', type=_int_at_least(1), default=200)
    parser.add_argument('--image-size', type=_int_at_least(64), default=192, help='image side')
    parser.add_argument('--max-objects', type=_int_at_least(1), default=6)
    parser.add_argument(
        '--size-range',
        type=_fraction,
        nargs=2,
        default=(0.04, 0.8),
        metavar=('LOW', 'HIGH'),
        help='longest box side as a fraction of the image side',
    )
    add_debug_arg(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    # after parsing: ssd_plugin imports mmdet and torch, which --help does not need
    from ssd_plugin.datasets.demo_shapes import make_demo_dataset

    start = time.perf_counter()
    try:
        ann_files = make_demo_dataset(
            args.out,
            seed=args.seed,
            num_train=args.num_train,
            num_val=args.num_val,
            image_size=args.image_size,
            size_range=tuple(args.size_range),
            max_objects=args.max_objects,
        )
    except ValueError as err:  # the library names the offending argument
        raise SystemExit(f'make_demo_dataset.py: error: {err}') from None
    for split, ann_file in ann_files.items():
        with open(ann_file, encoding='utf-8') as f:
            coco = json.load(f)
        print(
            f'{split}: {len(coco["images"])} images, {len(coco["annotations"])} boxes -> {ann_file}'
        )
    print(f'demo dataset written to {args.out} in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
