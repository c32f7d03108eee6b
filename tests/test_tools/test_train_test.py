"""tools/train.py, tools/test.py and tools/analysis/rescore_results.py, run as a user runs them.

The tools run in this process through their ``main(argv)`` (the command line minus the
interpreter start-up); tiny generated datasets stand in for COCO and VOC.
"""

import glob
import json
import os
import os.path as osp
import sys

import mmengine
import numpy as np
import pytest
import torch
from data_factory import CAT_IDS, SPLITS
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tool_runner import CONFIGS, TOOLS, load_tool, run, tiny_config

from ssd_plugin.datasets.demo_shapes import make_demo_dataset

train_tool = load_tool('train.py')
test_tool = load_tool('test.py')
rescore_tool = load_tool('analysis/rescore_results.py')

SSDLITE = osp.join(CONFIGS, 'ssdlite_mobilenetv2_8xb24-600e_coco.py')


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    # two cores shared by the test workers: more threads per process only oversubscribe them
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _init_checkpoint(config: str, path: str) -> str:
    """Save a freshly initialised model of ``config`` as an mmengine checkpoint."""
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(config).model)
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


def _test_metrics(work_dir: str) -> dict:
    """The metrics ``tools/test.py`` logged to ``<work_dir>/<timestamp>/<timestamp>.json``."""
    (path,) = glob.glob(osp.join(work_dir, '*', '*.json'))
    return mmengine.load(path)


def test_command_line_to_config(tmp_path):
    def cfg(*argv):
        return train_tool.build_cfg(train_tool.parse_args([SSDLITE, *argv]))

    plain = cfg()
    assert plain.work_dir == './work_dirs/ssdlite_mobilenetv2_8xb24-600e_coco'
    assert plain.launcher == 'none' and not plain.get('resume')
    assert all(h['type'] != 'AllReduceLossHook' for h in plain.custom_hooks)
    # the lr follows the global batch unless turned off; the randomness as the config says
    assert plain.auto_scale_lr == dict(enable=True, base_batch_size=192)
    assert plain.randomness == Config.fromfile(SSDLITE).get('randomness', {})
    assert 'sync_bn' not in plain
    assert cfg('--no-auto-scale-lr').auto_scale_lr == dict(enable=False, base_batch_size=192)
    chosen = cfg('--seed', '7', '--deterministic', '--sync-bn')
    assert chosen.randomness == dict(seed=7, deterministic=True) and chosen.sync_bn == 'torch'
    assert cfg('--sync-bn', 'mmcv').sync_bn == 'mmcv'

    amp = cfg('--amp', '--auto-scale-lr', '--work-dir', str(tmp_path))
    # --amp: MixedPrecisionHook (ssd_plugin.engine.amp); a loss scaler only for float16 on GPUs
    assert amp.custom_hooks[-1]['type'] == 'MixedPrecisionHook' and amp.amp.dtype == 'auto'
    scaled = torch.cuda.is_available() and not torch.cuda.is_bf16_supported()
    assert amp.optim_wrapper.type == ('LossScaleOptimWrapper' if scaled else 'OptimWrapper')
    assert amp.optim_wrapper.optimizer.lr == 0.015  # the runner scales it, not the tool
    assert amp.auto_scale_lr.enable and amp.work_dir == str(tmp_path)

    auto = cfg('--resume')
    assert auto.resume is True and auto.load_from is None
    explicit = cfg('--resume', 'epoch_3.pth', '--cfg-options', 'train_dataloader.batch_size=4')
    assert explicit.resume is True and explicit.load_from == 'epoch_3.pth'
    assert explicit.train_dataloader.batch_size == 4

    # a config without custom_hooks (Config.setdefault would hand back a copy to append to)
    for text in ("model = dict(type='SSD')\n", 'custom_hooks = None\n'):
        bare = tmp_path / 'bare.py'
        bare.write_text(text)
        bare = train_tool.build_cfg(train_tool.parse_args([str(bare), '--launcher', 'pytorch']))
        assert [h['type'] for h in bare.custom_hooks] == ['AllReduceLossHook']

    dist = cfg('--launcher', 'pytorch', '--local-rank', '1')
    assert dist.launcher == 'pytorch'
    assert [h['type'] for h in dist.custom_hooks].count('AllReduceLossHook') == 1
    listed = tmp_path / 'listed.py'
    listed.write_text(f'_base_ = {SSDLITE!r}\ncustom_hooks = [dict(type="AllReduceLossHook")]\n')
    listed = train_tool.build_cfg(train_tool.parse_args([str(listed), '--launcher', 'slurm']))
    assert [h['type'] for h in listed.custom_hooks] == ['AllReduceLossHook']

    no_base = tmp_path / 'no_base.py'
    no_base.write_text(f'_base_ = {SSDLITE!r}\nauto_scale_lr = dict(_delete_=True, enable=False)\n')
    with pytest.raises(ValueError, match='auto_scale_lr.base_batch_size'):
        train_tool.build_cfg(train_tool.parse_args([str(no_base), '--auto-scale-lr']))
    unnamed = train_tool.build_cfg(train_tool.parse_args([str(no_base)]))
    assert unnamed.auto_scale_lr == dict(enable=False)  # no base to scale from: as written

    test_cfg = test_tool.build_cfg(test_tool.parse_args([SSDLITE, 'x.pth', '--show-dir', 'vis']))
    assert test_cfg.load_from == 'x.pth'
    assert test_cfg.default_hooks.visualization.draw is True
    assert test_cfg.default_hooks.visualization.test_out_dir == 'vis'
    with pytest.raises(SystemExit):
        test_tool.parse_args([SSDLITE, 'x.pth', '--out', 'results.json'])


