"""Draw a trained detector's predictions next to the ground truth on a few test-set images.

Uses the config's test dataset and pipeline and mmdet's ``DetLocalVisualizer``: each PNG shows
the ground truth on the left and the predictions above ``--score-thr`` on the right. Class names
and colours are the test dataset's (any layout: COCO, VOC, a wrapped or concatenated dataset),
as ``tools/test.py`` draws them, whatever the checkpoint's meta holds (mmdet's ``init_detector``
names COCO's classes for a checkpoint without one, and cannot read a ConcatDataset's list).

Example::

    python tools/analysis/draw_predictions.py configs/ssd_demo_shapes.py \\
        work_dirs/demo/iter_1200.pth --out-dir work_dirs/demo/predictions --num 6
"""

import argparse
import os
import os.path as osp

from mmengine.config import DictAction

from ssd_plugin_cli.errors import add_debug_arg, run_tool
from ssd_plugin_cli.options import add_data_root_arg


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', required=True, help='folder for the PNGs')
    parser.add_argument('--num', type=int, default=6, help='number of images (the first ones)')
    parser.add_argument('--score-thr', type=float, default=0.3, help='least drawn score')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config keys (key=value)'
    )
    add_data_root_arg(parser)
    add_debug_arg(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.num < 1:
        raise SystemExit(f'draw_predictions.py: error: --num must be >= 1, got {args.num}')
    # after parsing: --help and a wrong option answer without loading the detection stack
    import mmcv
    import torch
    from mmdet.registry import DATASETS, MODELS, VISUALIZERS
    from mmengine.dataset import pseudo_collate
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    from ssd_plugin.analysis.ground_truths import dataset_metainfo
    from ssd_plugin.cli.data_root import load_config_with_data_root
    from ssd_plugin.engine.checkpoint import weights_only_checkpoint_loading
    from ssd_plugin.visualization import border_safe

    cfg = load_config_with_data_root(args.config, args.data_root, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    # init_detector's steps, less its reading of the checkpoint's and the dataset's metainfo
    model = revert_sync_batchnorm(MODELS.build(cfg.model))  # SyncBN: one process here
    with weights_only_checkpoint_loading():  # loads mmengine's checkpoints with torch >= 2.6
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.cfg = cfg
    model.to(args.device).eval()
    vis_cfg = border_safe(cfg.visualizer)  # boxes at edges: no warnings
    vis_cfg.vis_backends = None  # the PNGs are written to --out-dir, not to a run's backends
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.dataset_meta = model.dataset_meta = dataset_metainfo(
        dataset, 'test_dataloader.dataset'
    )
    os.makedirs(args.out_dir, exist_ok=True)
    for idx in range(min(args.num, len(dataset))):
        with torch.no_grad():
            (result,) = model.test_step(pseudo_collate([dataset[idx]]))
        image = mmcv.imread(result.img_path, channel_order='rgb')
        name = osp.splitext(osp.basename(result.img_path))[0]
        out_file = osp.join(args.out_dir, f'{name}.png')
        visualizer.add_datasample(
            name, image, result, draw_gt=True, pred_score_thr=args.score_thr, out_file=out_file
        )
        print(f'{out_file}: {len(result.gt_instances)} boxes, '
              f'{int((result.pred_instances.scores >= args.score_thr).sum())} predictions >= '
              f'{args.score_thr}')  # fmt: skip


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
