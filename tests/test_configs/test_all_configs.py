"""Every config in ``configs/`` builds, trains one iteration, validates and tests.

Each config keeps its architecture, pipelines, default boxes, evaluator and schedule; only its
data moves to tiny generated datasets (``tests/data_factory.py``): VOC configs read a tiny
VOCdevkit (VOC2007 + VOC2012 xml, VOCMetric 11-point), all others a tiny COCO json written with
the config's own class names. To fit two shared CPU cores: pretrained weights are dropped (no
network), a batch is one image (two where BatchNorm trains), val and test see one image, the
test pass runs only where it differs from validation, and inputs above 320 px (SSD512) are
resized to 320 px, where every SSD512 level still exists (64..1 cells become 40, 20, 10, 5, 3,
2, 1). New configs are picked up by the glob.
"""

import glob
import json
import os.path as osp

import pytest
import torch
from data_factory import (
    SPLITS,
    dataset_classes,
    drop_pretrained,
    leaf_datasets,
    make_coco_dataset,
    make_voc_dataset,
    use_tiny_datasets,  # fmt: skip
)
from mmengine.config import Config
from mmengine.runner import Runner
from pycocotools.coco import COCO

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '*.py')))


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    # two cores shared by the test workers: more threads per process only oversubscribe them
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('voc'))
    make_voc_dataset(root)
    return root


def test_configs_are_found():
    names = {osp.basename(c) for c in CONFIGS}
    assert {'ssd300_vgg16_8xb8-240e_voc0712.py', 'ssd512_vgg16_8xb8-240e_voc0712.py',
            'ssd300_vgg16_8xb8-120e_coco_test-dev.py'} <= names  # fmt: skip
    assert any(n.startswith('ssd300_r50_') and n.endswith('coco.py') for n in names)
    assert any(n.startswith('ssdlite_mobilenetv2_') and n.endswith('coco.py') for n in names)


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_config_trains_validates_and_tests(config, tmp_path, voc_root):
    cfg = Config.fromfile(config)
    run_test = (cfg.test_dataloader, cfg.test_evaluator) != (cfg.val_dataloader, cfg.val_evaluator)
    coco_root = str(tmp_path / 'coco')
    make_coco_dataset(coco_root, dataset_classes(cfg.train_dataloader.dataset), SPLITS)
    use_tiny_datasets(cfg, coco_root, voc_root)
    drop_pretrained(cfg)
    # one batch: one image, or two for BatchNorm or for VOC07+12 (one image of each year)
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        leaves = list(leaf_datasets(loader.dataset))
        bn = split == 'train' and "'BN'" in str(cfg.model)
        loader.batch_size = max(2 if bn else 1, len(leaves))
        for leaf in leaves:
            leaf.indices = loader.batch_size // len(leaves)
            for transform in leaf.pipeline:
                if transform.type == 'Resize' and max(transform.scale) > 320:
                    transform.scale = (320, 320)
    if cfg.train_cfg.get('type') == 'IterBasedTrainLoop':
        cfg.train_cfg.update(max_iters=1, val_interval=2)
    else:
        cfg.train_cfg.update(max_epochs=1, val_interval=2)
    for metric in _metrics(cfg.test_evaluator):
        if metric.get('format_only'):
            metric.outfile_prefix = str(tmp_path / 'submission')
    cfg.merge_from_dict(dict(work_dir=str(tmp_path / 'work_dir'), randomness=dict(seed=0),
                             default_hooks=dict(checkpoint=None)))  # fmt: skip

    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert 0 < loss < float('inf')

    val_metrics = runner.val()
    # no NaN (per-class APs of classwise evaluators are NaN for classes without ground truth)
    assert all(v == v for k, v in val_metrics.items() if not k.endswith('_precision'))
    is_voc = cfg.val_evaluator.type == 'VOCMetric'
    assert ('pascal_voc/mAP' if is_voc else 'coco/bbox_mAP') in val_metrics

    if not run_test:
        return
    test_metrics = runner.test()
    if any(m.get('format_only') for m in _metrics(cfg.test_evaluator)):
        results = json.load(open(tmp_path / 'submission.bbox.json'))
        assert results, 'no detections written'
        coco = COCO(osp.join(coco_root, 'annotations', 'test.json'))
        coco.loadRes(results)
        assert {r['image_id'] for r in results} == set(SPLITS['test'][:1])
        assert {r['category_id'] for r in results} <= set(coco.getCatIds())
    else:  # the same metrics (test evaluators may add classwise ones)
        assert val_metrics.keys() <= test_metrics.keys()


def _metrics(evaluator):
    return evaluator if isinstance(evaluator, list) else [evaluator]
