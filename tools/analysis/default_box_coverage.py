"""How well a config's SSD default boxes cover its training set, and a better scale setting.

Example::

    python tools/analysis/default_box_coverage.py configs/ssd300_vgg16_8xb8-120e_coco.py \\
        --out-dir work_dirs/coverage --optimize

The COCO-sized figures of docs/analysis.md (a seeded synthetic file of COCO train2017's size in
place of the training annotations, no images needed)::

    python tools/analysis/default_box_coverage.py configs/ssd300_vgg16_8xb8-120e_coco.py \\
        --synthetic-coco 118287 860001 --optimize

Writes ``coverage.json`` (all figures) and ``coverage.png`` (best-IoU histogram, coverage by
object size, positives per level) to ``--out-dir``; with ``--optimize`` prints the best
``model.bbox_head.prior_generator`` keys as a config snippet with the before/after figures.
"""

import argparse
import json
import os
import os.path as osp
import sys
import time

from mmengine.config import DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

# (the repository root goes on sys.path first); torch and ssd_plugin are imported after the
# arguments are parsed: --help and a wrong option answer without loading the detection stack
from ssd_plugin_cli.errors import add_debug_arg, run_tool  # noqa: E402
from ssd_plugin_cli.options import add_data_root_arg  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--out-dir', help='where to write coverage.json and coverage.png')
    parser.add_argument('--optimize', action='store_true', help='search a better scale_range')
    parser.add_argument('--search-ratios', action='store_true', help='search per-level ratios too')
    parser.add_argument(
        '--max-priors', type=int, help='bound on the default-box count (default: the current)'
    )
    parser.add_argument(
        '--search-gts', type=int, default=50_000, help='ground truths the search subsamples'
    )
    parser.add_argument('--iou-thr', type=float, default=0.5, help='coverage / matching threshold')
    parser.add_argument(
        '--num-threads',
        type=int,
        default=1,
        help='torch CPU threads (default 1: the work is many small tensor ops, which extra '
        'threads slow down on a loaded machine)',
    )
    parser.add_argument(
        '--synthetic-coco',
        nargs=2,
        type=int,
        metavar=('IMAGES', 'BOXES'),
        help='analyse a seeded synthetic COCO-format file of this size (written to --out-dir; '
        '1%% crowd boxes, which are not analysed) instead of the training annotations',
    )
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys')
    add_data_root_arg(parser)
    add_debug_arg(parser)
    return parser.parse_args(argv)


def format_figures(name: str, report: dict) -> str:
    """A few text lines of the main figures of a report."""

    def row(label: str, fig: dict) -> str:
        if not fig['num_gts']:
            return f'  {label:<10} {0:>8} gts'
        text = (
            f'  {label:<10} {fig["num_gts"]:>8} gts  coverage@{report["iou_thr"]:g} '
            f'{fig["coverage"]:.3f}  mean best IoU {fig["mean_best_iou"]:.3f}'
        )
        if 'mean_positives' in fig:
            text += f'  positives/gt {fig["mean_positives"]:.2f}'
        return text

    lines = [f'{name}: {report["num_priors"]} default boxes, {report["num_images"]} images']
    lines.append(row('all', report['overall']))
    lines += [row(size, fig) for size, fig in report['by_size'].items()]
    share = report['overall'].get('level_share')
    if share is not None:
        lines.append('  positives per level: ' + ' '.join(f'{s:.3f}' for s in share))
    return '\n'.join(lines)


def config_snippet(overrides: dict) -> str:
    """The search result as ``model.bbox_head.prior_generator`` keys of a config."""
    keys = ', '.join(f'{k}={tuple(v) if k == "scale_range" else v!r}' for k, v in overrides.items())
    return f'model = dict(bbox_head=dict(prior_generator=dict({keys})))'


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    from ssd_plugin.analysis import (
        evaluate_coverage,
        plot_coverage,
        prepare_coverage,
        search_scale_range,
    )
    from ssd_plugin.analysis.synthetic_coco import use_synthetic_coco
    from ssd_plugin.cli.data_root import load_config_with_data_root

    out_dir = args.out_dir or osp.join(
        'work_dirs', 'default_box_coverage', osp.splitext(osp.basename(args.config))[0]
    )
    torch.set_num_threads(args.num_threads)
    timing = {}
    start = time.perf_counter()
    cfg = load_config_with_data_root(args.config, args.data_root, args.cfg_options)
    if args.synthetic_coco:
        os.makedirs(out_dir, exist_ok=True)
        ann_file = osp.join(out_dir, 'synthetic_coco.json')
        use_synthetic_coco(cfg, ann_file, *args.synthetic_coco)
        print(
            f'synthetic COCO file {ann_file}: {args.synthetic_coco[0]} images, '
            f'{args.synthetic_coco[1]} boxes'
        )
    problem = prepare_coverage(cfg)
    timing['load_s'] = time.perf_counter() - start
    start = time.perf_counter()
    report = evaluate_coverage(problem, iou_thr=args.iou_thr)
    timing['report_s'] = time.perf_counter() - start
    print(format_figures('config', report))
    result = {'config': args.config, 'report': report}
    optimized = None
    if args.optimize:
        start = time.perf_counter()
        search = search_scale_range(
            problem,
            search_ratios=args.search_ratios,
            max_priors=args.max_priors,
            max_gts=args.search_gts,
            iou_thr=args.iou_thr,
        )
        timing['search_s'] = time.perf_counter() - start
        start = time.perf_counter()
        optimized = evaluate_coverage(problem, search['overrides'], iou_thr=args.iou_thr)
        timing['optimized_report_s'] = time.perf_counter() - start
        result.update(search=search, optimized=optimized)
        print(format_figures('optimized', optimized))
        if search['overrides']:
            print('best setting (add to the config):\n' + config_snippet(search['overrides']))
        else:
            print('no setting of the search beats the config')
    result['timing'] = timing
    print('timing: ' + ', '.join(f'{k} {v:.1f}' for k, v in timing.items()))

    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'coverage.json'), 'w') as f:
        json.dump(result, f, indent=1)
    plot_coverage(report, osp.join(out_dir, 'coverage.png'), optimized)
    print(f'wrote {osp.join(out_dir, "coverage.json")} and {osp.join(out_dir, "coverage.png")}')


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
