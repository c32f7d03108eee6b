"""--amp: the precision choice per device, the network under autocast, training and inference."""

import contextlib
import copy
import glob
import importlib.util
import json
import logging
import os.path as osp
import platform
import re
from types import SimpleNamespace

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.runner import load_checkpoint
from test_tools.demo_checkpoint import DEMO_CONFIG, demo_checkpoint
from torch import nn
from torch.nn.modules.module import register_module_forward_hook

from ssd_plugin.datasets.demo_shapes import make_demo_dataset
from ssd_plugin.engine import amp as amp_module
from ssd_plugin.engine.amp import autocast_network, choose_amp, remove_autocast_network
from ssd_plugin.engine.hooks import MixedPrecisionHook

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
NATIVE = choose_amp('cpu').dtype == torch.bfloat16  # this CPU computes bf16 natively


# --- the choice ---------------------------------------------------------------------------------


@pytest.mark.parametrize('flags', [{'avx512_bf16'}, {'amx_bf16', 'avx512_bf16'}, {'bf16'}])
def test_cpu_with_native_bf16_autocasts_in_bf16(flags):
    choice = choose_amp('cpu', cpu_flags=flags, has_mkldnn=True)
    assert (choice.dtype, choice.loss_scale, choice.channels_last) == (torch.bfloat16, False, True)
    assert all(flag in choice.reason for flag in flags)
    assert choice.describe().startswith('Mixed precision on cpu: bfloat16 autocast + channels_last')


def test_cpu_without_native_bf16_runs_float32_and_says_why():
    choice = choose_amp('cpu', cpu_flags={'avx512f', 'avx2'}, has_mkldnn=True)
    assert (choice.dtype, choice.loss_scale, choice.channels_last) == (None, False, False)
    assert not choice.enabled
    assert 'Running float32' in choice.reason and 'has no native bf16' in choice.reason
    no_onednn = choose_amp('cpu', cpu_flags={'avx512_bf16'}, has_mkldnn=False)
    assert no_onednn.dtype is None and 'no oneDNN' in no_onednn.reason


def test_a_onednn_cap_below_bf16_counts_as_a_cpu_without_it(monkeypatch):
    """``ONEDNN_MAX_CPU_ISA=AVX2`` keeps oneDNN off the bf16 instructions: --amp then acts as on
    an AVX2-only CPU (float32, saying why); a cap that includes them changes nothing."""
    monkeypatch.delenv('ONEDNN_MAX_CPU_ISA', raising=False)
    monkeypatch.delenv('DNNL_MAX_CPU_ISA', raising=False)
    uncapped = amp_module.cpu_bf16_flags()
    monkeypatch.setenv('DNNL_MAX_CPU_ISA', 'avx512_core_bf16')
    assert amp_module.cpu_bf16_flags() == uncapped
    monkeypatch.setenv('ONEDNN_MAX_CPU_ISA', 'AVX2')
    assert amp_module.onednn_isa_cap() == 'AVX2'
    assert amp_module.cpu_bf16_flags() == uncapped - {'avx512_bf16', 'amx_bf16'}
    if platform.machine() in ('x86_64', 'AMD64'):
        choice = choose_amp('cpu', has_mkldnn=True)
        assert choice.dtype is None and 'under ONEDNN_MAX_CPU_ISA=AVX2' in choice.reason


def test_cpu_bf16_asked_for_explicitly_is_honoured_with_a_warning():
    choice = choose_amp('cpu', 'bf16', cpu_flags=(), has_mkldnn=True)
    assert choice.dtype == torch.bfloat16 and 'emulated' in choice.reason
    assert choice.warning and choice.log_level == logging.WARNING
    native = choose_amp('cpu', 'bf16', cpu_flags={'avx512_bf16'}, has_mkldnn=True)
    assert not native.warning and native.log_level == logging.INFO


def test_float16_on_the_cpu_and_unknown_dtypes_are_refused():
    with pytest.raises(ValueError, match='float16 needs a GPU'):
        choose_amp('cpu', 'float16', cpu_flags={'avx512_bf16'})
    with pytest.raises(ValueError, match=r"amp dtype must be one of .* got 'half'"):
        choose_amp('cpu', 'half')


