"""Loading mmengine checkpoints under torch >= 2.6 (weights-only torch.load by default)."""

import copy
import os.path as osp
import pickle
import re
import struct
import subprocess
import sys
import zipfile

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader
from torch.utils.data import Dataset

from ssd_plugin.engine.checkpoint import (
    checkpoint_damage,
    load_local_checkpoint,
    load_state_dict_file,
    mmengine_load_is_weights_only,
    weights_only_checkpoint_loading,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRUNCATED = 'is truncated or corrupt'
FOREIGN = 'holds objects that are not weights or mmengine training state'


class _Regression(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, inputs, targets, mode='tensor'):
        loss = ((self.linear(inputs) - targets) ** 2).mean()
        return dict(loss=loss)


class _Points(Dataset):
    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=generator)
        self.y = self.x.sum(1, keepdim=True)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        return dict(inputs=self.x[idx], targets=self.y[idx])


def _runner(work_dir, max_iters, resume=False, load_from=None):
    torch.manual_seed(0)  # the model is built before the Runner seeds anything
    return Runner(
        model=_Regression(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_Points(),
            sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
            collate_fn=dict(type='default_collate'),
            batch_size=8,
            num_workers=0,
        ),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[3], gamma=0.1, by_epoch=False),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        randomness=dict(seed=0),
        resume=resume,
        load_from=load_from,
        default_scope='mmengine',
        experiment_name=f'ckpt_{osp.basename(str(work_dir))}_{max_iters}_{resume}',
    )


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 2-iteration run's work dir: iter_2.pth holds mmengine's full training state."""
    work_dir = tmp_path_factory.mktemp('trained')
    _runner(work_dir, max_iters=2).train()
    return work_dir


def _truncated(src, dst, fraction=0.5):
    data = open(src, 'rb').read()
    open(dst, 'wb').write(data[: int(len(data) * fraction)])
    return str(dst)


def _flip_tensor_bytes(src, dst):
    """Invert bytes inside the tensor data of a zip checkpoint (the pickle stays intact)."""
    data = bytearray(open(src, 'rb').read())
    with zipfile.ZipFile(src) as archive:
        offset = next(m for m in archive.infolist() if '/data/' in m.filename).header_offset
    # a local file header: 30 bytes, then the name and the extra field (lengths at 26 and 28)
    name_len, extra_len = struct.unpack('<HH', data[offset + 26 : offset + 30])
    start = offset + 30 + name_len + extra_len
    for i in range(start, start + 8):
        data[i] ^= 0xFF
    open(dst, 'wb').write(bytes(data))
    return str(dst)


class _Arbitrary:
    pass


def test_resume_matches_uninterrupted_run(tmp_path):
    straight = _runner(tmp_path / 'straight', max_iters=6)
    straight.train()
    expected = copy.deepcopy(straight.model.state_dict())

    _runner(tmp_path / 'split', max_iters=4).train()
    resumed = _runner(tmp_path / 'split', max_iters=6, resume=True)
    with weights_only_checkpoint_loading():
        resumed.train()

    assert resumed.iter == 6
    for key, value in expected.items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)


def test_checkpoint_holds_mmengine_state(trained):
    checkpoint = load_local_checkpoint(str(trained / 'iter_2.pth'))
    assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'} <= set(checkpoint)


def test_plain_torch_load_refuses_mmengine_checkpoints(trained):
    """What mmengine 0.10.7 calls; if torch ever accepts these files the fix can go."""
    assert mmengine_load_is_weights_only()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(trained / 'iter_2.pth'))


def test_foreign_objects_are_refused_with_the_file_name(tmp_path):
    path = tmp_path / 'foreign.pth'
    torch.save(dict(state_dict={}, payload=_Arbitrary()), path)
    with pytest.raises(RuntimeError) as info:
        load_local_checkpoint(str(path))
    message = str(info.value)
    assert message.startswith(f'Checkpoint {path} {FOREIGN}')
    assert '_Arbitrary' in message and TRUNCATED not in message


def test_truncated_zip_checkpoint_is_named_as_such(tmp_path, trained):
    path = _truncated(trained / 'iter_2.pth', tmp_path / 'trunc.pth')
    with pytest.raises(RuntimeError) as info:
        load_local_checkpoint(path)
    assert str(info.value).startswith(f'Checkpoint {path} {TRUNCATED}')
    assert FOREIGN not in str(info.value)


def test_flipped_tensor_bytes_fail_the_checksum(tmp_path, trained):
    """torch.load itself would return the altered weights without a word."""
    path = _flip_tensor_bytes(trained / 'iter_2.pth', tmp_path / 'flipped.pth')
    torch.load(path, weights_only=False)  # loads, silently wrong
    with pytest.raises(RuntimeError, match=r'flipped\.pth is corrupt: .*checksum'):
        load_local_checkpoint(path)


def test_checkpoints_without_checksums_still_load(tmp_path):
    weights = {'w': torch.arange(6.0)}
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(weights, tmp_path / 'nocrc.pth')
    finally:
        torch.serialization.set_crc32_options(True)
    assert checkpoint_damage(str(tmp_path / 'nocrc.pth')) is None
    assert torch.equal(load_local_checkpoint(str(tmp_path / 'nocrc.pth'))['w'], weights['w'])


@pytest.mark.parametrize(
    'content, phrase',
    [
        (b'', 'is empty'),
        (b'version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n', 'is a Git LFS'),
        (bytes(range(256)) * 4, TRUNCATED),  # neither a zip archive nor a pickle stream
    ],
)
def test_files_that_are_no_checkpoint(tmp_path, content, phrase):
    path = tmp_path / 'bad.pth'
    path.write_bytes(content)
    with pytest.raises(RuntimeError, match=f'^Checkpoint {re.escape(str(path))} {phrase}'):
        load_local_checkpoint(str(path))


def test_legacy_format_truncated_or_foreign(tmp_path):
    """torch's pre-1.6 format (no zip, no checksums): told apart while unpickling."""
    weights = {'w': torch.randn(64, 64)}
    torch.save(weights, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    assert torch.equal(load_local_checkpoint(str(tmp_path / 'legacy.pth'))['w'], weights['w'])
    path = _truncated(tmp_path / 'legacy.pth', tmp_path / 'legacy_trunc.pth')
    with pytest.raises(RuntimeError, match=f'^Checkpoint {re.escape(path)} {TRUNCATED}'):
        load_local_checkpoint(path)
    torch.save(dict(x=_Arbitrary()), tmp_path / 'lf.pth', _use_new_zipfile_serialization=False)
    with pytest.raises(RuntimeError, match=FOREIGN):
        load_local_checkpoint(str(tmp_path / 'lf.pth'))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        load_local_checkpoint(str(tmp_path / 'absent.pth'))


def test_mmengine_load_checkpoint_reports_the_cause(tmp_path, trained):
    """The path of ``tools/test.py``, ``image_demo.py`` and ``export_onnx.py``."""
    trunc = _truncated(trained / 'iter_2.pth', tmp_path / 'trunc.pth')
    foreign = tmp_path / 'foreign.pth'
    torch.save(dict(state_dict={}, payload=_Arbitrary()), foreign)
    model = _Regression()
    with weights_only_checkpoint_loading():
        load_checkpoint(model, str(trained / 'iter_2.pth'))
        with pytest.raises(RuntimeError, match=f'^Checkpoint {re.escape(trunc)} {TRUNCATED}'):
            load_checkpoint(model, trunc)
        with pytest.raises(RuntimeError, match=f'^Checkpoint {re.escape(str(foreign))} {FOREIGN}'):
            load_checkpoint(model, str(foreign))


def test_resume_from_a_truncated_checkpoint_reports_it(tmp_path, trained):
    """The path of ``tools/train.py --resume trunc.pth``."""
    trunc = _truncated(trained / 'iter_2.pth', tmp_path / 'trunc.pth')
    runner = _runner(tmp_path / 'work', max_iters=4, resume=True, load_from=trunc)
    with weights_only_checkpoint_loading(), pytest.raises(RuntimeError) as info:
        runner.train()
    assert str(info.value).startswith(f'Checkpoint {trunc} {TRUNCATED}')


def test_loader_is_in_place_only_inside_the_block():
    original = CheckpointLoader._schemes['']
    with weights_only_checkpoint_loading():
        assert CheckpointLoader._schemes[''] is load_local_checkpoint
    assert CheckpointLoader._schemes[''] is original
    with pytest.raises(KeyError), weights_only_checkpoint_loading():
        raise KeyError('the block failed')
    assert CheckpointLoader._schemes[''] is original


def test_importing_the_package_leaves_mmengine_loaders_alone():
    """In a fresh process: ``import ssd_plugin`` registers components, patches nothing."""
    code = (
        'from mmengine.runner.checkpoint import CheckpointLoader\n'
        'before = dict(CheckpointLoader._schemes)\n'
        'import ssd_plugin, ssd_plugin.engine.checkpoint\n'
        'assert dict(CheckpointLoader._schemes) == before, CheckpointLoader._schemes\n'
    )
    subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True, timeout=300)


def test_state_dict_file_bare_or_wrapped(tmp_path):
    weights = {'conv.weight': torch.arange(6.0).reshape(2, 3)}
    torch.save(weights, tmp_path / 'bare.pth')
    torch.save(dict(state_dict=weights, meta=dict(epoch=3)), tmp_path / 'wrapped.pth')
    torch.save(torch.zeros(2), tmp_path / 'tensor.pth')
    state_dict, checkpoint = load_state_dict_file(str(tmp_path / 'bare.pth'))
    assert checkpoint is None and torch.equal(state_dict['conv.weight'], weights['conv.weight'])
    state_dict, checkpoint = load_state_dict_file(str(tmp_path / 'wrapped.pth'))
    assert checkpoint['meta'] == dict(epoch=3)
    assert torch.equal(state_dict['conv.weight'], weights['conv.weight'])
    with pytest.raises(TypeError, match=r'tensor\.pth.*Tensor'):
        load_state_dict_file(str(tmp_path / 'tensor.pth'))
