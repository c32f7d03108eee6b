"""Figure of a coverage report: best-IoU histogram, coverage by object size, positives per level."""

from typing import Dict, Optional

import numpy as np

__all__ = ['plot_coverage']


def plot_coverage(report: Dict, out_file: str, optimized: Optional[Dict] = None) -> None:
    """Write a three-panel PNG of a report (and of an optimised setting's report beside it).

    Args:
        report: From :func:`~ssd_plugin.analysis.report.evaluate_coverage`.
        out_file: PNG path.
        optimized: A second report to compare with, or None.
    """
    import matplotlib

    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt

    reports = {'config': report}
    if optimized is not None:
        reports['optimized'] = optimized
    width = 0.8 / len(reports)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))

    for name, rep in reports.items():
        hist = rep['best_iou_histogram']
        edges = np.asarray(hist['edges'])
        axes[0].stairs(hist['counts'], edges, label=name, fill=name == 'config', alpha=0.6)
    axes[0].axvline(report['iou_thr'], color='k', linestyle='--', linewidth=1)
    axes[0].set(xlabel='best default-box IoU', ylabel='ground truths', title='Best IoU per gt')

    buckets = list(report['by_size'])
    for i, (name, rep) in enumerate(reports.items()):
        values = [rep['by_size'][b]['coverage'] or 0.0 for b in buckets]
        axes[1].bar(np.arange(len(buckets)) + i * width, values, width, label=name)
    labels = [f'{b}\n({report["by_size"][b]["num_gts"]} gts)' for b in buckets]
    axes[1].set_xticks(np.arange(len(buckets)) + width * (len(reports) - 1) / 2, labels)
    axes[1].set(ylim=(0, 1), ylabel=f'share with best IoU >= {report["iou_thr"]}')
    axes[1].set_title('Coverage by COCO object size')

    for i, (name, rep) in enumerate(reports.items()):
        share = rep['overall'].get('level_share')
        if share is not None:
            mean = rep['overall']['mean_positives']
            axes[2].bar(
                np.arange(len(share)) + i * width, share, width, label=f'{name} ({mean:.2f}/gt)'
            )
    axes[2].set(xlabel='feature level', ylabel='share of positives', title='Positives per level')

    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