@pytest.mark.parametrize(
    'cuda_bf16, dtype, expected, scaled',
    [
        (True, 'auto', torch.bfloat16, False),
        (False, 'auto', torch.float16, True),
        (True, 'float16', torch.float16, True),
        (True, 'bfloat16', torch.bfloat16, False),
    ],
)  # fmt: skip
def test_gpu_choice_bf16_where_supported_else_float16_with_a_scaler(cuda_bf16, dtype, expected,
                                                                    scaled):  # fmt: skip
    choice = choose_amp('cuda:0', dtype, cuda_bf16=cuda_bf16)
    assert (choice.device, choice.dtype, choice.loss_scale) == ('cuda', expected, scaled)
    assert ('dynamic loss scaler' in choice.describe()) == scaled


def test_gpu_without_bf16_refuses_bfloat16():
    with pytest.raises(ValueError, match='does not support bf16'):
        choose_amp('cuda', 'bfloat16', cuda_bf16=False)


def _runner_on(param):
    """A runner stand-in whose model's parameter is ``param``; its logger records
    ``(level, message)``."""
    records = []
    logger = SimpleNamespace(log=lambda level, msg: records.append((level, msg)))
    model = SimpleNamespace(parameters=lambda: iter([param]))
    return SimpleNamespace(model=model, logger=logger), records


def test_the_hook_warns_about_emulated_bf16(monkeypatch):
    """``--amp-dtype bfloat16`` on a CPU without native bf16 (simulated): the one log line is a
    warning, as docs/train_test.md says."""
    monkeypatch.setattr(amp_module, 'cpu_bf16_flags', lambda *a: frozenset())
    runner, records = _runner_on(torch.zeros(1))
    MixedPrecisionHook(dtype='bfloat16').before_run(runner)
    assert len(records) == 1 and records[0][0] == logging.WARNING
    assert 'bfloat16 autocast' in records[0][1] and 'emulated' in records[0][1]
    MixedPrecisionHook().before_run(runner)  # auto there: float32, which is no warning
    assert records[1][0] == logging.INFO and 'Running float32' in records[1][1]


def test_the_hook_refuses_an_unknown_dtype_when_built():
    with pytest.raises(ValueError, match=r"amp dtype must be one of .* got 'half'"):
        MixedPrecisionHook(dtype='half')


@pytest.mark.parametrize('cuda_bf16, expected', [(True, 'bfloat16 autocast + channels_last. '),
                                                 (False, 'float16 autocast + channels_last + '
                                                  'dynamic loss scaler')])  # fmt: skip
def test_the_hook_logs_the_gpu_choice_once(monkeypatch, cuda_bf16, expected):
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: cuda_bf16)
    param = SimpleNamespace(device=torch.device('cuda', 0))  # a CUDA model, simulated
    runner, records = _runner_on(param)
    MixedPrecisionHook().before_run(runner)
    assert len(records) == 1 and records[0][1].startswith('Mixed precision on cuda: ')
    assert records[0][0] == logging.INFO and expected.rstrip('. ') in records[0][1]
    if not cuda_bf16:  # float16 without a scaler stops before the first step
        runner.optim_wrapper = SimpleNamespace()
        hook = MixedPrecisionHook()
        hook.choice = choose_amp('cuda', cuda_bf16=False)
        with pytest.raises(RuntimeError, match="optim_wrapper.type='LossScaleOptimWrapper'"):
            hook.before_train(runner)


# --- the network under autocast -----------------------------------------------------------------


def _demo_model(path=None):
    cfg = Config.fromfile(DEMO_CONFIG)
    model = MODELS.build(cfg.model).eval()
    if path is not None:
        load_checkpoint(model, path, map_location='cpu', logger='silent')
    return model


