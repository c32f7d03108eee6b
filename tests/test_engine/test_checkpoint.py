"""Resuming mmengine training under torch >= 2.6 (weights-only torch.load by default)."""

import copy
import pickle

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

from ssd_plugin.engine.checkpoint import load_local_checkpoint, load_state_dict_file


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


def _runner(work_dir, max_iters, resume=False):
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
        default_scope='mmengine',
    )


def test_resume_matches_uninterrupted_run(tmp_path):
    straight = _runner(tmp_path / 'straight', max_iters=6)
    straight.train()
    expected = copy.deepcopy(straight.model.state_dict())

    _runner(tmp_path / 'split', max_iters=4).train()
    resumed = _runner(tmp_path / 'split', max_iters=6, resume=True)
    resumed.train()

    assert resumed.iter == 6
    for key, value in expected.items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)


def test_checkpoint_holds_mmengine_state(tmp_path):
    _runner(tmp_path, max_iters=2).train()
    checkpoint = load_local_checkpoint(str(tmp_path / 'iter_2.pth'))
    assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'} <= set(checkpoint)


class _Arbitrary:
    pass


def test_foreign_objects_are_refused_with_the_file_name(tmp_path):
    path = tmp_path / 'foreign.pth'
    torch.save(dict(state_dict={}, payload=_Arbitrary()), path)
    with pytest.raises(RuntimeError, match='foreign.pth'):
        load_local_checkpoint(str(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        load_local_checkpoint(str(tmp_path / 'absent.pth'))


def test_plain_torch_load_refuses_mmengine_checkpoints(tmp_path):
    """What mmengine 0.10.7 calls; if torch ever accepts these files the fix can go."""
    _runner(tmp_path, max_iters=2).train()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(tmp_path / 'iter_2.pth'))


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
