"""The global batch of a training run and the learning rate that follows it.

A recipe's learning rate is tuned for one total batch, ``auto_scale_lr.base_batch_size`` (an
``8xb8`` recipe: 8 processes x 8 images = 64). A run on another number of processes, or with
another per-process batch, trains with ``total / base`` times that learning rate (the linear
scaling rule, Goyal et al. 2017: mmengine's ``Runner.scale_lr``) unless the user turns scaling
off. mmengine makes scaling opt-in and silent; here it is on wherever the config names its base
batch, and every run states its global batch in one log line (:func:`describe`), with a warning
when the learning rate does not follow it (:func:`lr_warning`). The same figures go into the
checkpoints' meta (:meth:`GlobalBatch.meta`); a run resumed with another global batch than its
checkpoint's is warned that the learning rate comes from the checkpoint (:func:`resume_warning`).
"""

from typing import Dict, NamedTuple, Optional, Sequence

__all__ = ['GlobalBatch', 'auto_scale_lr_cfg', 'describe', 'lr_warning', 'resume_warning']


class GlobalBatch(NamedTuple):
    """A run's batch: ``processes x per_process`` images per optimiser step."""

    processes: int
    per_process: int
    base: Optional[int]  # auto_scale_lr.base_batch_size, None where the config has none
    scaled: bool  # whether the runner scales the learning rate by total / base

    @property
    def total(self) -> int:
        return self.processes * self.per_process

    @property
    def factor(self) -> float:
        """The factor the learning rate is multiplied by (1 when not scaled)."""
        return self.total / self.base if self.scaled else 1.0

    def meta(self, seed: Optional[int], deterministic: bool) -> Dict:
        """What a checkpoint's ``meta['global_batch']`` records of the run."""
        return dict(world_size=self.processes, batch_per_process=self.per_process,
                    total_batch=self.total, base_batch_size=self.base, lr_scaled=self.scaled,
                    lr_factor=self.factor, seed=seed, deterministic=deterministic)  # fmt: skip


def auto_scale_lr_cfg(auto_scale_lr: Optional[Dict], switch: Optional[bool], config: str) -> Dict:
    """``auto_scale_lr`` as a run uses it: scaling on by default wherever a base batch is named.

    Args:
        auto_scale_lr (dict, optional): The config's ``auto_scale_lr``.
        switch (bool, optional): ``--auto-scale-lr`` (True), ``--no-auto-scale-lr`` (False) or
            neither (None: the config's ``enable``, True where it names no ``enable``).
        config (str): The config file, named in the error.

    Returns:
        dict: ``auto_scale_lr`` with ``enable`` set.

    Raises:
        ValueError: Scaling asked for, but the config names no ``base_batch_size``.
    """
    cfg = dict(auto_scale_lr or {})
    has_base = cfg.get('base_batch_size') is not None
    enable = cfg.get('enable', has_base) if switch is None else switch
    if enable and not has_base:
        raise ValueError(
            f'scaling the learning rate needs auto_scale_lr.base_batch_size (the total batch the '
            f'lr was tuned for) in {config}: add it, or pass --no-auto-scale-lr'
        )
    cfg['enable'] = bool(enable)
    return cfg


def describe(batch: GlobalBatch, lrs: Sequence[float], seed: Optional[int]) -> str:
    """The run's log line: processes x per-process batch = total, base, factor, resulting lr."""
    word = 'process' if batch.processes == 1 else 'processes'
    base = 'no auto_scale_lr.base_batch_size' if batch.base is None else f'base {batch.base}'
    how = f'lr x {batch.factor:g}' if batch.scaled else 'lr not scaled'
    lr = ', '.join(f'{v:g}' for v in dict.fromkeys(lrs))  # distinct values, in group order
    return (
        f'global batch: {batch.processes} {word} x {batch.per_process} images = {batch.total} '
        f'({base}): {how} -> lr {lr}; seed {seed}'
    )


def lr_warning(batch: GlobalBatch) -> Optional[str]:
    """A warning when the learning rate does not follow the global batch, else None."""
    if batch.scaled or batch.base == batch.total:
        return None
    if batch.base is None:
        return (
            f'the config names no auto_scale_lr.base_batch_size, so the learning rate cannot '
            f'follow the global batch of {batch.total} images: it is used as written'
        )
    return (
        f'the learning rate is not scaled to the global batch: {batch.total} images per step, '
        f'but the config tuned it for {batch.base} (auto_scale_lr.enable=False or '
        f'--no-auto-scale-lr); scaling would multiply it by {batch.total / batch.base:g}'
    )


def resume_warning(recorded: Optional[Dict], batch: GlobalBatch, checkpoint: str) -> Optional[str]:
    """A warning when a run resumes a checkpoint trained with another global batch, else None.

    mmengine's resume restores the optimiser's state, its learning rate included, and the
    schedule from the checkpoint: the lr stays the one scaled for the checkpoint's batch, not
    the one :func:`describe` states for this run.

    Args:
        recorded (dict, optional): The checkpoint's ``meta['global_batch']`` (None where it was
            written without one, e.g. by mmdet's runner: nothing to compare).
        batch (GlobalBatch): This run's global batch.
        checkpoint (str): The checkpoint resumed, named in the warning.
    """
    if not recorded or recorded.get('total_batch') in (None, batch.total):
        return None
    return (
        f'{checkpoint} was trained with a global batch of {recorded["total_batch"]} images '
        f'({recorded["world_size"]} x {recorded["batch_per_process"]}, lr x '
        f'{recorded["lr_factor"]:g}); this run has {batch.total} ({batch.processes} x '
        f"{batch.per_process}): the resumed optimiser keeps the checkpoint's learning rate and "
        f'schedule, not the lr stated above. Resume with the global batch the run started with'
    )
