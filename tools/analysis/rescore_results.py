"""Re-score raw results dumped by ``tools/test.py --out`` with a config's evaluator, offline.

No model and no images are needed, so other metric settings are quick to try::

    python tools/test.py CONFIG CHECKPOINT --out results.pkl
    python tools/analysis/rescore_results.py CONFIG results.pkl
    python tools/analysis/rescore_results.py CONFIG results.pkl \\
        --cfg-options test_evaluator.classwise=True

Unlike mmdet's ``eval_metric.py`` (which pairs the test dataset with ``val_evaluator``), the
dataset's metainfo and the evaluator come from the same split (``--split``, default ``test``).
The metrics are printed and, with ``--out-json``, written to a json file.
"""

import argparse
import json
from typing import Dict

from mmengine.config import Config, DictAction

from ssd_plugin_cli.errors import add_debug_arg, run_tool
from ssd_plugin_cli.options import add_data_root_arg

# mmdet and ssd_plugin (torch) are imported where they are used, after the arguments are
# parsed: --help and a wrong option answer without loading the detection stack


def rescore(cfg: Config, results_file: str, split: str = 'test') -> Dict[str, float]:
    """Evaluate dumped results with ``cfg.<split>_evaluator``.

    Args:
        cfg (Config): The config the results were produced with.
        results_file (str): The ``.pkl`` written by ``tools/test.py --out``.
        split (str): ``'test'`` or ``'val'``: whose dataset metainfo and evaluator to use.

    Returns:
        dict[str, float]: The evaluator's metrics.
    """
    import mmengine
    from mmdet.registry import DATASETS
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope

    import ssd_plugin  # noqa: F401  (registers the components: configs need no custom_imports)
    from ssd_plugin.analysis.ground_truths import dataset_metainfo

    init_default_scope(cfg.get('default_scope', 'mmdet'))
    results = mmengine.load(results_file)
    if not isinstance(results, list) or not results:
        raise ValueError(f'{results_file} holds no results: expected the non-empty list that '
                         f'tools/test.py --out writes, got {type(results).__name__}')  # fmt: skip
    # metainfo (class names, VOC year) only: lazy_init skips loading the annotations
    dataset = DATASETS.build({**cfg[f'{split}_dataloader'].dataset, 'lazy_init': True})
    evaluator = Evaluator(cfg[f'{split}_evaluator'])
    evaluator.dataset_meta = dataset_metainfo(dataset, f'{split}_dataloader.dataset')
    return evaluator.offline_evaluate(results)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description='Re-score dumped detection results')
    parser.add_argument('config', help='config the results were produced with')
    parser.add_argument('results', help='.pkl file from tools/test.py --out')
    parser.add_argument('--split', choices=['test', 'val'], default='test',
                        help='use <split>_dataloader and <split>_evaluator')  # fmt: skip
    parser.add_argument('--out-json', help='also write the metrics to this json file')
    add_data_root_arg(parser)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. test_evaluator.classwise=True')  # fmt: skip
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    import mmengine

    from ssd_plugin.cli.data_root import load_config_with_data_root

    cfg = load_config_with_data_root(args.config, args.data_root, args.cfg_options)
    metrics = rescore(cfg, args.results, args.split)
    print(json.dumps(metrics, indent=1))
    if args.out_json:
        mmengine.dump(metrics, args.out_json)


if __name__ == '__main__':
    raise SystemExit(run_tool(main))  # a refusal: one line, no traceback (--debug)
