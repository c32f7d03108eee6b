"""Loading mmengine checkpoints under torch >= 2.6 (weights-only torch.load by default)."""

import copy
import io
import os.path as osp
import pickle
import random
import re
import struct
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader
from torch.utils.data import Dataset

from ssd_plugin.cli.resume import find_resume_checkpoint
from ssd_plugin.engine.checkpoint import (
    MMENGINE_SAFE_GLOBALS,
    checkpoint_damage,
    load_local_checkpoint,
    load_state_dict_file,
    mmengine_load_is_weights_only,
    weights_only_checkpoint_loading,
)
from ssd_plugin.engine.checkpoint_scan import scan_checkpoint, weights_only_names

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRUNCATED = 'is truncated or corrupt'
FOREIGN = 'is unsafe: it holds objects that are not weights or mmengine training state'


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
    assert f'{__name__}._Arbitrary' in message and TRUNCATED not in message


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


# --- hostile and broken files in every layout torch reads -------------------------------------


def _text(value: str) -> bytes:
    """A pickle BINUNICODE string."""
    data = value.encode()
    return b'X' + struct.pack('<I', len(data)) + data


def _system_payload(canary) -> bytes:
    """``os.system('touch CANARY')`` as a protocol-2 pickle (a GLOBAL reaching os.system)."""
    return b'\x80\x02cos\nsystem\n' + _text(f'touch {canary}') + b'\x85R.'


def _getattr_exec_payload(canary) -> bytes:
    """``getattr(__import__('builtins'), 'exec')('open(CANARY, "w")')``: a getattr chain."""
    return (
        b'\x80\x02c__builtin__\ngetattr\nc__builtin__\n__import__\n'
        + _text('builtins')
        + b'\x85R'
        + _text('exec')
        + b'\x86R'
        + _text(f'open({str(canary)!r}, "w")')
        + b'\x85R.'
    )


_SYS_INFO = dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=4))


def _legacy(obj_pickle: bytes) -> bytes:
    """torch's legacy stream around one object pickle (no storages)."""
    head = [torch.serialization.MAGIC_NUMBER, 1001, _SYS_INFO]
    return b''.join(pickle.dumps(x, protocol=2) for x in head) + obj_pickle + pickle.dumps([], 2)


def _zip(obj_pickle: bytes, template) -> bytes:
    """A torch zip archive (``template``'s members) whose data.pkl is ``obj_pickle``."""
    out = io.BytesIO()
    with zipfile.ZipFile(template) as src, zipfile.ZipFile(out, 'w') as dst:
        for member in src.infolist():
            data = src.read(member)
            dst.writestr(member, obj_pickle if member.filename.endswith('data.pkl') else data)
    return out.getvalue()


def _tar(obj_pickle: bytes) -> bytes:
    """torch < 0.4's tar archive: sys_info, pickle, storages and tensors members."""
    members = dict(
        sys_info=pickle.dumps(_SYS_INFO, 2),
        pickle=obj_pickle,
        storages=pickle.dumps(0, 2),
        tensors=pickle.dumps(0, 2),
    )
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w', format=tarfile.PAX_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _layouts(tmp_path, obj_pickle: bytes) -> dict:
    """``obj_pickle`` in each layout: layout -> file bytes."""
    template = tmp_path / 'template.pth'
    if not template.exists():
        torch.save(dict(w=torch.ones(2)), template)
    return dict(
        zip=_zip(obj_pickle, template),
        legacy=_legacy(obj_pickle),
        tar=_tar(obj_pickle),
        pickle=obj_pickle,
    )


