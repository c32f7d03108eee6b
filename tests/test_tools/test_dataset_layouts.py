"""Every tool of tools/analysis/ and tools/browse_augmentations.py, on every layout a config builds.

Layouts: COCO json, Pascal VOC (``ImageSets/Main/*.txt`` + XML), a COCO dataset in a
``RepeatDataset`` and two VOC years in a ``ConcatDataset``, each as the train and the test set of
one config around the demo's small network. The tools run in this process (``main(argv)``); the
figures they print are checked against counts read from the generated files themselves. The
tools that take a checkpoint or a work directory get those of a real two-iteration run on the
layout (``tools/train.py``, validation included), whose checkpoint's meta is what the runner
writes.
"""

import glob
import json
import os.path as osp
from xml.etree import ElementTree as ET

import cv2
import mmengine
import numpy as np
import pytest
import torch
from data_factory import CAT_IDS, CLASSES, SPLITS, make_coco_dataset, make_voc_dataset
from demo_checkpoint import DEMO_CONFIG
from mmengine.config import Config
from tool_runner import load_tool

from ssd_plugin.visualization.border_safe_visualizer import BorderSafeDetLocalVisualizer

coverage_tool = load_tool('analysis/default_box_coverage.py')
check_tool = load_tool('analysis/check_dataset.py')
draw_tool = load_tool('analysis/draw_predictions.py')
rescore_tool = load_tool('analysis/rescore_results.py')
curves_tool = load_tool('analysis/plot_curves.py')
browse_tool = load_tool('browse_augmentations.py')
train_tool = load_tool('train.py')
test_tool = load_tool('test.py')

LAYOUTS = ('coco', 'voc', 'repeat', 'concat')
# (year, image set) of each VOC dataset, per layout and split. The training set concatenates two
# years as the shipped VOC07+12 configs do: ignore_keys=['dataset_type'] (without it mmdet keeps a
# list of the parts' metainfo, which its own training refuses: NumClassCheckHook). The test set
# concatenates two image sets of one year (mmdet's VOCMetric reads one dataset_type).
VOC_SETS = {
    'voc': dict(train=[('VOC2007', 'trainval')], test=[('VOC2007', 'test')]),
    'concat': dict(train=[('VOC2007', 'trainval'), ('VOC2012', 'trainval')],
                   test=[('VOC2007', 'test'), ('VOC2007', 'trainval')]),
}  # fmt: skip


def _coco(root, split, pipeline):
    return dict(type='CocoDataset', data_root=root, ann_file=f'annotations/{split}.json',
                data_prefix=dict(img=f'{split}/'), metainfo=dict(classes=CLASSES),
                pipeline=pipeline)  # fmt: skip


def _voc(root, year, split, pipeline):
    return dict(type='VOCDataset', data_root=root, ann_file=f'{year}/ImageSets/Main/{split}.txt',
                data_prefix=dict(sub_data_root=f'{year}/'), metainfo=dict(classes=CLASSES),
                pipeline=pipeline)  # fmt: skip


def _datasets(layout, root, split, pipeline):
    """The ``split`` dataset of ``layout``."""
    if layout == 'coco':
        return _coco(osp.join(root, 'coco'), split, pipeline)
    if layout == 'repeat':
        return dict(type='RepeatDataset', times=3, dataset=_coco(osp.join(root, 'coco'), split,
                                                                 pipeline))  # fmt: skip
    parts = [_voc(osp.join(root, 'voc'), year, s, pipeline) for year, s in VOC_SETS[layout][split]]
    if layout == 'voc':
        return parts[0]
    return dict(type='ConcatDataset', datasets=parts, ignore_keys=['dataset_type'])