def test_network_runs_in_bf16_with_float32_outputs_and_master_weights():
    torch.manual_seed(0)
    model = _demo_model()
    model.init_weights()
    images = torch.randn(2, 3, 192, 192)
    with torch.no_grad():
        ref_cls, ref_reg = model.bbox_head(model.extract_feat(images))
    float32_twin = copy.deepcopy(model)  # the same weights, never autocast
    choice = choose_amp('cpu', 'bfloat16', cpu_flags={'avx512_bf16'}, has_mkldnn=True)
    assert autocast_network(model, choice) and not autocast_network(model, choice)  # once
    weights = [p for p in model.parameters() if p.dim() == 4]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    with torch.no_grad():
        feats = model.extract_feat(images)
        cls_scores, bbox_preds = model.bbox_head(feats)
    assert all(f.dtype == torch.bfloat16 for f in feats)  # the network computed in bf16 ...
    for out, ref in zip(cls_scores + bbox_preds, ref_cls + ref_reg):
        assert out.dtype == torch.float32  # ... and hands float32 to the loss / post-processing
        # bf16 keeps 8 significant bits: 2^-8 relative per rounding, a few roundings deep
        torch.testing.assert_close(out, ref, rtol=0, atol=0.05 * ref.abs().max().item())
    remove_autocast_network(model)
    # float32 again: exactly what float32 computes with the weights in the memory format they
    # keep (channels_last). Against the contiguous reference the convolutions sum in another
    # order (oneDNN picks its kernel by layout and ISA), which moves float32 results by a few
    # ulps per layer: an exact comparison with the same layout is the one that cannot pass by
    # tolerance, and any bf16 left over would miss it by ~2^-9 relative.
    float32_twin.to(memory_format=torch.channels_last)
    with torch.no_grad():
        again = model.bbox_head(model.extract_feat(images))
        twin = float32_twin.bbox_head(float32_twin.extract_feat(images))
    assert 'extract_feat' not in vars(model) and 'forward' not in vars(model.bbox_head)
    for out, ref in zip(again[0] + again[1], twin[0] + twin[1]):
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_float32_choice_leaves_the_model_alone():
    model = _demo_model()
    choice = choose_amp('cpu', cpu_flags=(), has_mkldnn=True)
    assert not autocast_network(model, choice)
    assert 'extract_feat' not in vars(model)


def _unmatched(ref, out, score_tol, box_tol):
    """Indices of ``ref`` without a detection in ``out`` of its label within the tolerances."""
    same = (
        (ref.labels[:, None] == out.labels[None])
        & ((ref.scores[:, None] - out.scores[None]).abs() <= score_tol)
        & ((ref.bboxes[:, None] - out.bboxes[None]).abs().amax(-1) <= box_tol)
    )
    return (~same.any(1)).nonzero().flatten().tolist()


def test_bf16_detections_agree_with_float32_on_the_demo_checkpoint(tmp_path):
    """Tolerance: each of the top-20 detections per image of one precision has a detection of
    the same label in the other's output with its score within 0.02 and every box coordinate
    within 2 px (192 px input).

    Matched by label, score and box, not by rank, since bf16's 8 significant bits reorder
    near-equal scores. The demo checkpoint's class logits are sharpened 3x (as training makes
    them depend on the image): as written its scores of one class tie to 1e-4 across nearby
    locations, and NMS then keeps a different one of two overlapping near-equal boxes (8 px
    apart) in bf16, a difference of ties, not of precision. A box offset error of ~1 % of a
    default box is 1-2 px at the coarsest levels.
    """
    ckpt = demo_checkpoint(str(tmp_path / 'demo.pth'))
    root = tmp_path / 'data'
    make_demo_dataset(str(root), seed=0, num_train=1, num_val=4, image_size=192)
    cfg = Config.fromfile(DEMO_CONFIG)
    pipeline = Compose(cfg.test_pipeline[:2] + [cfg.test_pipeline[3]])  # no annotations needed
    files = sorted(glob.glob(str(root / 'val' / '*')))
    batch = [pipeline(dict(img_path=f, img_id=i)) for i, f in enumerate(files)]
    data = dict(
        inputs=[b['inputs'] for b in batch], data_samples=[b['data_samples'] for b in batch]
    )

    def detect(model):
        with torch.no_grad():
            return [s.pred_instances for s in model.test_step(data)]

    def sharpened():
        model = _demo_model(ckpt)
        with torch.no_grad():
            for conv in model.bbox_head.cls_convs:
                conv.pred.weight.mul_(3.0)
        return model

    fp32 = detect(sharpened())
    model = sharpened()
    autocast_network(model, choose_amp('cpu', 'bfloat16', cpu_flags={'bf16'}, has_mkldnn=True))
    bf16 = detect(model)
    for ref, out in zip(fp32, bf16):
        assert out.bboxes.dtype == out.scores.dtype == torch.float32
        assert len(ref) >= 20 and len(out) >= 20
        assert _unmatched(ref[:20], out, 0.02, 2.0) == []
        assert _unmatched(out[:20], ref, 0.02, 2.0) == []


# --- tools/train.py --amp on the CPU ------------------------------------------------------------