@pytest.mark.parametrize('payload', [_system_payload, _getattr_exec_payload])
@pytest.mark.parametrize('layout', ['zip', 'legacy', 'tar', 'pickle'])
def test_a_malicious_file_is_unsafe_in_every_layout(tmp_path, layout, payload):
    canary = tmp_path / 'canary'
    path = tmp_path / f'{layout}.pth'
    path.write_bytes(_layouts(tmp_path, payload(canary))[layout])
    with pytest.raises(RuntimeError) as info:
        load_local_checkpoint(str(path))
    message = str(info.value)
    assert message.startswith(f'Checkpoint {path} {FOREIGN}'), message
    named = 'os.system' if payload is _system_payload else "getattr(builtins.__import__, 'exec')"
    assert named in message and TRUNCATED not in message and 'download' not in message
    assert checkpoint_damage(str(path)) is None  # not damaged: refused as unsafe when loaded
    assert not canary.exists()


def test_a_plain_resume_on_a_malicious_file_does_not_suggest_resume(tmp_path):
    """The work dir's last checkpoint is a malicious legacy file: refused, as unsafe."""
    work_dir = tmp_path / 'work_dir'
    work_dir.mkdir()
    path = work_dir / 'iter_4.pth'
    path.write_bytes(_legacy(_system_payload(tmp_path / 'canary')))
    (work_dir / 'last_checkpoint').write_text(str(path))
    checkpoint, note = find_resume_checkpoint(str(work_dir))
    assert (checkpoint, note) == (str(path), None)  # not skipped as damaged: refused below
    with pytest.raises(RuntimeError) as info:
        load_local_checkpoint(checkpoint)
    assert FOREIGN in str(info.value) and '--resume' not in str(info.value)


