"""Move a config's data to another folder: what the tools' ``--data-root DIR`` option does.

A config's ``data_root`` is expanded into every dataset and evaluator while the file is read
(``ann_file=data_root + 'annotations/...'``, ``data_root=data_root``), so overriding the top-level
``data_root`` afterwards changes nothing. :func:`move_data_root` rewrites every path that lies
under the config's ``data_root`` instead: the ``data_root`` of each dataset of the train, val and
test dataloaders (inside ``RepeatDataset`` / ``ConcatDataset`` / ``ClassBalancedDataset``
wrappers; for a dataset without ``data_root`` its ``ann_file`` and ``data_prefix`` paths) and the
``ann_file`` of each val / test evaluator (one or a list), keeping every path relative to the
root as it was. The option itself is :func:`ssd_plugin_cli.options.add_data_root_arg`.
"""

import os.path as osp
import warnings
from typing import Iterator, List, Optional

from mmengine.config import Config

__all__ = ['move_data_root', 'load_config_with_data_root']

_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_EVALUATORS = ('val_evaluator', 'test_evaluator')


def load_config_with_data_root(
    filename: str, data_root: Optional[str] = None, cfg_options=None
) -> Config:
    """A config file with ``--data-root`` (:func:`move_data_root`), then ``--cfg-options``."""
    with warnings.catch_warnings():
        # mmengine finds `mmdet::` bases with pkg_resources, whose import warns (setuptools
        # >= 67) twice per config: the message says nothing about the config or its run
        warnings.filterwarnings('ignore', 'pkg_resources is deprecated', UserWarning)
        cfg = Config.fromfile(filename)
    if data_root is not None:
        move_data_root(cfg, data_root)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _leaf_datasets(dataset: dict, key: str) -> Iterator[tuple]:
    """``(key, dataset dict)`` of the datasets inside wrappers, as mmengine builds them."""
    if 'datasets' in dataset:  # ConcatDataset
        for i, inner in enumerate(dataset['datasets']):
            yield from _leaf_datasets(inner, f'{key}.datasets[{i}]')
    elif 'dataset' in dataset:  # RepeatDataset, ClassBalancedDataset, MultiImageMixDataset
        yield from _leaf_datasets(dataset['dataset'], f'{key}.dataset')
    else:
        yield key, dataset


def _is_url(path: str) -> bool:
    return '://' in path


def _relative(path: str, root: str) -> Optional[str]:
    """``path`` relative to ``root`` ('' for the root itself), None when it is not under it."""
    if _is_url(path) or _is_url(root):
        path, root = path.rstrip('/'), root.rstrip('/')
    else:
        path, root = osp.normpath(path), osp.normpath(root)
    if path == root:
        return ''
    if root == '.' and not osp.isabs(path) and not path.startswith('..'):
        return path
    prefix = root if root.endswith('/') else root + '/'
    return path[len(prefix) :] if path.startswith(prefix) else None


def move_data_root(cfg: Config, new_root: str) -> List[str]:
    """Point every dataset and evaluator path under ``cfg.data_root`` at ``new_root``, in place.

    Args:
        cfg (Config): A full config with a top-level ``data_root`` (the root its paths were
            written under). Its ``data_root`` becomes ``new_root``.
        new_root (str): The folder to read the data from.

    Returns:
        list[str]: The config keys that were changed, e.g. ``val_evaluator.ann_file``.

    Raises:
        KeyError: The config has no top-level ``data_root``.
        ValueError: A dataset or evaluator path is not under ``cfg.data_root`` (so where it
            should move is unknown); the message names the key and the path.
    """
    old_root = cfg.get('data_root')
    if not old_root:
        raise KeyError(
            'the config has no top-level data_root, so --data-root cannot tell which part of its '
            'dataset paths to replace; set train/val/test_dataloader.dataset.data_root and '
            '{val,test}_evaluator.ann_file with --cfg-options instead'
        )
    root = new_root.rstrip('/') or '/'
    moves = []  # (container, key, new value, config key): all checked before any is changed

    def move(container: dict, field: str, key: str) -> None:
        path = container.get(field)
        if not path:
            return
        rel = _relative(str(path), str(old_root))
        if rel is None:
            raise ValueError(
                f"--data-root: {key} = {path!r} is not under the config's data_root "
                f'{old_root!r}, so it cannot be moved to {new_root!r}; set it with --cfg-options'
            )
        new = osp.join(root, rel) if rel else root
        slash = '/' if str(path).endswith('/') and not new.endswith('/') else ''
        moves.append((container, field, new + slash, key))

    seen = set()  # `test_dataloader = val_dataloader` may share one dict: move it once
    for loader in _LOADERS:
        dataset = (cfg.get(loader) or {}).get('dataset')
        for key, leaf in _leaf_datasets(dataset, f'{loader}.dataset') if dataset else ():
            if id(leaf) in seen:
                continue
            seen.add(id(leaf))
            if leaf.get('data_root'):
                move(leaf, 'data_root', f'{key}.data_root')
            else:  # paths relative to the working directory, each under the old root
                move(leaf, 'ann_file', f'{key}.ann_file')
                for name in (leaf.get('data_prefix') or {}).keys():
                    move(leaf['data_prefix'], name, f'{key}.data_prefix.{name}')
    for name in _EVALUATORS:
        evaluator = cfg.get(name)
        metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
        for i, metric in enumerate(m for m in metrics if isinstance(m, dict)):
            if id(metric) in seen:
                continue
            seen.add(id(metric))
            key = f'{name}[{i}]' if isinstance(evaluator, (list, tuple)) else name
            move(metric, 'ann_file', f'{key}.ann_file')

    for container, field, new, _ in moves:
        container[field] = new
    cfg.data_root = root + '/'
    return [key for *_, key in moves]
