"""MultiBoxLoss under DDP: the gradient of any split of a batch is the whole batch's (gloo).

Two processes (spawned, gloo) each hold half of a batch; a linear "head" wrapped in
``DistributedDataParallel`` predicts both outputs from fixed per-box features. After one
backward pass DDP's averaged gradient must equal the gradient one process computes on the
whole batch, and the mean of the two processes' losses the whole batch's loss.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ssd_plugin.functional.multibox_loss import multibox_loss
from ssd_plugin.models.losses import MultiBoxLoss

NUM_CLASSES, NUM_PRIORS, FEATURES = 3, 50, 6
# positives per image; the split puts the crowded images on one process and an image without
# any positive on the other, so per-process normalisers (26 vs 2) would weigh them very unequally
POS_COUNTS = (12, 0, 14, 2)
WORLD_SIZE = 2


def _batch():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(len(POS_COUNTS), NUM_PRIORS, FEATURES, generator=g)
    targets = torch.randn(len(POS_COUNTS), NUM_PRIORS, 4, generator=g)
    labels = torch.full((len(POS_COUNTS), NUM_PRIORS), NUM_CLASSES)
    for b, n in enumerate(POS_COUNTS):
        idx = torch.randperm(NUM_PRIORS, generator=g)[:n]
        labels[b, idx] = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return feats, labels, targets


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.cls = nn.Linear(FEATURES, NUM_CLASSES + 1)
        self.reg = nn.Linear(FEATURES, 4)
        self.loss = MultiBoxLoss()

    def forward(self, feats, labels, targets):
        out = self.loss(self.cls(feats) * 3, self.reg(feats), labels, targets)
        return out['loss_cls'] + out['loss_bbox']


def _worker(rank: int, init_file: str, result_dir: str) -> None:
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=WORLD_SIZE)  # fmt: skip
    calls = []
    all_reduce = dist.all_reduce

    def counting_all_reduce(*args, **kwargs):
        calls.append(args[0].shape)
        return all_reduce(*args, **kwargs)

    model = DistributedDataParallel(_Head())  # broadcasts and checks parameters: not counted
    feats, labels, targets = (t[rank::WORLD_SIZE] for t in _batch())  # DefaultSampler's split
    dist.all_reduce = counting_all_reduce
    try:
        loss = model(feats, labels, targets)
    finally:
        dist.all_reduce = all_reduce
    loss.backward()  # DDP averages the gradients here
    torch.save(dict(loss=loss.detach(), calls=calls,
                    grads={k: p.grad for k, p in model.module.named_parameters()}),
               os.path.join(result_dir, f'rank{rank}.pt'))  # fmt: skip
    # DDP's reducer before its process group: destroyed the other way round, the exit can hang
    del model
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp('ddp_loss')
    # spawn, not fork: a fork after ONNX Runtime's, OpenVINO's or OpenMP's thread pools have
    # started (other tests in this pytest process) can deadlock the child
    mp.start_processes(_worker, args=(str(root / 'init'), str(root)), nprocs=WORLD_SIZE,
                       start_method='spawn')  # fmt: skip
    return [torch.load(root / f'rank{r}.pt') for r in range(WORLD_SIZE)]


def test_ddp_gradient_is_the_global_batch_gradient(ranks):
    head = _Head()
    loss = head(*_batch())
    loss.backward()
    # the logged loss (the mean over processes, AllReduceLossHook) is the whole batch's
    mean_loss = sum(r['loss'] for r in ranks) / WORLD_SIZE
    # float32 sums of up to 2 x 50 rows in another order: a few ulps of the result
    tol = 4 * torch.finfo(torch.float32).eps * len(POS_COUNTS) * NUM_PRIORS
    torch.testing.assert_close(mean_loss, loss.detach(), rtol=tol, atol=0)
    for name, param in head.named_parameters():
        for r in ranks:  # DDP leaves the same averaged gradient on every process
            torch.testing.assert_close(r['grads'][name], param.grad,
                                       rtol=0, atol=tol * param.grad.abs().max())  # fmt: skip


def test_per_process_normalisers_would_give_another_gradient():
    """What the test above guards against: each share divided by its own positives."""
    batch = _batch()
    assert [sum(POS_COUNTS[r::WORLD_SIZE]) for r in range(WORLD_SIZE)] == [26, 2]
    whole, split = _Head(), _Head()
    whole(*batch).backward()
    for r in range(WORLD_SIZE):
        share = [t[r::WORLD_SIZE] for t in batch]
        cls, reg = split.cls(share[0]) * 3, split.reg(share[0])
        loss = sum(multibox_loss(cls, reg, share[1], share[2]))  # divided by N_r
        (loss / WORLD_SIZE).backward()  # DDP's mean
    diff = (split.reg.bias.grad - whole.reg.bias.grad).abs().max()
    assert diff > 0.1 * whole.reg.bias.grad.abs().max()


def test_one_all_reduce_of_one_count_per_step(ranks):
    for r in ranks:
        assert r['calls'] == [torch.Size([])]


def test_one_process_is_bit_identical_to_the_per_batch_normaliser():
    feats, labels, targets = _batch()
    cls, reg = _Head().cls(feats) * 3, _Head().reg(feats)
    out = MultiBoxLoss()(cls, reg, labels, targets)
    local = MultiBoxLoss(global_batch=False)(cls, reg, labels, targets)
    plain = multibox_loss(cls, reg, labels, targets)
    for key, ref in zip(('loss_cls', 'loss_bbox'), plain):
        assert torch.equal(out[key], ref) and torch.equal(local[key], ref)
    # the paper's N: 28 positives in the batch
    assert sum(POS_COUNTS) == int(((labels >= 0) & (labels < NUM_CLASSES)).sum())