@pytest.mark.skipif(torch.cuda.is_available(), reason='SyncBN runs where there is a GPU')
def test_sync_bn_on_cpus_stops_before_the_run(tmp_path):
    """A distributed CPU run with --sync-bn stops with the reason before any process waits."""
    with pytest.raises(ValueError, match='needs GPUs: SyncBatchNorm cannot run on the CPU'):
        train_tool.main([SSDLITE, '--launcher', 'pytorch', '--sync-bn',
                         '--work-dir', str(tmp_path)])  # fmt: skip
    assert not torch.distributed.is_initialized()


def test_train_resume_test_and_rescore(tmp_path, capsys):
    config = tiny_config(SSDLITE, str(tmp_path))
    work_dir = str(tmp_path / 'work_dir')
    train_tool.main([config, '--work-dir', work_dir])  # 2 iterations, then validation
    assert torch.load(osp.join(work_dir, 'epoch_1.pth'), weights_only=False)['meta']['iter'] == 2

    # --resume: the latest checkpoint of the work dir; --resume PATH: that checkpoint
    longer = ['--cfg-options', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=5']
    train_tool.main([config, '--work-dir', work_dir, '--resume', *longer])
    other_dir = str(tmp_path / 'other_dir')
    epoch_1 = osp.join(work_dir, 'epoch_1.pth')
    train_tool.main([config, '--work-dir', other_dir, '--resume', epoch_1, *longer])
    resumed = [torch.load(osp.join(d, 'epoch_2.pth'), weights_only=False)
               for d in (work_dir, other_dir)]  # fmt: skip
    for ckpt in resumed:
        assert (ckpt['meta']['epoch'], ckpt['meta']['iter']) == (2, 4)
    start = torch.load(epoch_1, weights_only=False)['state_dict']
    for key, value in resumed[0]['state_dict'].items():
        # both continue epoch 1's run identically (seeded): same weights after epoch 2
        torch.testing.assert_close(value, resumed[1]['state_dict'][key], rtol=0, atol=0)
    assert any(not torch.equal(v, start[k]) for k, v in resumed[0]['state_dict'].items())

    # test: metrics, dumped raw results, drawn predictions
    test_dir, results = str(tmp_path / 'test_dir'), str(tmp_path / 'results.pkl')
    checkpoint = osp.join(work_dir, 'epoch_2.pth')
    test_tool.main([config, checkpoint, '--work-dir', test_dir, '--out', results,
                    '--show-dir', 'vis'])  # fmt: skip
    online = _test_metrics(test_dir)
    assert 'coco/red_precision' in online  # classwise
    dumped = mmengine.load(results)
    assert sorted(d['img_id'] for d in dumped) == sorted(SPLITS['test'])
    (vis,) = glob.glob(osp.join(test_dir, '*', 'vis'))
    assert len(glob.glob(osp.join(vis, '*.jpg'))) == len(SPLITS['test'])
    assert f'--show-dir: the drawn predictions are in {vis}\n' in capsys.readouterr().out

    # offline re-scoring gives the same numbers, and honours --cfg-options
    offline = rescore_tool.rescore(Config.fromfile(config), results)
    # (classes without ground truth have a NaN AP: assert_equal counts NaN == NaN)
    np.testing.assert_equal(offline, {k: v for k, v in online.items() if k.startswith('coco/')})
    out_json = str(tmp_path / 'rescored.json')
    rescore_tool.main([config, results, '--out-json', out_json,
                       '--cfg-options', 'test_evaluator.classwise=False'])  # fmt: skip
    np.testing.assert_equal(
        mmengine.load(out_json), {k: v for k, v in offline.items() if not k.endswith('_precision')}
    )


def test_plain_resume_skips_a_truncated_newest_checkpoint(tmp_path):
    """Killed while writing epoch_2.pth: a plain --resume continues from epoch_1.pth, and the
    run ends bit-exact with one resumed from epoch_1.pth by name."""
    config = tiny_config(SSDLITE, str(tmp_path))
    work_dir, other_dir = str(tmp_path / 'work_dir'), str(tmp_path / 'other_dir')
    epochs = lambda n: ['--cfg-options', f'train_cfg.max_epochs={n}', 'train_cfg.val_interval=9']  # noqa: E731
    train_tool.main([config, '--work-dir', work_dir, *epochs(2)])
    epoch_1, epoch_2 = (osp.join(work_dir, f'epoch_{i}.pth') for i in (1, 2))
    assert open(osp.join(work_dir, 'last_checkpoint')).read() == epoch_2
    data = open(epoch_2, 'rb').read()
    open(epoch_2, 'wb').write(data[: len(data) * 2 // 3])

    train_tool.main([config, '--work-dir', other_dir, '--resume', epoch_1, *epochs(3)])
    train_tool.main([config, '--work-dir', work_dir, '--resume', *epochs(3)])
    log = open(sorted(glob.glob(osp.join(work_dir, '*', '*.log')))[-1]).read()
    assert (
        f'Resuming from {epoch_1}, the newest intact checkpoint: the checkpoint last_checkpoint '
        f'names, {epoch_2}, is truncated or corrupt'
    ) in log
    assert 'download' not in log
    resumed = [torch.load(osp.join(d, 'epoch_3.pth'), weights_only=False)
               for d in (work_dir, other_dir)]  # fmt: skip
    assert [c['meta']['iter'] for c in resumed] == [6, 6]
    for key, value in resumed[0]['state_dict'].items():
        torch.testing.assert_close(value, resumed[1]['state_dict'][key], rtol=0, atol=0)
    # the run rewrote epoch_2.pth, intact now, from the same weights as the other run's
    torch.testing.assert_close(
        torch.load(epoch_2, weights_only=False)['state_dict'],
        torch.load(osp.join(other_dir, 'epoch_2.pth'), weights_only=False)['state_dict'],
        rtol=0, atol=0,
    )  # fmt: skip


def test_data_root_moves_the_data_of_every_tool(tmp_path):
    """--data-root: train, test, rescore and draw read a dataset moved after the config."""
    config = tiny_config(SSDLITE, str(tmp_path), data_root=str(tmp_path / 'coco') + '/')
    moved = str(tmp_path / 'moved')
    os.rename(tmp_path / 'coco', moved)  # the config's paths no longer exist
    work_dir, test_dir = str(tmp_path / 'work_dir'), str(tmp_path / 'test_dir')
    train_tool.main([config, '--work-dir', work_dir, '--data-root', moved])
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    results = str(tmp_path / 'results.pkl')
    test_tool.main([config, checkpoint, '--work-dir', test_dir, '--out', results,
                    '--data-root', moved])  # fmt: skip
    online = {k: v for k, v in _test_metrics(test_dir).items() if k.startswith('coco/')}
    assert sorted(d['img_id'] for d in mmengine.load(results)) == sorted(SPLITS['test'])

    out_json = str(tmp_path / 'rescored.json')
    rescore_tool.main([config, results, '--out-json', out_json, '--data-root', moved])
    np.testing.assert_equal(mmengine.load(out_json), online)
    with pytest.raises(FileNotFoundError):  # without it, the evaluator's file is missing
        rescore_tool.main([config, results])

    draw_dir = tmp_path / 'drawn'
    load_tool('analysis/draw_predictions.py').main(
        [config, checkpoint, '--out-dir', str(draw_dir), '--num', '2', '--data-root', moved]
    )
    assert len(list(draw_dir.glob('*.png'))) == 2


def test_train_output_has_no_noise(tmp_path):
    """tools/train.py prints none of the warnings a user can do nothing about."""
    data = str(tmp_path / 'data')
    make_demo_dataset(data, num_train=4, num_val=2, image_size=64)
    loaders = [
        f'{split}_dataloader.{key}'
        for split in ('train', 'val')
        for key in ('batch_size=2', 'num_workers=0', 'persistent_workers=False')
    ]
    output = run(
        [
            sys.executable,
            osp.join(TOOLS, 'train.py'),
            osp.join(CONFIGS, 'ssd_demo_shapes.py'),
            '--data-root',
            data,
            '--work-dir',
            str(tmp_path / 'work_dir'),
            '--cfg-options',
            *loaders,
            'train_cfg.max_iters=1',
            'train_cfg.val_interval=1',
        ],
        cwd=str(tmp_path),
    )
    gpus = torch.cuda.is_available()
    assert 'Iter(val) [1/1]' in output  # it ran
    assert ('GPU number: 1' if gpus else 'processes: 1') in output  # the environment summary
    for noise in ('pkg_resources', '_bootstrap._exec', '"FileClient" will be deprecated',
                  '"HardDiskBackend" is the alias', 'Failed to search registry',
                  *(() if gpus else ('GPU number',))):  # fmt: skip
        assert noise not in output
    # the config and the hooks table stay off the console; the log file keeps the config
    assert 'train_cfg = dict(' not in output and 'Hooks will be executed' not in output
    (log,) = glob.glob(str(tmp_path / 'work_dir' / '*' / '*.log'))
    assert (
        f'Config: {tmp_path / "work_dir" / "ssd_demo_shapes.py"} (also at the head of the '
        f'log file {log})' in output
    )
    assert 'train_cfg = dict(' in open(log).read()


def test_test_amp_runs_the_network_in_the_logged_precision(tmp_path):
    """tools/test.py --amp: the choice is logged once, the network's convolutions compute in
    it (bf16 where the CPU has it natively, float32 elsewhere), and the run is scored."""
    from demo_checkpoint import DEMO_CONFIG, demo_checkpoint
    from torch.nn.modules.module import register_module_forward_hook

    data = str(tmp_path / 'data')
    make_demo_dataset(data, num_train=1, num_val=2, image_size=64)
    checkpoint = demo_checkpoint(str(tmp_path / 'demo.pth'))
    dtypes = set()

    def record(module, args, output):
        if isinstance(module, torch.nn.Conv2d):
            dtypes.add(output.dtype)

    handle = register_module_forward_hook(record)
    try:
        loader = ['test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
        test_tool.main([DEMO_CONFIG, checkpoint, '--amp', '--data-root', data, '--work-dir',
                        str(tmp_path / 'test_dir'), '--cfg-options', *loader])  # fmt: skip
    finally:
        handle.remove()
    (log,) = glob.glob(str(tmp_path / 'test_dir' / '*' / '*.log'))
    text = open(log).read()
    assert text.count('Mixed precision on cpu: ') == 1
    bf16 = 'bfloat16 autocast + channels_last' in text
    assert dtypes == {torch.bfloat16 if bf16 else torch.float32}
    assert 'coco/bbox_mAP' in _test_metrics(str(tmp_path / 'test_dir'))


def test_rescore_rejects_empty_results(tmp_path):
    empty = str(tmp_path / 'empty.pkl')
    mmengine.dump([], empty)
    with pytest.raises(ValueError, match='holds no results'):
        rescore_tool.rescore(Config.fromfile(SSDLITE), empty)


def test_voc_dump_keeps_ground_truth_for_rescoring(tmp_path):
    """VOCMetric reads the ground truth from the samples: the dump must keep it."""
    config = tiny_config(osp.join(CONFIGS, 'ssd300_vgg16_8xb8-240e_voc0712.py'), str(tmp_path))
    checkpoint = _init_checkpoint(config, str(tmp_path / 'init.pth'))
    results, test_dir = str(tmp_path / 'results.pkl'), str(tmp_path / 'test_dir')
    test_tool.main([config, checkpoint, '--work-dir', test_dir, '--out', results])
    online = _test_metrics(test_dir)
    cfg = Config.fromfile(config)
    assert rescore_tool.rescore(cfg, results) == {
        k: v for k, v in online.items() if k.startswith('pascal_voc/')
    }

    # predicting exactly the ground truth (difficult boxes included: they are ignored) is
    # a perfect score: the dumped ground truth is in the frame of the predictions
    samples = mmengine.load(results)
    for sample in samples:
        gt, ignored = sample['gt_instances'], sample['ignored_instances']
        sample['pred_instances'] = dict(
            bboxes=torch.cat([gt['bboxes'], ignored['bboxes']]),
            labels=torch.cat([gt['labels'], ignored['labels']]),
            scores=torch.ones(len(gt['labels']) + len(ignored['labels'])),
        )
    assert sum(len(s['ignored_instances']['labels']) for s in samples) > 0
    oracle = str(tmp_path / 'oracle.pkl')
    mmengine.dump(samples, oracle)
    assert rescore_tool.rescore(cfg, oracle)['pascal_voc/mAP'] == 1.0


def test_coco_test_dev_submission(tmp_path):
    """format_only writes COCO results json whose ids map back to the dataset's own ids."""
    config = tiny_config(
        osp.join(CONFIGS, 'ssd300_vgg16_8xb8-120e_coco_test-dev.py'), str(tmp_path),
        test_evaluator=dict(outfile_prefix=str(tmp_path / 'submission' / 'detections')),
    )  # fmt: skip
    cfg = Config.fromfile(config)
    assert cfg.test_evaluator.format_only
    checkpoint = _init_checkpoint(config, str(tmp_path / 'init.pth'))
    results = str(tmp_path / 'results.pkl')
    test_tool.main([config, checkpoint, '--work-dir', str(tmp_path / 'test_dir'),
                    '--out', results])  # fmt: skip
    submission = json.load(open(tmp_path / 'submission' / 'detections.bbox.json'))
    gt_api = COCO(cfg.test_evaluator.ann_file)
    gt_api.loadRes(submission)  # pycocotools accepts the file
    assert {d['image_id'] for d in submission} == set(SPLITS['test'])
    assert {d['category_id'] for d in submission} <= set(CAT_IDS)

    # every prediction appears with its image's id, its class's category id and an xywh box
    expected = sorted(
        (s['img_id'], CAT_IDS[int(label)], *np.round([x1, y1, x2 - x1, y2 - y1], 2),
         round(float(score), 4))
        for s in mmengine.load(results)
        for (x1, y1, x2, y2), label, score in zip(
            s['pred_instances']['bboxes'].tolist(), s['pred_instances']['labels'],
            s['pred_instances']['scores'])
    )  # fmt: skip
    written = sorted(
        (d['image_id'], d['category_id'], *np.round(d['bbox'], 2), round(d['score'], 4))
        for d in submission
    )
    assert written == expected

    # the evaluation server's 12 numbers (pycocotools defaults: maxDets 1, 10, 100) equal the
    # configs' CocoMetric with proposal_nums=(1, 10, 100). The untrained model finds nothing, so
    # add the ground truth, shifted by up to 3 px, to its (up to 200 per image) predictions.
    samples = mmengine.load(results)
    rng = np.random.default_rng(0)
    for sample in samples:
        gt, pred = sample['gt_instances'], sample['pred_instances']
        shift = torch.from_numpy(rng.uniform(-3, 3, gt['bboxes'].shape)).float()
        pred['bboxes'] = torch.cat([gt['bboxes'] + shift, pred['bboxes']])
        pred['labels'] = torch.cat([gt['labels'], pred['labels']])
        pred['scores'] = torch.cat([torch.full(gt['labels'].shape, 0.9), pred['scores']])
    mixed = str(tmp_path / 'mixed.pkl')
    mmengine.dump(samples, mixed)
    cfg.test_evaluator.outfile_prefix = str(tmp_path / 'mixed')
    assert rescore_tool.rescore(cfg, mixed) == {}  # format_only: writes mixed.bbox.json
    coco_eval = COCOeval(gt_api, gt_api.loadRes(str(tmp_path / 'mixed.bbox.json')), 'bbox')
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    cfg.test_evaluator.update(format_only=False, proposal_nums=(1, 10, 100))
    metrics = rescore_tool.rescore(cfg, mixed)
    names = ['mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l']
    assert [metrics[f'coco/bbox_{n}'] for n in names] == [round(s, 3) for s in coco_eval.stats[:6]]
    assert coco_eval.stats[1] > 0.5


@pytest.fixture
def deterministic_algorithms_restored():
    yield
    torch.use_deterministic_algorithms(False)  # mmengine turns it on for the whole process


@pytest.mark.usefixtures('deterministic_algorithms_restored')
def test_seed_and_deterministic_give_identical_checkpoints(tmp_path):
    """--seed S --deterministic twice: the same weights and optimiser state, bit for bit, with
    the demo's random flips, colour distortion and shuffling; the seed is in log and meta."""
    config = tiny_config(osp.join(CONFIGS, 'ssd_demo_shapes.py'), str(tmp_path),
                         train_cfg=dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2),
                         val_dataloader=None, val_cfg=None, val_evaluator=None)  # fmt: skip

    def train(name: str, seed: int) -> dict:
        work_dir = str(tmp_path / name)
        train_tool.main([config, '--work-dir', work_dir, '--seed', str(seed), '--deterministic'])
        (log,) = glob.glob(osp.join(work_dir, '*', '*.log'))
        # tiny_config's loaders: 2 images; the demo's lr is tuned for 8
        assert f'1 process x 2 images = 2 (base 8): lr x 0.25 -> lr 0.0005; seed {seed}' in (
            open(log).read()
        )
        return torch.load(osp.join(work_dir, 'iter_2.pth'), weights_only=False)

    first, second, other = train('first', 3), train('second', 3), train('other', 4)
    for part in ('state_dict', 'optimizer', 'param_schedulers'):
        assert _same_bits(first[part], second[part]), part
    assert not _same_bits(first['state_dict'], other['state_dict'])  # the seed decides
    assert first['meta']['seed'] == 3
    assert first['meta']['global_batch'] == dict(
        world_size=1, batch_per_process=2, total_batch=2, base_batch_size=8, lr_scaled=True,
        lr_factor=0.25, seed=3, deterministic=True)  # fmt: skip


def _same_bits(a, b) -> bool:
    """Whether two nested containers hold the same values, tensors compared bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_bits(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_bits(x, y) for x, y in zip(a, b))
    return a == b
