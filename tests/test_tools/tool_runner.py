"""Helpers for the tests of ``tools/``: import a tool, run one in a subprocess, tiny configs."""

import importlib.util
import os
import os.path as osp
import subprocess
from types import ModuleType
from typing import Dict, Optional, Sequence

from data_factory import (
    CAT_IDS,
    CLASSES,
    SPLITS,
    drop_pretrained,
    is_voc,
    leaf_datasets,
    make_coco_dataset,
    make_voc_dataset,
    use_tiny_datasets,
)
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs')
TOOLS = osp.join(REPO, 'tools')
HERE = osp.dirname(osp.abspath(__file__))


def load_tool(relpath: str) -> ModuleType:
    """Import ``tools/<relpath>`` as a module (``main(argv)`` then runs it in this process)."""
    name = 'tool_' + relpath.replace('/', '_').removesuffix('.py')
    spec = importlib.util.spec_from_file_location(name, osp.join(TOOLS, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(cmd: Sequence[str], cwd: str, env: Optional[Dict[str, str]] = None,
        timeout: float = 600, checkout: bool = True) -> str:  # fmt: skip
    """Run a command; return its output, or fail the test with the output's tail.

    ``checkout``: import ``ssd_plugin`` from this checkout (not the installed copy) and the test
    helpers (e.g. ``dist_probe``) in the command's Python processes.
    """
    full_env = dict(os.environ, OMP_NUM_THREADS='1')
    full_env.update(env or {})  # env may replace OMP_NUM_THREADS too
    if checkout:
        full_env['PYTHONPATH'] = os.pathsep.join(
            p for p in (REPO, HERE, osp.dirname(HERE), full_env.get('PYTHONPATH')) if p
        )
    proc = subprocess.run(list(cmd), cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{" ".join(cmd)} failed ({proc.returncode}):\n{output[-6000:]}'
    return output


def tiny_config(base: str, root: str, classes: Sequence[str] = CLASSES, **overrides) -> str:
    """Write ``root/config.py``: ``base`` with its data replaced by tiny datasets under ``root``.

    COCO-style datasets get ``classes`` (``CAT_IDS``, ``SPLITS``) and the head
    ``num_classes=len(classes)``; VOC ones a tiny VOCdevkit. One epoch, logged every iteration
    without smoothing, seeded, no pretrained weights. ``overrides`` are merged last.

    Returns:
        str: The config file.
    """
    cfg = Config.fromfile(base)
    coco_root, voc_root = osp.join(root, 'coco'), osp.join(root, 'voc')
    make_coco_dataset(coco_root, classes, SPLITS, cat_ids=CAT_IDS[: len(classes)])
    make_voc_dataset(voc_root)
    use_tiny_datasets(cfg, coco_root, voc_root)
    for split in ('train', 'val', 'test'):
        for leaf in leaf_datasets(cfg[f'{split}_dataloader'].dataset):
            if not is_voc(leaf):
                leaf.metainfo = dict(classes=tuple(classes))
                cfg.model.bbox_head.num_classes = len(classes)
    drop_pretrained(cfg)
    cfg.merge_from_dict(dict(
        train_cfg=dict(max_epochs=1, val_interval=1),
        default_hooks=dict(logger=dict(interval=1)),
        log_processor=dict(window_size=1),
        randomness=dict(seed=0),
    ))  # fmt: skip
    cfg.merge_from_dict(overrides)
    path = osp.join(root, 'config.py')
    cfg.dump(path)
    return path
