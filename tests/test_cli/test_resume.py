"""find_resume_checkpoint: a plain --resume uses the newest intact checkpoint of the work dir."""

import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from ssd_plugin.cli.resume import find_resume_checkpoint, resolve_auto_resume
from ssd_plugin.engine.checkpoint import load_local_checkpoint


def _checkpoint(work_dir, name, mtime, truncate=False):
    """Save a small mmengine-like checkpoint with modification time ``mtime``."""
    path = osp.join(str(work_dir), name)
    torch.save(dict(state_dict=dict(w=torch.full((256,), float(mtime))), meta=dict()), path)
    if truncate:  # a run killed while writing it, or a full disk
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[: len(data) // 2])
    os.utime(path, (mtime, mtime))
    return path


def _last_checkpoint(work_dir, path):
    (work_dir / 'last_checkpoint').write_text(path)


def test_the_named_checkpoint_when_it_is_intact(tmp_path):
    _checkpoint(tmp_path, 'iter_2.pth', 100)
    named = _checkpoint(tmp_path, 'iter_4.pth', 200)
    _last_checkpoint(tmp_path, named)
    assert find_resume_checkpoint(str(tmp_path)) == (named, None)


def test_truncated_newest_falls_back_to_the_newest_intact(tmp_path):
    _checkpoint(tmp_path, 'iter_2.pth', 100)
    intact = _checkpoint(tmp_path, 'iter_4.pth', 200)
    _checkpoint(tmp_path, 'best_coco_bbox_mAP_iter_6.pth', 300)  # no optimizer state: never
    named = _checkpoint(tmp_path, 'iter_6.pth', 300, truncate=True)
    _last_checkpoint(tmp_path, named)
    checkpoint, note = find_resume_checkpoint(str(tmp_path))
    assert checkpoint == intact
    assert note.startswith(
        f'Resuming from {intact}, the newest intact checkpoint: the checkpoint last_checkpoint '
        f'names, {named}, is truncated or corrupt: its zip archive is incomplete'
    )
    assert 'download' not in note


def test_deleted_newest_and_more_damage_are_listed(tmp_path):
    intact = _checkpoint(tmp_path, 'epoch_1.pth', 100)
    empty = _checkpoint(tmp_path, 'epoch_2.pth', 200)
    open(empty, 'wb').close()
    os.utime(empty, (200, 200))
    _last_checkpoint(tmp_path, osp.join(str(tmp_path), 'epoch_3.pth'))  # deleted since
    checkpoint, note = find_resume_checkpoint(str(tmp_path))
    assert checkpoint == intact
    assert note == (
        f'Resuming from {intact}, the newest intact checkpoint: the checkpoint last_checkpoint '
        f'names, {tmp_path}/epoch_3.pth, does not exist; {empty} is empty (0 bytes).'
    )


def test_no_intact_checkpoint_names_every_file_tried(tmp_path):
    old = _checkpoint(tmp_path, 'iter_2.pth', 100, truncate=True)
    named = _checkpoint(tmp_path, 'iter_4.pth', 200, truncate=True)
    _last_checkpoint(tmp_path, named)
    with pytest.raises(RuntimeError) as info:
        find_resume_checkpoint(str(tmp_path))
    message = str(info.value)
    assert message.startswith(f'--resume found no intact checkpoint in {tmp_path}. Tried: ')
    assert message.index(named) < message.index(old)  # newest first
    assert message.count('is truncated or corrupt') == 2 and 'download' not in message


def test_without_last_checkpoint(tmp_path):
    assert find_resume_checkpoint(str(tmp_path)) == (
        None,
        f'--resume: {tmp_path} holds no checkpoint; training starts at iteration 0.',
    )
    cfg = Config(dict(work_dir=str(tmp_path)))
    assert resolve_auto_resume(cfg) is not None and cfg.resume is False and cfg.load_from is None

    newest = _checkpoint(tmp_path, 'iter_4.pth', 200)
    _checkpoint(tmp_path, 'iter_2.pth', 100)
    damaged = _checkpoint(tmp_path, 'iter_6.pth', 300, truncate=True)
    checkpoint, note = find_resume_checkpoint(str(tmp_path))
    assert checkpoint == newest
    assert note.startswith(
        f'Resuming from {newest}, the newest intact checkpoint: {tmp_path} has no '
        f'last_checkpoint file; {damaged} is truncated or corrupt'
    )
    assert resolve_auto_resume(cfg) == note and cfg.resume is True and cfg.load_from == newest


def test_loading_a_damaged_checkpoint_of_a_work_dir_suggests_resume(tmp_path):
    """Its own checkpoint: no "download"; a file elsewhere: copy or download it again."""
    work_dir, elsewhere = tmp_path / 'work_dir', tmp_path / 'downloads'
    work_dir.mkdir()
    elsewhere.mkdir()
    own = _checkpoint(work_dir, 'iter_4.pth', 200, truncate=True)
    _last_checkpoint(work_dir, own)
    with pytest.raises(RuntimeError, match='is truncated or corrupt') as info:
        load_local_checkpoint(own)
    assert 'download' not in str(info.value)
    assert '--resume` (without a path) continues from the newest intact' in str(info.value)
    other = _checkpoint(elsewhere, 'ssd300.pth', 200, truncate=True)
    with pytest.raises(RuntimeError, match=r'incomplete .*\. Copy or download it again\.$'):
        load_local_checkpoint(other)


def test_a_relative_work_dir_names_the_damaged_file_once(tmp_path, monkeypatch):
    """mmengine writes last_checkpoint's path absolute; the work dir may be given relative."""
    monkeypatch.chdir(tmp_path)
    os.makedirs('work_dir')
    intact = _checkpoint(tmp_path / 'work_dir', 'iter_2.pth', 100)
    named = _checkpoint(tmp_path / 'work_dir', 'iter_4.pth', 200, truncate=True)
    _last_checkpoint(tmp_path / 'work_dir', named)
    checkpoint, note = find_resume_checkpoint('work_dir')
    assert checkpoint == intact
    assert note.count('iter_4.pth') == 1, note
