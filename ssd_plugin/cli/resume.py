"""Which checkpoint a plain ``--resume`` continues from: the newest intact one of the work dir.

mmengine resumes from the file ``<work_dir>/last_checkpoint`` names. A run killed while writing
that file, or stopped by a full disk, leaves it truncated, and every later ``--resume`` then
fails on it (or, once it is deleted, on a missing file), while an earlier intact checkpoint
sits next to it. :func:`find_resume_checkpoint` checks the named file first and, where it is
missing or damaged (:func:`~ssd_plugin.engine.checkpoint.checkpoint_damage`), falls back to the
newest intact checkpoint of the run, saying which file it uses instead of which, and why.
"""

import glob
import os
import os.path as osp
from typing import List, NamedTuple, Optional

from mmengine.config import Config

from ..engine.checkpoint import checkpoint_damage

__all__ = ['ResumePoint', 'find_resume_checkpoint', 'resolve_auto_resume']


class ResumePoint(NamedTuple):
    """The checkpoint to resume from (None: none found, start at iteration 0) and a note."""

    checkpoint: Optional[str]
    note: Optional[str]  # to log as a warning; None when last_checkpoint's file is used


def _candidates(work_dir: str, named: Optional[str]) -> List[str]:
    """The run's other checkpoints, newest first (by modification time, then name).

    ``best_*`` files are left out: ``CheckpointHook`` saves them without the optimizer and
    scheduler states, so a run resumed from one would not continue as it was.
    """
    folders = {work_dir} | ({osp.dirname(named)} if named else set())
    # absolute: mmengine writes an absolute path into last_checkpoint, a work dir may be relative
    paths = {
        osp.abspath(p)
        for folder in folders
        for p in glob.glob(osp.join(folder, '*.pth'))
        if not osp.basename(p).startswith('best_')
    }
    paths.discard(osp.abspath(named) if named else None)
    return sorted(paths, key=lambda p: (os.stat(p).st_mtime_ns, p), reverse=True)


def find_resume_checkpoint(work_dir: str) -> ResumePoint:
    """The checkpoint a plain ``--resume`` in ``work_dir`` continues from.

    The file ``<work_dir>/last_checkpoint`` names, if it exists and is intact; otherwise the
    newest intact ``*.pth`` of the work dir (and of the named file's folder), with a note that
    gives both file names and what is wrong with the named one. Without ``last_checkpoint``
    the newest intact checkpoint is used too (the note says so), and without any checkpoint
    the result is ``(None, note)``: training starts at iteration 0.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        ResumePoint: ``(checkpoint, note)``.

    Raises:
        RuntimeError: Checkpoints exist but none is intact; the message lists each file tried
            and what is wrong with it.
    """
    last = osp.join(work_dir, 'last_checkpoint')
    named = None
    if osp.isfile(last):
        with open(last) as f:
            named = f.read().strip() or None
    tried = []  # (file, what is wrong with it)
    for path in ([named] if named else []) + _candidates(work_dir, named):
        if not osp.isfile(path):
            tried.append((path, 'does not exist'))
            continue
        damage = checkpoint_damage(path)
        if damage is not None:
            tried.append((path, damage))
            continue
        if path == named:
            return ResumePoint(path, None)
        if named is None:
            why, others = f'{work_dir} has no last_checkpoint file', tried
        else:
            why, others = f'the checkpoint last_checkpoint names, {named}, {tried[0][1]}', tried[1:]
        skipped = ''.join(f'; {p} {reason}' for p, reason in others)
        return ResumePoint(
            path, f'Resuming from {path}, the newest intact checkpoint: {why}{skipped}.'
        )
    if not tried:
        return ResumePoint(None, f'--resume: {work_dir} holds no checkpoint; training starts at '
                           'iteration 0.')  # fmt: skip
    listed = '; '.join(f'{p} {reason}' for p, reason in tried)
    raise RuntimeError(
        f'--resume found no intact checkpoint in {work_dir}. Tried: {listed}. Start again '
        f'without --resume (or with another --work-dir), or give --resume PATH to a '
        f'checkpoint kept elsewhere.'
    )


def resolve_auto_resume(cfg: Config) -> Optional[str]:
    """Set ``cfg.load_from`` for a plain ``--resume`` (:func:`find_resume_checkpoint`).

    Sets ``cfg.resume`` to whether a checkpoint was found, since mmengine's own search would
    only find the file ``last_checkpoint`` names again.

    Args:
        cfg (Config): The full config, with ``work_dir``. Modified in place.

    Returns:
        str | None: The note to log, or None when last_checkpoint's file is used.
    """
    checkpoint, note = find_resume_checkpoint(cfg.work_dir)
    cfg.resume, cfg.load_from = checkpoint is not None, checkpoint
    return note
