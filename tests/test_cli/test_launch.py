"""launch.add_run_hooks: every run of the plugin's tools gets the plugin's run hooks once."""

import os.path as osp

from mmengine.config import Config

from ssd_plugin.cli.launch import RUN_HOOKS, add_run_hooks

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')


def test_missing_hooks_are_added_with_defaults():
    # every run of the tools: checkpoint guard, progress lines, CPU threads (launch.py's docs)
    expected = ['CheckpointGuardHook', 'TrainProgressHook', 'EvalProgressHook', 'CpuThreadsHook']
    cfg = Config(dict(custom_hooks=[dict(type='NumClassCheckHook')]))
    add_run_hooks(cfg)
    assert cfg.custom_hooks == [dict(type='NumClassCheckHook')] + [dict(type=t) for t in expected]
    cfg = Config(dict())
    add_run_hooks(cfg)
    assert cfg.custom_hooks == [dict(type=t) for t in expected]


def test_listed_hooks_keep_their_settings():
    cfg = Config.fromfile(osp.join(CONFIGS, 'ssd_demo_shapes.py'))
    add_run_hooks(cfg)
    types = [h['type'] for h in cfg.custom_hooks]
    assert all(types.count(name) == 1 for name in RUN_HOOKS)
    (progress,) = [h for h in cfg.custom_hooks if h['type'] == 'EvalProgressHook']
    assert progress['interval_s'] == 10
