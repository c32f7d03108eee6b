"""tools/benchmarks: the GPU report runs end to end on the CPU, and the measuring parts are right.

No test times anything: the report runs at its tiny ``--quick`` settings and the tests check its
tables, checks and verdicts, never a timing value.
"""

import argparse
import os.path as osp
import sys

import pytest
import torch
from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
from tool_runner import TOOLS, run
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.ssd import SSDScoringHead
from torchvision.ops import box_iou

BENCH = osp.join(TOOLS, 'benchmarks')
sys.path.insert(0, BENCH)  # the scripts import their shared modules by name, as when run

import bench_common  # noqa: E402
import synthetic  # noqa: E402

SIZES = [(4, 4), (2, 2), (1, 1)]
KS = [4, 6, 4]
NUM_PRIORS = sum(h * w * k for (h, w), k in zip(SIZES, KS))


@pytest.fixture(scope='module')
def report():
    out = run(['bash', osp.join(BENCH, 'gpu_report.sh'), '--device', 'cpu', '--quick'],
              cwd=osp.dirname(TOOLS), env=dict(PYTHON=sys.executable), timeout=300)  # fmt: skip
    return out


def table(output: str, title: str):
    """The rows (lists of cells) of the markdown table printed under ``title``."""
    start = output.index(title)
    rows = []
    for line in output[start:].splitlines()[2:]:
        if not line.startswith('|'):
            if rows:
                break
            continue
        rows.append([cell.strip() for cell in line.strip('|').split('|')])
    return rows[0], rows[2:]  # header, body (the separator dropped)


def test_report_has_every_table_and_passes(report):
    assert 'SECTION FAILED' not in report and 'report: all sections ran' in report
    # each section states how to rerun it alone, and the load it ran under
    for script in ('bench_head', 'bench_inference', 'bench_train', 'check_device_parity'):
        assert f'command: python tools/benchmarks/{script}.py --device cpu --quick\n' in report
    assert report.count('load average before the run') == 4
    assert 'versions: python' in report and 'torch threads: ' in report
    assert 'head.loss_cls set to an empty object' in report

    header, rows = table(report, 'Loss forward + backward')
    assert header[2:5] == ['ours', 'mmdet', 'torchvision'] and [r[0] for r in rows] == ['1']
    header, rows = table(report, 'Post-processing at the paper settings')
    assert [r[1] for r in rows] == list(synthetic.REGIMES) and header[4] == 'torchvision'
    # untrained: every (default box, class) score of the 8732 x 80 passes 0.01
    assert rows[1][2] == str(8732 * 80)
    # ours and torchvision's postprocess_detections give the same detections (batch 1)
    assert all(r[-1].startswith('agree: counts 1/1, labels 1/1') for r in rows), rows
    header, rows = table(report, "Post-processing at mmdet's test_cfg")
    assert [r[1] for r in rows] == list(synthetic.REGIMES) and header[4] == 'mmdet'
    assert rows[1][2] == '0'  # untrained: no score reaches 0.02

    header, rows = table(report, 'Inference (ms per batch')
    names = [r[2] for r in rows]
    assert names[0] == 'ours ssdlite_mobilenetv2_8xb24-600e_coco'
    assert 'mmdet ssdlite_mobilenetv2-scratch_8xb24-600e_coco' in names
    assert 'torchvision ssdlite320_mobilenet_v3_large' in names
    assert 'onnxruntime ours ssdlite_mobilenetv2_8xb24-600e_coco' in names
    for runtime in ('onnxruntime int8', 'openvino', 'openvino int8'):  # CPU only
        assert f'{runtime} ours ssdlite_mobilenetv2_8xb24-600e_coco' in names
    assert all(r[-1] != '-' for r in rows)  # every full-pipeline ratio was computed

    header, rows = table(report, 'Training step, ssdlite, batch 2')
    assert [r[0] for r in rows][0] == 'fp32' and rows[1][0].startswith('amp (')  # --amp path
    assert not any('error' in c for row in rows for c in row)

    header, rows = table(report, 'Device parity')
    assert len(rows) >= 8 and all(r[3] == 'PASS' for r in rows)
    detail = {r[0]: r[-1] for r in rows}
    for cfg in ('paper', "mmdet's"):  # the prefix path and the per-class fallback, both reached
        for regime in ('trained', 'crowded'):
            assert 'prefix path' in detail[f'predict_by_feat, {cfg} test_cfg, {regime}']
        assert (
            'per-class top-k for 2 image(s)' in detail[f'predict_by_feat, {cfg} test_cfg, fallback']
        )
    # the worst cases reach NMS with B x C x nms_pre candidates, cut into packed calls
    assert '32000 candidates in ' in detail['large N: ssd300 worst case, batch 1']
    assert '32000 candidates in ' in detail['large N: ssdlite worst case, batch 1']
    assert 'kept: cpu 2, cpu 2' in detail['float32-threshold sliver (IoU 0.45 at 0.45)']
    names = ' | '.join(detail)
    for name in (
        'bfloat16 autocast forward + loss',
        'float16 autocast forward + loss',
        'channels_last',
        'BatchNorm train mode): BatchNorm running stats',
    ):
        assert name in names
    assert 'PARITY PASS' in report


