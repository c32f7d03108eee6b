"""Write a grid of augmented training samples with their boxes, to see what the pipeline does.

Builds the config's ``train_dataloader.dataset`` (its train pipeline included), draws ``--num``
samples at random (``--seed``) and draws each packed image with its ground-truth boxes (green,
with class names) and ignored boxes (red). Example::

    python tools/browse_augmentations.py configs/ssd300_vgg16_8xb8-120e_coco.py \\
        --out work_dirs/augmentations.png --num 16
    python tools/browse_augmentations.py CONFIG --num 4 --data-root data/my_data
"""

import argparse
import math
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np  # already imported by mmengine's DictAction
from mmengine.config import DictAction

from ssd_plugin_cli.errors import add_debug_arg, run_tool
from ssd_plugin_cli.options import add_data_root_arg

# cv2, mmdet and ssd_plugin (torch) are imported where they are used, after the arguments are
# parsed: --help and a wrong option answer without loading the detection stack

GT_COLOUR = (0, 200, 0)  # BGR
IGNORED_COLOUR = (0, 0, 230)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file path')
    parser.add_argument('--out', default='augmentations.png', help='output PNG path')
    parser.add_argument('--num', type=int, default=16, help='number of samples')
    parser.add_argument('--cols', type=int, default=None, help='grid columns (default: square)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the samples and the augmentation'
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. train_dataloader.batch_size=4',
    )
    add_data_root_arg(parser)
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f'--num must be at least 1, got {args.num}')
    return args


def to_bgr_uint8(inputs) -> np.ndarray:
    """A packed ``(C, H, W)`` image tensor as an ``(H, W, 3)`` uint8 image for drawing."""
    img = inputs.detach().cpu().numpy().transpose(1, 2, 0)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8) if img.dtype != np.uint8 else img
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def draw_sample(packed: dict, classes: Sequence[str]) -> np.ndarray:
    """The packed image with its ground-truth and ignored boxes drawn on it."""
    import cv2

    img = to_bgr_uint8(packed['inputs'])
    sample = packed['data_samples']
    groups = [(sample.gt_instances, GT_COLOUR)]
    if 'ignored_instances' in sample:
        groups.append((sample.ignored_instances, IGNORED_COLOUR))
    for instances, colour in groups:
        boxes = instances.bboxes
        boxes = getattr(boxes, 'tensor', boxes).cpu().numpy()
        for (x1, y1, x2, y2), label in zip(boxes, instances.labels.tolist()):
            p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
            cv2.rectangle(img, p1, p2, colour, 1, cv2.LINE_AA)
            name = classes[label] if label < len(classes) else str(label)
            cv2.putText(
                img,
                name,
                (p1[0] + 2, max(p1[1] + 10, 10)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35,
                colour,
                1,
                cv2.LINE_AA,
            )
    return img


def make_grid(tiles: List[np.ndarray], cols: Optional[int] = None, pad: int = 4) -> np.ndarray:
    """Tiles (any sizes) on a white grid, ``cols`` per row (default: about square)."""
    cols = cols or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    cell_h = max(t.shape[0] for t in tiles) + pad
    cell_w = max(t.shape[1] for t in tiles) + pad
    grid = np.full((rows * cell_h + pad, cols * cell_w + pad, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        y, x = pad + (i // cols) * cell_h, pad + (i % cols) * cell_w
        grid[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return grid


def main(argv=None) -> str:
    args = parse_args(argv)
    import cv2
    from mmengine.registry import init_default_scope
    from mmengine.runner import set_random_seed

    import ssd_plugin  # noqa: F401  (registers the plugin's transforms for configs without imports)
    from ssd_plugin.analysis.ground_truths import dataset_metainfo
    from ssd_plugin.cli.data_root import load_config_with_data_root

    cfg = load_config_with_data_root(args.config, args.data_root, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    from mmdet.registry import DATASETS

    set_random_seed(args.seed)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    if len(dataset) == 0:
        raise ValueError(f'the train dataset of {args.config} is empty')
    classes = dataset_metainfo(dataset, 'train_dataloader.dataset').get('classes') or ()
    indices = np.random.default_rng(args.seed).integers(0, len(dataset), args.num)
    tiles = [draw_sample(dataset[int(i)], classes) for i in indices]
    out_dir = osp.dirname(osp.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    if not cv2.imwrite(args.out, make_grid(tiles, args.cols)):
        raise OSError(f'could not write {args.out}')
    print(f'wrote {len(tiles)} augmented samples to {args.out}')
    return args.out


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
