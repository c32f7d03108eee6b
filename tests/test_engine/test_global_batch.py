"""global_batch: when the lr follows the global batch, and the line and warning that say so."""

import pytest

from ssd_plugin.engine.global_batch import (
    GlobalBatch,
    auto_scale_lr_cfg,
    describe,
    lr_warning,
    resume_warning,
)


@pytest.mark.parametrize('cfg,switch,enabled', [
    (dict(base_batch_size=64), None, True),  # a base and no word on it: scaled
    (dict(enable=True, base_batch_size=64), None, True),
    (dict(enable=False, base_batch_size=64), None, False),  # the config turns it off
    (dict(enable=True, base_batch_size=64), False, False),  # --no-auto-scale-lr
    (dict(enable=False, base_batch_size=64), True, True),  # --auto-scale-lr
    (None, None, False),  # no base: nothing to scale from
    (dict(enable=False), False, False),
])  # fmt: skip
def test_scaling_is_on_wherever_a_base_is_named(cfg, switch, enabled):
    out = auto_scale_lr_cfg(cfg, switch, 'c.py')
    assert out['enable'] is enabled
    assert out.get('base_batch_size') == (cfg or {}).get('base_batch_size')


@pytest.mark.parametrize('cfg,switch', [
    (None, True), (dict(enable=True), None), (dict(base_batch_size=None), True),
])  # fmt: skip
def test_scaling_without_a_base_is_an_error_naming_the_config(cfg, switch):
    with pytest.raises(ValueError, match=r'auto_scale_lr.base_batch_size .* in my/config.py'):
        auto_scale_lr_cfg(cfg, switch, 'my/config.py')


def test_the_line_states_processes_batch_total_base_factor_lr_and_seed():
    batch = GlobalBatch(processes=2, per_process=16, base=64, scaled=True)
    assert (batch.total, batch.factor) == (32, 0.5)
    assert describe(batch, [0.001, 0.001, 0.002], seed=7) == (
        'global batch: 2 processes x 16 images = 32 (base 64): lr x 0.5 -> lr 0.001, 0.002; seed 7'
    )
    assert lr_warning(batch) is None
    one = GlobalBatch(processes=1, per_process=8, base=64, scaled=False)
    assert one.factor == 1.0
    assert describe(one, [0.002], seed=None) == (
        'global batch: 1 process x 8 images = 8 (base 64): lr not scaled -> lr 0.002; seed None'
    )
    assert describe(GlobalBatch(1, 8, None, False), [0.01], 0).startswith(
        'global batch: 1 process x 8 images = 8 (no auto_scale_lr.base_batch_size): lr not scaled'
    )


def test_a_warning_only_where_the_lr_does_not_follow_the_batch():
    assert lr_warning(GlobalBatch(8, 8, 64, scaled=False)) is None  # the recipe's own batch
    assert lr_warning(GlobalBatch(1, 8, 64, scaled=False)) == (
        'the learning rate is not scaled to the global batch: 8 images per step, but the config '
        'tuned it for 64 (auto_scale_lr.enable=False or --no-auto-scale-lr); scaling would '
        'multiply it by 0.125'
    )
    assert 'names no auto_scale_lr.base_batch_size' in lr_warning(GlobalBatch(2, 4, None, False))


def test_meta_records_the_run():
    assert GlobalBatch(4, 2, 16, True).meta(seed=3, deterministic=True) == dict(
        world_size=4, batch_per_process=2, total_batch=8, base_batch_size=16, lr_scaled=True,
        lr_factor=0.5, seed=3, deterministic=True)  # fmt: skip


def test_resuming_another_global_batch_warns_naming_both():
    run = GlobalBatch(processes=2, per_process=8, base=64, scaled=True)
    recorded = GlobalBatch(8, 8, 64, True).meta(seed=0, deterministic=False)
    assert resume_warning(recorded, run, 'w/epoch_3.pth') == (
        'w/epoch_3.pth was trained with a global batch of 64 images (8 x 8, lr x 1); this run has '
        "16 (2 x 8): the resumed optimiser keeps the checkpoint's learning rate and schedule, not "
        'the lr stated above. Resume with the global batch the run started with'
    )
    # the same total from another split: the same lr, nothing to say
    assert resume_warning(GlobalBatch(4, 4, 64, True).meta(0, False), run, 'c.pth') is None
    assert resume_warning(None, run, 'mmdet.pth') is None  # a checkpoint without the record