def _layout_config(layout, root) -> str:
    """The demo config (small network, 192 px) with ``layout`` datasets of ``CLASSES``."""
    cfg = Config.fromfile(DEMO_CONFIG)
    make_coco_dataset(osp.join(root, 'coco'), CLASSES, SPLITS, cat_ids=CAT_IDS)
    make_voc_dataset(osp.join(root, 'voc'), classes=CLASSES)
    for split, pipeline in (('train', cfg.train_pipeline), ('test', cfg.test_pipeline)):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        del loader['dataset']  # replaced, not merged into the demo's
        loader['dataset'] = _datasets(layout, root, split, pipeline)
    cfg.val_dataloader = cfg.test_dataloader
    if layout in ('coco', 'repeat'):
        evaluator = dict(type='CocoMetric', ann_file=osp.join(root, 'coco/annotations/test.json'),
                         metric='bbox', proposal_nums=(1, 10, 100))  # fmt: skip
    else:
        evaluator = dict(type='VOCMetric', metric='mAP', eval_mode='11points')
    cfg.val_evaluator = cfg.test_evaluator = evaluator
    cfg.model.bbox_head.num_classes = len(CLASSES)
    cfg.metainfo = dict(classes=CLASSES)
    path = osp.join(root, f'{layout}.py')
    cfg.dump(path)
    return path


def _boxes_in_files(layout, root, split):
    """``(images, boxes)`` the datasets list, counted from the generated files (COCO json; VOC
    XML without difficult objects, which mmdet's VOCDataset flags as ignored)."""
    if layout in ('coco', 'repeat'):
        coco = json.load(open(osp.join(root, 'coco', 'annotations', f'{split}.json')))
        return len(coco['images']), len(coco['annotations'])
    images = boxes = 0
    for year, s in VOC_SETS[layout][split]:
        stems = open(osp.join(root, 'voc', year, 'ImageSets', 'Main', f'{s}.txt')).read().split()
        images += len(stems)
        for stem in stems:
            xml = ET.parse(osp.join(root, 'voc', year, 'Annotations', f'{stem}.xml'))
            boxes += sum(o.findtext('difficult') == '0' for o in xml.iter('object'))
    return images, boxes


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """``run(layout) -> (config, work_dir, checkpoint)``: two training iterations of the demo
    network on the layout, validated after the second (run once per layout)."""
    runs = {}

    def run(layout):
        if layout not in runs:
            root = str(tmp_path_factory.mktemp(layout))
            config, work_dir = _layout_config(layout, root), osp.join(root, 'work_dir')
            torch.manual_seed(0)
            train_tool.main([config, '--work-dir', work_dir, '--cfg-options',
                             'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                             'default_hooks.logger.interval=1',
                             'default_hooks.checkpoint.interval=2'])  # fmt: skip
            runs[layout] = config, work_dir, osp.join(work_dir, 'iter_2.pth')
        return runs[layout]

    return run


@pytest.mark.parametrize('layout', LAYOUTS)
def test_default_box_coverage_reads_every_layout(layout, tmp_path, capsys):
    config = _layout_config(layout, str(tmp_path))
    coverage_tool.main([config, '--out-dir', str(tmp_path / 'out')])
    report = json.loads((tmp_path / 'out' / 'coverage.json').read_text())['report']
    num_images, num_boxes = _boxes_in_files(layout, str(tmp_path), 'train')
    # a RepeatDataset counts its dataset once
    assert (report['num_images'], report['overall']['num_gts']) == (num_images, num_boxes)
    assert f'{num_boxes:>8} gts' in capsys.readouterr().out


@pytest.mark.parametrize('layout', LAYOUTS)
def test_check_dataset_reads_every_layout(layout, tmp_path, capsys):
    config = _layout_config(layout, str(tmp_path))
    assert check_tool.main([config, '--split', 'train', '--workers', '1']) == 0
    out = capsys.readouterr().out
    if layout in ('coco', 'repeat'):
        files = [(osp.join(str(tmp_path), 'coco', 'annotations', 'train.json'), 5)]
    else:
        files = [(osp.join(str(tmp_path), 'voc', year, 'ImageSets', 'Main', f'{s}.txt'), 3)
                 for year, s in VOC_SETS[layout]['train']]  # fmt: skip
    for ann_file, images in files:
        assert f'train: {ann_file}: {images} images, 0 with problems' in out, out
    assert out.endswith('no problems found\n')