def test_interleaved_best_alternates_and_keeps_the_best_call():
    calls = []
    ticks = iter(range(1000))
    durations = {'a': [5, 3, 4], 'b': [1, 2, 9]}  # per timed round

    def clock():
        return next(ticks)

    def make(name):
        def fn():
            calls.append(name)
            round_ = len([c for c in calls if c == name]) - 2  # after 1 warm-up round
            for _ in range(durations[name][round_] - 1 if round_ >= 0 else 0):
                next(ticks)  # the call "takes" that many clock ticks
            return name + str(round_)

        return fn

    best, results = bench_common.interleaved_best({'a': make('a'), 'b': make('b')}, repeats=3,
                                                  warmup=1, clock=clock)  # fmt: skip
    assert calls == ['a', 'b'] * 4
    assert best == {'a': 3000.0, 'b': 1000.0}  # ticks are seconds: best in ms
    assert results == {'a': 'a2', 'b': 'b2'}
    with pytest.raises(ValueError, match='repeats'):
        bench_common.interleaved_best({'a': make('a')}, repeats=0)


def test_load_warning_above_half():
    assert bench_common.load_warning(0.5) is None
    assert 'WARNING' in bench_common.load_warning(0.51)
    assert bench_common.ratio(30.0, 10.0) == '3.00x' and bench_common.ratio(None, 1.0) == '-'


def test_quick_replaces_defaults_not_given_options():
    def parse(argv):
        parser = argparse.ArgumentParser()
        parser.add_argument('--batches', type=int, nargs='+', default=[1, 32])
        parser.add_argument('--repeats', type=int, default=3)
        parser.add_argument('--quick', action='store_true')
        return bench_common.parse_with_quick(parser, argv, batches=[1], repeats=1)

    assert (parse([]).batches, parse([]).repeats) == ([1, 32], 3)
    assert (parse(['--quick']).batches, parse(['--quick']).repeats) == ([1], 1)
    args = parse(['--quick', '--batches', '2', '4'])
    assert (args.batches, args.repeats) == ([2, 4], 1)


def test_compare_detections_tolerates_tie_order_and_catches_differences():
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20], [30, 30, 40, 40]])
    scores = torch.tensor([0.9, 0.5, 0.5])
    labels = torch.tensor([1, 2, 3])
    ref = [(boxes, scores, labels)]

    def agree(other):
        diff = bench_common.compare_detections(ref, other, 1e-5)
        return bench_common.detections_agree(diff, 1e-5, 1e-3), diff

    assert agree([(boxes[[0, 2, 1]], scores[[0, 2, 1]], labels[[0, 2, 1]])])[0]  # tie swapped
    assert agree([(boxes + 1e-4, scores + 1e-6, labels)])[0]
    ok, diff = agree([(boxes, scores, torch.tensor([1, 2, 2]))])
    assert not ok and diff['same_labels'] == 0
    ok, diff = agree([(boxes, scores + torch.tensor([0, 0, 1e-3]), labels)])
    assert not ok and diff['max_score_diff'] == pytest.approx(1e-3, rel=1e-4)
    ok, diff = agree([(boxes + torch.tensor([0, 0, 0, 0.01]), scores, labels)])
    assert not ok and diff['max_box_diff'] == pytest.approx(0.01, rel=1e-4)
    ok, diff = agree([(boxes[:2], scores[:2], labels[:2])])
    assert not ok and diff['same_count'] == 0


