"""Every tool of tools/analysis/ that reads a dataset, on every layout a config can build.

Layouts: COCO json, Pascal VOC (``ImageSets/Main/*.txt`` + XML), a COCO dataset in a
``RepeatDataset`` and two VOC years in a ``ConcatDataset``, each as the train and the test set of
one config around the demo's small network. The tools run in this process (``main(argv)``); the
figures they print are checked against counts read from the generated files themselves.
"""

import json
import os.path as osp
from xml.etree import ElementTree as ET

import mmengine
import numpy as np
import pytest
import torch
from data_factory import CAT_IDS, CLASSES, SPLITS, make_coco_dataset, make_voc_dataset
from demo_checkpoint import DEMO_CONFIG
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import save_checkpoint
from tool_runner import load_tool

coverage_tool = load_tool('analysis/default_box_coverage.py')
check_tool = load_tool('analysis/check_dataset.py')
draw_tool = load_tool('analysis/draw_predictions.py')
rescore_tool = load_tool('analysis/rescore_results.py')
test_tool = load_tool('test.py')

LAYOUTS = ('coco', 'voc', 'repeat', 'concat')
# (year, image set) of each VOC dataset, per layout and split. A test set concatenates two image
# sets of one year: mmdet's ConcatDataset of two years has a list for its metainfo (dataset_type
# differs), which mmdet's own init_detector cannot read.
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
    return parts[0] if layout == 'voc' else dict(type='ConcatDataset', datasets=parts)


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
def checkpoint(tmp_path_factory):
    """The demo network for ``CLASSES``, initialised (no training)."""
    path = str(tmp_path_factory.mktemp('ckpt') / 'init.pth')
    init_default_scope('mmdet')
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.model.bbox_head.num_classes = len(CLASSES)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    save_checkpoint(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


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
def test_draw_predictions_and_rescore_read_every_layout(layout, tmp_path, checkpoint):
    config = _layout_config(layout, str(tmp_path))
    num_images, _ = _boxes_in_files(layout, str(tmp_path), 'test')
    draw_dir = tmp_path / 'drawn'
    draw_tool.main([config, checkpoint, '--out-dir', str(draw_dir), '--num', '2',
                    '--score-thr', '0.01'])  # fmt: skip
    assert len(list(draw_dir.glob('*.png'))) == 2

    results, work_dir = str(tmp_path / 'results.pkl'), str(tmp_path / 'test_dir')
    test_tool.main([config, checkpoint, '--work-dir', work_dir, '--out', results])
    dumped = mmengine.load(results)
    times = 3 if layout == 'repeat' else 1
    assert len(dumped) == num_images * times
    (log,) = [p for p in (tmp_path / 'test_dir').glob('*/*.json')]
    online = mmengine.load(str(log))
    offline = rescore_tool.rescore(Config.fromfile(config), results)
    prefix = 'coco/' if layout in ('coco', 'repeat') else 'pascal_voc/'
    assert offline and all(k.startswith(prefix) for k in offline)
    np.testing.assert_equal(offline, {k: v for k, v in online.items() if k.startswith(prefix)})


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