@pytest.mark.parametrize('layout', ['legacy', 'tar', 'pickle'])
def test_a_truncated_file_is_damaged_in_every_layout(tmp_path, layout):
    """Cut inside the pickle stream, or (legacy) inside the tensor data after it."""
    if layout == 'legacy':
        torch.save(
            dict(w=torch.randn(64)), tmp_path / 'full.pth', _use_new_zipfile_serialization=False
        )
        data = (tmp_path / 'full.pth').read_bytes()
    else:
        data = _layouts(tmp_path, pickle.dumps(dict(w=list(range(100))), protocol=2))[layout]
    # a tar archive ends in zero blocks: cut inside its first member's data instead
    for cut in (len(data) // 3, 520 if layout == 'tar' else len(data) - 5):
        path = tmp_path / f'cut{cut}.pth'
        path.write_bytes(data[:cut])
        damage = checkpoint_damage(str(path))
        assert damage is not None and damage.startswith(('is truncated', 'is corrupt')), damage
        with pytest.raises(
            RuntimeError, match=f'^Checkpoint {re.escape(str(path))} is (truncated|corrupt)'
        ):
            load_local_checkpoint(str(path))


def test_a_flood_of_globals_is_bounded_and_unsafe(tmp_path):
    """20000 different globals: the scan stops at its bound and names the first three."""
    path = tmp_path / 'flood.pth'
    path.write_bytes(b'\x80\x02' + b''.join(b'cm%d\nf\n0' % i for i in range(20000)) + b'N.')
    with pytest.raises(RuntimeError) as info:
        load_local_checkpoint(str(path))
    assert str(info.value).startswith(
        f'Checkpoint {path} {FOREIGN} (m0.f, m1.f, m2.f and 9997 more)'
    )


def test_a_bare_pickle_of_plain_data_is_named_as_such(tmp_path):
    path = tmp_path / 'plain.pth'
    path.write_bytes(pickle.dumps(dict(w=[1.0, 2.0]), protocol=4))
    with pytest.raises(RuntimeError, match='is a bare pickle, not a file written by torch.save'):
        load_local_checkpoint(str(path))


def test_an_mmengine_checkpoint_names_nothing_foreign(trained):
    """The scan's allow-list is the loader's: mmengine's own training state is not unsafe."""
    names = weights_only_names(MMENGINE_SAFE_GLOBALS)
    scan = scan_checkpoint(str(trained / 'iter_2.pth'), names)
    assert scan == ('zip', None, [])
    torch.save(dict(w=torch.ones(3)), trained / 'legacy.pth', _use_new_zipfile_serialization=False)
    assert scan_checkpoint(str(trained / 'legacy.pth'), names) == ('legacy', None, [])


_FUZZ_CASES = 40  # per layout
_FUZZ_SECONDS = 60.0  # a bound on the whole test, not a measurement: later cases are skipped


def _mutate(data: bytes, rng: random.Random, payload: bytes) -> bytes:
    """One seeded mutation: cut, flip, duplicate, delete, or splice a malicious pickle in."""
    kind = rng.randrange(5)
    at = rng.randrange(len(data))
    if kind == 0:
        return data[:at]
    if kind == 1:
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]
    if kind == 2:
        end = min(len(data), at + rng.randrange(1, 64))
        return data[:end] + data[at:]
    if kind == 3:
        return data[:at] + data[at + rng.randrange(1, 64) :]
    return data[:at] + payload + data[at:]


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_fuzzed_checkpoints_load_or_are_refused_by_name(tmp_path, trained):
    """Seeded mutations of a checkpoint in each layout: loaded, or refused with a message that
    starts with the file and says what is wrong; nothing the file names ever runs."""
    canary = tmp_path / 'canary'
    payload = _system_payload(canary)[2:-1]  # the call without protocol header and STOP
    weights = dict(state_dict=dict(w=torch.randn(8, 4), b=torch.zeros(8)), meta=dict(epoch=1))
    torch.save(weights, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    sources = dict(
        zip=(trained / 'iter_2.pth').read_bytes(),
        legacy=(tmp_path / 'legacy.pth').read_bytes(),
        tar=_tar(pickle.dumps(dict(w=[0.5] * 16), protocol=2)),
        pickle=pickle.dumps(dict(w=[0.5] * 16), protocol=2),
    )
    verdicts = (
        'is unsafe',
        'is truncated',
        'is corrupt',
        'is empty',
        'is a bare pickle',
        'could not be loaded',
    )
    deadline = time.monotonic() + _FUZZ_SECONDS
    for layout, data in sources.items():
        rng = random.Random(f'ssd_plugin-{layout}')
        for case in range(_FUZZ_CASES):
            if time.monotonic() > deadline:
                break
            path = tmp_path / f'{layout}_{case}.pth'
            path.write_bytes(_mutate(data, rng, payload))
            try:
                load_local_checkpoint(str(path))
            except RuntimeError as err:
                message = str(err)
                assert message.startswith(f'Checkpoint {path} '), message
                assert any(v in message for v in verdicts), message
            assert not canary.exists(), (layout, case)


@pytest.mark.parametrize('api', ['init_detector', 'DetInferencer'])
def test_mmdet_apis_name_the_file_inside_the_block(tmp_path, api):
    """mmdet's own entry points load through mmengine's CheckpointLoader: inside the block the
    plugin's loader is the one in place, and a refusal names the file and what is wrong."""
    from mmdet.apis import DetInferencer, init_detector

    config = osp.join(REPO, 'configs', 'ssd_demo_shapes.py')
    canary = tmp_path / 'canary'
    unsafe = tmp_path / 'unsafe.pth'
    unsafe.write_bytes(_legacy(_getattr_exec_payload(canary)))
    damaged = tmp_path / 'damaged.pth'
    torch.save(dict(w=torch.randn(256)), damaged, _use_new_zipfile_serialization=False)
    damaged.write_bytes(damaged.read_bytes()[:-100])
    for path, verdict in ((unsafe, FOREIGN), (damaged, TRUNCATED)):
        with weights_only_checkpoint_loading(), pytest.raises(RuntimeError) as info:
            if api == 'init_detector':
                init_detector(config, str(path), device='cpu')
            else:
                DetInferencer(model=config, weights=str(path), device='cpu', show_progress=False)
        assert str(info.value).startswith(f'Checkpoint {path} {verdict}'), str(info.value)
    assert not canary.exists()