def test_levels_round_trip_through_torchvisions_flattening():
    """Per-level maps from ``to_levels``, background moved first, flatten (torchvision's own
    ``SSDScoringHead``) back to the flat values with background at index 0."""
    flat = torch.randn(2, NUM_PRIORS, 6)
    levels = [synthetic.background_first(x, 6) for x in synthetic.to_levels(flat, SIZES, KS)]
    flatten = SSDScoringHead(torch.nn.ModuleList([torch.nn.Identity()] * 3), 6)
    expected = torch.cat([flat[..., -1:], flat[..., :-1]], -1)
    torch.testing.assert_close(flatten(levels), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match='default boxes'):
        synthetic.to_levels(flat[:, 1:], SIZES, KS)


def test_torchvisions_box_coder_decodes_as_ours():
    """The agreement check relies on torchvision's (10, 10, 5, 5) weights decoding our offsets
    to the boxes mmdet's coder (the plugin's) gives."""
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=gen) * 250
    priors = torch.cat([xy, xy + 10 + torch.rand(50, 2, generator=gen) * 40], 1)
    deltas = torch.randn(50, 4, generator=gen) * 0.5
    ours = DeltaXYWHBBoxCoder(target_means=(0.0,) * 4, target_stds=(0.1, 0.1, 0.2, 0.2))
    theirs = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    torch.testing.assert_close(theirs.decode_single(deltas, priors), ours.decode(priors, deltas),
                               rtol=0, atol=1e-4)  # fmt: skip


def test_score_regimes():
    gen = torch.Generator().manual_seed(0)
    priors = torch.tensor([[x, y, x + s, y + s] for s in (30.0, 60.0) for x in range(0, 300, 15)
                           for y in range(0, 300, 15)])  # fmt: skip
    probs = synthetic.random_logits(2, len(priors), 80, 'untrained', gen).softmax(-1)[..., :80]
    assert (probs > 0.01).all() and (probs < 0.02).all()
    trained = synthetic.random_logits(2, len(priors), 80, 'trained', gen).softmax(-1)
    assert (trained.argmax(-1) == 80).float().mean() > 0.5  # mostly background

    logits = synthetic.random_logits(1, len(priors), 80, 'trained', gen)
    deltas = torch.zeros(1, len(priors), 4)
    synthetic.add_crowd(logits, deltas, priors, 300, 100, gen)
    scores, labels = logits.softmax(-1)[0, :, :80].max(-1)
    # 100 objects x 8 default boxes (some shared): confident boxes of the crowd's classes
    crowd = deltas[0].abs().sum(-1) > 0
    assert crowd.sum() >= 300 and (labels[crowd] < synthetic.CROWD_CLASSES).all()
    assert (scores[crowd] > 0.5).float().mean() > 0.8
    # whose offsets point at objects: decoded, each box overlaps another crowd box
    coder = DeltaXYWHBBoxCoder(target_stds=(0.1, 0.1, 0.2, 0.2))
    boxes = coder.decode(priors[crowd], deltas[0, crowd])
    iou = box_iou(boxes, boxes).fill_diagonal_(0)
    assert (iou.max(1).values > 0.5).float().mean() > 0.9


def test_dist_memory_measures_both_datasets(tmp_path):
    """dist_memory.py: both datasets under one launch of 2 processes, each with a worker."""
    out = run([sys.executable, osp.join(BENCH, 'dist_memory.py'), '--synthetic-coco', '40',
               '300', '--processes', '2', '--workers', '1', '--batches', '2'],
              cwd=str(tmp_path))  # fmt: skip
    assert 'uptime: ' in out and '; ISA flags: ' in out and 'versions: python' in out
    assert '2 processes x 1 data loader workers, 2 batches of 8 each' in out
    header, rows = table(out, 'Memory (MiB)')
    assert header[1] == 'dataset' and [r[1] for r in rows] == ['CocoDataset', 'CheckedCocoDataset']
    for row in rows:
        assert row[5] == '2'  # one worker per process, both alive when measured
        assert float(row[2]) >= float(row[3]) > 0 and float(row[6]) > float(row[4]) > 0
