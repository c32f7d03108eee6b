"""What ``tools/train.py`` and ``tools/test.py`` share: config loading, hooks, CPU launch.

Their launch options are built by :func:`ssd_plugin_cli.options.add_launch_args` (no torch, so
``--help`` answers at once); :func:`load_cfg` applies them.

Both add :data:`RUN_HOOKS` to any config that lacks them (:func:`add_run_hooks`), so a config
written without the plugin's hooks still gets them, under ``mim train`` / ``mim test`` too.

Distributed runs on machines without CUDA GPUs use the gloo backend. mmengine 0.10.7 cannot
start one by itself: its ``init_dist`` calls ``torch.cuda.set_device`` for every launcher
(``pytorch``, ``slurm``, ``mpi``), which raises "Found no NVIDIA driver" on a CPU-only host, and
``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to DDP, which DDP rejects for a CPU
module. :func:`setup_distributed` handles both; on a host with CUDA it leaves NCCL and
mmengine's own code path in charge. On every host it also keeps two warnings of each process
away that name nothing a user did: mmengine's ``init_dist`` sets the ``spawn`` start method and
its ``Runner`` then forces its config's (``fork``) with a warning, so the config's method is set
first; and torch >= 2.13 deprecates the ``broadcast_buffers=False`` that mmengine passes to DDP,
so the default wrapper says the same (no buffer sync in forward) as ``forward_sync_buffers``.
"""

import argparse
import gc
import inspect
import os
import os.path as osp
from typing import Sequence

import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.dist import init_dist, is_distributed
from mmengine.registry import MODEL_WRAPPERS
from torch import cuda
from torch.nn.parallel import DistributedDataParallel

from .data_root import load_config_with_data_root

__all__ = [
    'RUN_HOOKS',
    'add_hooks',
    'add_run_hooks',
    'end_distributed',
    'load_cfg',
    'setup_distributed',
]

#: Hooks of every run of the plugin's tools: no checkpoint with non-finite weights, progress
#: lines while training and evaluating at least every few seconds, CPU threads fitted to the
#: free cores (CPU runs only).
RUN_HOOKS = ('CheckpointGuardHook', 'TrainProgressHook', 'EvalProgressHook', 'CpuThreadsHook')


def load_cfg(config: str, args: argparse.Namespace) -> Config:
    """Load a config and apply the launch arguments, as mmdet's tools do.

    ``args`` holds those of :func:`ssd_plugin_cli.options.add_launch_args`.

    ``--data-root`` moves the datasets first, then ``--cfg-options`` apply. ``work_dir`` is, in
    priority order: ``--work-dir``, the config's, ``./work_dirs/<name>``. Also sets
    ``LOCAL_RANK`` from ``--local-rank`` unless the launcher has set it.
    """
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config_with_data_root(config, args.data_root, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def _ddp_wrapper_cfg(cfg: Config) -> dict:
    """mmengine's default wrapper (DDP, no buffer sync in forward), in torch's current terms."""
    # torch >= 2.13 syncs buffers once at init under forward_sync_buffers=False: the ranks'
    # buffers are equal there anyway (same seed, or broadcast weights)
    new_name = 'forward_sync_buffers' in inspect.signature(DistributedDataParallel).parameters
    return {
        'type': 'MMDistributedDataParallel',
        'forward_sync_buffers' if new_name else 'broadcast_buffers': False,
        'find_unused_parameters': cfg.get('find_unused_parameters', False),
    }


def setup_distributed(cfg: Config) -> bool:
    """Prepare a distributed config's process start; start it on CPUs (gloo).

    Does nothing (returns False) when ``cfg.launcher`` is ``'none'``. Otherwise sets the start
    method of ``cfg.env_cfg.mp_cfg`` (mmengine's default ``fork``) unless one is set, and the
    default DDP wrapper config unless ``cfg.model_wrapper_cfg`` names one. Without CUDA it also
    sets ``cfg.env_cfg.dist_cfg.backend = 'gloo'``, initialises the process group with
    mmengine's own launcher code (so each launcher's environment is read exactly as mmengine
    reads it) minus the ``torch.cuda.set_device`` call, and sets ``device_ids=None`` in
    ``cfg.model_wrapper_cfg`` when the wrapper is a DDP subclass. The runner then finds the
    process group ready and skips its own ``init_dist``.

    Args:
        cfg (Config): The full config, ``launcher`` already set. Modified in place.

    Returns:
        bool: Whether the CPU setup was applied.
    """
    if cfg.get('launcher', 'none') == 'none':
        return False
    if mp.get_start_method(allow_none=True) is None:
        mp_cfg = cfg.get('env_cfg', {}).get('mp_cfg') or {}
        mp.set_start_method(mp_cfg.get('mp_start_method', 'fork'))
    cfg.model_wrapper_cfg = cfg.get('model_wrapper_cfg') or _ddp_wrapper_cfg(cfg)
    if cuda.is_available():
        return False
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if not is_distributed():
        set_device = cuda.set_device
        cuda.set_device = lambda device: None  # no CUDA device to select
        try:
            init_dist(cfg.launcher, **dist_cfg)
        finally:
            cuda.set_device = set_device

    wrapper_cfg = cfg.model_wrapper_cfg
    wrapper_type = MODEL_WRAPPERS.get(wrapper_cfg.get('type', 'MMDistributedDataParallel'))
    if isinstance(wrapper_type, type) and issubclass(wrapper_type, DistributedDataParallel):
        wrapper_cfg['device_ids'] = None  # a CPU module takes no device ids
    cfg.model_wrapper_cfg = wrapper_cfg
    return True


def end_distributed() -> None:
    """Wait for every rank, then destroy the process group, before a distributed tool exits.

    On several nodes the rendezvous store lives on node 0: a rank still tearing its process group
    down when node 0 has exited aborts (``terminate called without an active exception``), and
    torch asks for ``destroy_process_group`` before exit. The caller frees its DDP model first:
    a reducer that outlives its process group can hang the exit. Does nothing undistributed.
    """
    if is_distributed():
        gc.collect()  # the caller's DDP reducer, if only a reference cycle still holds it
        dist.barrier()
        dist.destroy_process_group()


def add_hooks(cfg: Config, names: Sequence[str]) -> None:
    """Append each hook of ``names`` that ``cfg.custom_hooks`` does not list, with defaults.

    Assigns ``cfg.custom_hooks`` (created when missing): on a config without it,
    ``Config.setdefault('custom_hooks', [])`` hands back a copy, so appending to that list
    would add nothing.
    """
    hooks = list(cfg.get('custom_hooks') or [])
    listed = {hook.get('type') for hook in hooks}
    cfg.custom_hooks = hooks + [dict(type=name) for name in names if name not in listed]


def add_run_hooks(cfg: Config) -> None:
    """Append each of :data:`RUN_HOOKS` that ``cfg.custom_hooks`` does not list, with defaults."""
    add_hooks(cfg, RUN_HOOKS)