@pytest.mark.parametrize('layout', LAYOUTS)
def test_draw_predictions_and_rescore_read_every_layout(layout, trained, monkeypatch):
    config, work_dir, checkpoint = trained(layout)
    root = osp.dirname(config)
    saved = torch.load(checkpoint, weights_only=False)
    assert tuple(saved['meta']['dataset_meta']['classes']) == tuple(CLASSES)
    # weights without meta (converted ones): the names drawn are still the config's test set's
    bare = osp.join(root, 'bare.pth')
    torch.save(dict(state_dict=saved['state_dict']), bare)
    drawn_classes = []
    draw = BorderSafeDetLocalVisualizer.add_datasample
    monkeypatch.setattr(
        BorderSafeDetLocalVisualizer,
        'add_datasample',
        lambda self, *a, **k: (
            drawn_classes.append(tuple(self.dataset_meta['classes'])) or draw(self, *a, **k)
        ),
    )
    num_images, _ = _boxes_in_files(layout, root, 'test')
    draw_dir = osp.join(root, 'drawn')
    draw_tool.main([config, bare, '--out-dir', draw_dir, '--num', '2',
                    '--score-thr', '0.01'])  # fmt: skip
    assert len(glob.glob(osp.join(draw_dir, '*.png'))) == 2
    assert drawn_classes == [tuple(CLASSES)] * 2

    results, test_dir = osp.join(root, 'results.pkl'), osp.join(root, 'test_dir')
    test_tool.main([config, checkpoint, '--work-dir', test_dir, '--out', results])
    dumped = mmengine.load(results)
    times = 3 if layout == 'repeat' else 1
    assert len(dumped) == num_images * times
    (log,) = glob.glob(osp.join(test_dir, '*', '*.json'))
    online = mmengine.load(log)
    offline = rescore_tool.rescore(Config.fromfile(config), results)
    prefix = 'coco/' if layout in ('coco', 'repeat') else 'pascal_voc/'
    assert offline and all(k.startswith(prefix) for k in offline)
    np.testing.assert_equal(offline, {k: v for k, v in online.items() if k.startswith(prefix)})


@pytest.mark.parametrize('layout', LAYOUTS)
def test_plot_curves_reads_every_layouts_run(layout, trained, capsys):
    """The run's losses and its validation AP (COCO's or VOC's keys) are what it logged."""
    _, work_dir, _ = trained(layout)
    (scalars,) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    records = [json.loads(line) for line in open(scalars) if line.strip()]
    key = 'coco/bbox_mAP' if layout in ('coco', 'repeat') else 'pascal_voc/mAP'
    (logged,) = [r[key] for r in records if key in r]
    out = osp.join(work_dir, 'curves.png')
    curves_tool.main([work_dir, '--out', out])
    losses, metrics = curves_tool.load_scalars(work_dir)
    assert metrics[key] == {2: logged}
    assert sorted(losses['loss']) == [1, 2]
    assert f'{key.split("/")[-1]} {logged:.3f}' in capsys.readouterr().out
    assert open(out, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('layout', LAYOUTS)
def test_browse_augmentations_reads_every_layout(layout, tmp_path, capsys):
    """Each tile is a training sample with its boxes drawn (green) on the grid's white."""
    config = _layout_config(layout, str(tmp_path))
    out = str(tmp_path / 'grid.png')
    browse_tool.main([config, '--out', out, '--num', '4', '--cols', '2'])
    assert f'wrote 4 augmented samples to {out}' in capsys.readouterr().out
    grid = cv2.imread(out)
    green = (grid[..., 1] > 150) & (grid[..., 0] < 60) & (grid[..., 2] < 60)
    assert green.any()


@pytest.mark.parametrize('layout', ['repeat', 'concat'])
def test_synthetic_coco_replaces_any_training_set_once(layout, tmp_path):
    """--synthetic-coco on a wrapped (and a VOC) training set: the file is analysed once."""
    config = _layout_config(layout, str(tmp_path))
    coverage_tool.main(
        [config, '--out-dir', str(tmp_path / 'out'), '--synthetic-coco', '30', '200']
    )
    coco = json.loads((tmp_path / 'out' / 'synthetic_coco.json').read_text())
    assert [c['name'] for c in coco['categories']] == list(CLASSES)
    crowd = sum(a['iscrowd'] for a in coco['annotations'])
    report = json.loads((tmp_path / 'out' / 'coverage.json').read_text())['report']
    assert (report['num_images'], report['overall']['num_gts']) == (30, 200 - crowd)
