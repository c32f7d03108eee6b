"""Plot the training loss and the validation mAP of an mmengine work directory.

Reads every ``<work_dir>/<timestamp>/vis_data/scalars.json`` (a resumed run writes a second one;
later runs override the steps they repeat) and writes one PNG with two panels: the loss terms
against the iteration, and the validation AP against the iteration: COCO's bbox mAP / mAP@0.5 /
mAP@0.75 (``CocoMetric``) or Pascal VOC's mAP (``VOCMetric``), whichever the run logged.

Example::

    python tools/analysis/plot_curves.py work_dirs/demo --out work_dirs/demo/curves.png
"""

import argparse
import glob
import json
import os.path as osp
from typing import Dict, List, Tuple

import matplotlib

matplotlib.use('Agg')  # headless: the demo runs without a display
import matplotlib.pyplot as plt  # noqa: E402

LOSS_PREFIX = 'loss'
# mmdet's evaluators' logged keys: CocoMetric's, then VOCMetric's (its mean over iou_thrs)
MAP_KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75', 'pascal_voc/mAP')

Series = Dict[str, Dict[int, float]]


def load_scalars(work_dir: str) -> Tuple[Series, Series]:
    """Loss and validation series ``{key: {step: value}}`` from all runs in ``work_dir``.

    Raises:
        FileNotFoundError: ``work_dir`` holds no ``*/vis_data/scalars.json``.
    """
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(
            f'no */vis_data/scalars.json under {work_dir!r}: is it an mmengine work_dir?'
        )
    losses: Series = {}
    metrics: Series = {}
    for path in files:  # timestamps sort chronologically, so a resumed run comes last
        with open(path, encoding='utf-8') as f:
            for line in f:
                if not line.strip():
                    continue
                record = json.loads(line)
                step = int(record.get('step', record.get('iter', 0)))
                for key, value in record.items():
                    if key.startswith(LOSS_PREFIX):
                        losses.setdefault(key, {})[step] = float(value)
                    elif key in MAP_KEYS:
                        metrics.setdefault(key, {})[step] = float(value)
    return losses, metrics


def _xy(series: Dict[int, float]) -> Tuple[List[int], List[float]]:
    steps = sorted(series)
    return steps, [series[s] for s in steps]


def plot_curves(work_dir: str, out_file: str) -> Dict[str, float]:
    """Write the PNG; returns the last value of every validation metric found."""
    losses, metrics = load_scalars(work_dir)
    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key in sorted(losses):
        width = 1.5 if key == 'loss' else 1.0
        ax_loss.plot(*_xy(losses[key]), marker='.', label=key, linewidth=width)
    ax_loss.set(xlabel='iteration', ylabel='loss', title='training loss', yscale='log')
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    for key in MAP_KEYS:
        if key in metrics:
            ax_map.plot(*_xy(metrics[key]), marker='o', label=key)
    ax_map.set(xlabel='iteration', ylabel='AP', title='validation AP', ylim=(0, 1))
    ax_map.grid(alpha=0.3)
    if metrics:
        ax_map.legend()
    else:
        ax_map.text(0.5, 0.5, 'no validation yet', ha='center', transform=ax_map.transAxes)
    fig.suptitle(osp.basename(osp.normpath(work_dir)))
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return {key: _xy(series)[1][-1] for key, series in metrics.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description='Plot loss and mAP curves of a work_dir.')
    parser.add_argument('work_dir', help='mmengine work directory (holds <timestamp>/vis_data)')
    parser.add_argument('--out', help='PNG to write; defaults to <work_dir>/curves.png')
    args = parser.parse_args(argv)
    out_file = args.out or osp.join(args.work_dir, 'curves.png')
    last = plot_curves(args.work_dir, out_file)
    summary = ', '.join(f'{k.split("/")[-1]} {v:.3f}' for k, v in last.items())
    print(f'curves written to {out_file}' + (f' (last val: {summary})' if summary else ''))


if __name__ == '__main__':
    main()
