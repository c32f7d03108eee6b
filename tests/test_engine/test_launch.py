"""launch.add_run_hooks: every run of the plugin's tools gets the plugin's run hooks once."""

import os.path as osp

from mmengine.config import Config

from ssd_plugin.engine.launch import RUN_HOOKS, add_run_hooks

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')


def test_missing_hooks_are_added_with_defaults():
    cfg = Config(dict(custom_hooks=[dict(type='NumClassCheckHook')]))
    add_run_hooks(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == ['NumClassCheckHook', *RUN_HOOKS]
    cfg = Config(dict())
    add_run_hooks(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == list(RUN_HOOKS)


def test_listed_hooks_keep_their_settings():
    cfg = Config.fromfile(osp.join(CONFIGS, 'ssd_demo_shapes.py'))
    add_run_hooks(cfg)
    types = [h['type'] for h in cfg.custom_hooks]
    assert all(types.count(name) == 1 for name in RUN_HOOKS)
    (progress,) = [h for h in cfg.custom_hooks if h['type'] == 'EvalProgressHook']
    assert progress['interval_s'] == 10
