"""AllReduceLossHook: the logged training outputs are the mean over ranks (gloo, 2 processes)."""

import copy
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.hooks import RuntimeInfoHook
from mmengine.registry import HOOKS
from mmengine.runner import get_priority

from ssd_plugin.engine.hooks import AllReduceLossHook


def _outputs(rank: int) -> dict:
    return dict(
        loss=torch.tensor(1.5 + rank * 2.0, requires_grad=True),
        loss_cls=torch.tensor(0.25 * (rank + 1)),
        acc=torch.tensor([90.0 + rank], dtype=torch.float32),  # 1-element, not 0-dim
        per_level=torch.tensor([1.0, 2.0]) * (rank + 1),  # not a scalar: left alone
        note='text',
    )


#: Training outputs without a scalar tensor: nothing to average, so no collective either.
NOTHING_TO_REDUCE = (None, {}, dict(note='text', per_level=torch.ones(2)))


def _worker(rank: int, world_size: int, init_file: str, result_dir: str) -> None:
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world_size)  # fmt: skip
    collectives = []
    module = 'ssd_plugin.engine.hooks.all_reduce_loss_hook'
    reduce = sys.modules[module].all_reduce
    sys.modules[module].all_reduce = lambda *a, **k: collectives.append(a) or reduce(*a, **k)
    hook = AllReduceLossHook()
    for outputs in NOTHING_TO_REDUCE:  # under world size 2, so the early return is its own
        hook.after_train_iter(runner=None, batch_idx=0, outputs=copy.deepcopy(outputs))
    empty_collectives = len(collectives)
    outputs = _outputs(rank)
    hook.after_train_iter(runner=None, batch_idx=0, outputs=outputs)
    outputs['collectives'] = (empty_collectives, len(collectives))
    torch.save(outputs, os.path.join(result_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


def test_outputs_become_the_mean_over_ranks(tmp_path):
    world_size = 2
    # spawn, not fork: a fork after ONNX Runtime's, OpenVINO's or OpenMP's thread pools have
    # started (other tests in this pytest process) can deadlock the child
    mp.start_processes(_worker, args=(world_size, str(tmp_path / 'init'), str(tmp_path)),
                       nprocs=world_size, start_method='spawn')  # fmt: skip
    expected = {
        key: sum(_outputs(r)[key].detach() for r in range(world_size)) / world_size
        for key in ('loss', 'loss_cls', 'acc')
    }
    for rank in range(world_size):
        out = torch.load(tmp_path / f'rank{rank}.pt')
        for key, value in expected.items():
            torch.testing.assert_close(out[key], value.to(out[key].dtype).reshape(()))
            assert out[key].dtype == _outputs(rank)[key].dtype
        torch.testing.assert_close(out['per_level'], _outputs(rank)['per_level'])
        assert out['note'] == 'text'
    # exact mean, not an approximation: (1.5 + 3.5) / 2 = 2.5
    assert float(torch.load(tmp_path / 'rank0.pt')['loss']) == 2.5
    # outputs without scalars issued no collective (a rank alone in one would wait forever);
    # the scalars, one for all of them
    for rank in range(world_size):
        assert torch.load(tmp_path / f'rank{rank}.pt')['collectives'] == (0, 1)


def test_single_process_leaves_outputs_untouched():
    outputs = _outputs(rank=1)
    loss = outputs['loss']
    AllReduceLossHook().after_train_iter(runner=None, batch_idx=0, outputs=outputs)
    assert outputs['loss'] is loss


def test_runs_before_runtime_info_hook_logs_the_outputs():
    assert get_priority(AllReduceLossHook.priority) < get_priority(RuntimeInfoHook.priority)
    assert isinstance(HOOKS.build(dict(type='mmdet.AllReduceLossHook')), AllReduceLossHook)