def _load_train_tool():
    path = osp.join(REPO, 'tools', 'train.py')
    spec = importlib.util.spec_from_file_location('tool_train_amp', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tiny_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('amp_shapes')
    make_demo_dataset(str(root), seed=0, num_train=4, num_val=2, image_size=96)
    return str(root)


def _train_argv(data_root, work_dir, iters):
    options = [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters + 1}',
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False', f'default_hooks.checkpoint.interval={iters}',
        'default_hooks.logger.interval=1', 'param_scheduler.0.end=1',
        'train_dataloader.dataset.pipeline.3.prob=0.0',  # the same 4 images every step
    ]  # fmt: skip
    return [DEMO_CONFIG, '--amp', '--work-dir', str(work_dir), '--data-root', data_root,
            '--cfg-options', *options]  # fmt: skip


def _logged_losses(work_dir):
    (log,) = glob.glob(str(work_dir / '*' / '*.log'))
    text = open(log).read()
    return text, [float(v) for v in re.findall(r'  loss: ([-\d.e+naif]+)', text)]


@contextlib.contextmanager
def _conv_output_dtypes():
    """The dtypes of the outputs of every ``nn.Conv2d`` called inside (a global forward hook:
    what the network really computed in, whatever the log says)."""
    seen = set()

    def record(module, args, output):
        if isinstance(module, nn.Conv2d):
            seen.add(output.dtype)

    handle = register_module_forward_hook(record)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.mark.skipif(
    not NATIVE,
    reason='needs a CPU that computes bf16 natively (avx512_bf16, amx_bf16 or Arm bf16), with '
    'oneDNN uncapped: elsewhere --amp trains in float32, which '
    'test_train_amp_on_a_cpu_without_bf16_falls_back_and_says_so checks',
)
def test_train_amp_on_the_cpu_lowers_the_loss_and_saves_float32(tiny_demo, tmp_path):
    work_dir = tmp_path / 'amp'
    with _conv_output_dtypes() as dtypes:
        _load_train_tool().main(_train_argv(tiny_demo, work_dir, iters=8))
    assert dtypes == {torch.bfloat16}  # every convolution of the training steps ran in bf16
    text, losses = _logged_losses(work_dir)
    assert text.count('Mixed precision on cpu: ') == 1
    assert 'bfloat16 autocast + channels_last' in text
    assert len(losses) == 8 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) < 0.98 * sum(losses[:3]), losses  # 8 steps from scratch: ~4 %
    state = torch.load(work_dir / 'iter_8.pth', map_location='cpu', weights_only=False)
    floats = [v for v in state['state_dict'].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float32 for v in floats)
    assert all(torch.isfinite(v).all() for v in floats)


def test_train_amp_on_a_cpu_without_bf16_falls_back_and_says_so(tiny_demo, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    monkeypatch.setattr(amp_module, 'cpu_bf16_flags', lambda *a: frozenset())
    work_dir = tmp_path / 'fallback'
    _load_train_tool().main(_train_argv(tiny_demo, work_dir, iters=1))
    text, losses = _logged_losses(work_dir)
    assert 'Mixed precision on cpu: float32 + contiguous' in text
    assert 'Running float32: the CPU' in text and 'has no native bf16' in text
    assert len(losses) == 1


def test_image_demo_amp_runs_the_network_in_bf16(tmp_path, capsys):
    path = osp.join(REPO, 'tools', 'image_demo.py')
    spec = importlib.util.spec_from_file_location('tool_image_demo_amp', path)
    image_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(image_demo)
    ckpt = demo_checkpoint(str(tmp_path / 'demo.pth'))
    make_demo_dataset(str(tmp_path / 'data'), seed=0, num_train=1, num_val=1, image_size=192)
    (image,) = glob.glob(str(tmp_path / 'data' / 'val' / '*'))
    out = tmp_path / 'out'
    with _conv_output_dtypes() as dtypes:  # forced bf16: native or emulated, bf16 either way
        image_demo.main([DEMO_CONFIG, ckpt, image, '--out-dir', str(out), '--device', 'cpu',
                         '--amp', '--amp-dtype', 'bfloat16', '--score-thr', '0.5'])  # fmt: skip
    assert dtypes == {torch.bfloat16}
    printed = capsys.readouterr().out
    assert 'Mixed precision on cpu: bfloat16 autocast + channels_last' in printed
    assert ('WARNING: Mixed precision' in printed) == (not NATIVE)  # emulated: a warning
    (pred,) = glob.glob(str(out / 'preds' / '*.json'))
    assert len(json.load(open(pred))['detections']) > 0
