"""--amp / --amp-dtype: the options the tools take and the config they apply."""

import argparse

import pytest
import torch
from mmengine.config import Config

from ssd_plugin.cli.amp import apply_amp_cfg
from ssd_plugin_cli.options import add_amp_args


def test_the_options_accept_the_dtype_names_and_refuse_others(capsys):
    parser = argparse.ArgumentParser()
    add_amp_args(parser)
    args = parser.parse_args(['--amp', '--amp-dtype', 'bf16'])
    assert (args.amp, args.amp_dtype) == (True, 'bf16')
    assert parser.parse_args([]).amp is False
    with pytest.raises(SystemExit):
        parser.parse_args(['--amp-dtype', 'half'])
    assert "invalid choice: 'half'" in capsys.readouterr().err


def _train_cfg():
    return Config(dict(
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1)),
        custom_hooks=[dict(type='NonFiniteLossHook')],
    ))  # fmt: skip


@pytest.mark.parametrize('cuda_bf16', [True, False])
def test_apply_amp_cfg_on_a_simulated_gpu(monkeypatch, cuda_bf16):
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: cuda_bf16)
    cfg = _train_cfg()
    choice = apply_amp_cfg(cfg, amp=True, device='cuda')
    assert choice.dtype == (torch.bfloat16 if cuda_bf16 else torch.float16)
    expected = 'OptimWrapper' if cuda_bf16 else 'LossScaleOptimWrapper'
    assert cfg.optim_wrapper.type == expected
    assert cfg.optim_wrapper.get('loss_scale') == (None if cuda_bf16 else 'dynamic')
    assert cfg.custom_hooks[-1] == dict(type='MixedPrecisionHook', dtype='auto',
                                        channels_last=True)  # fmt: skip
    assert cfg.amp == dict(dtype='auto', channels_last=True)


def test_apply_amp_cfg_reads_the_config_key_and_checks_it():
    cfg = _train_cfg()
    assert apply_amp_cfg(cfg) is None and 'amp' not in cfg  # nothing asked: nothing changes
    cfg.amp = dict(dtype='bf16', channels_last=False)
    choice = apply_amp_cfg(cfg, device='cpu')  # the config alone turns it on
    assert choice.dtype == torch.bfloat16 and not choice.channels_last
    assert cfg.custom_hooks[-1]['dtype'] == 'bf16'
    cfg.optim_wrapper.type = 'AmpOptimWrapper'  # would autocast the loss and assert a GPU
    apply_amp_cfg(cfg, amp=True, dtype='bfloat16', device='cpu')
    assert cfg.optim_wrapper.type == 'OptimWrapper' and cfg.amp['dtype'] == 'bfloat16'
    assert sum(h['type'] == 'MixedPrecisionHook' for h in cfg.custom_hooks) == 1
    cfg.amp = dict(dtype='auto', scale=2)
    with pytest.raises(ValueError, match=r'unknown key\(s\) amp.scale'):
        apply_amp_cfg(cfg, device='cpu')
    with pytest.raises(ValueError, match='--amp-dtype needs --amp'):
        apply_amp_cfg(_train_cfg(), dtype='bf16')
