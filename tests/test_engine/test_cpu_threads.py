"""CPU thread policy: torch's threads follow the cores other processes leave free."""

import os
import os.path as osp
import time

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner

from ssd_plugin.engine.cpu_threads import CpuThreadPolicy, CpuTimes, read_cpu_times, threads_for
from ssd_plugin.engine.hooks import CpuThreadsHook


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    'cores, others, own, processes, expected',
    [
        (2, 0.05, 1.9, 1, 2),  # idle machine (a dataloader worker): all cores
        (2, 1.0, 1.0, 1, 1),  # one other busy process
        (2, 0.67, 1.3, 1, 1),  # ... measured while oversubscribed: it still had 2/3 of a core
        (2, 0.29, 1.7, 1, 2),  # under the margin: the core is still free
        (2, 3.0, 0.5, 1, 1),  # overloaded: never below one thread
        (16, 4.2, 8.0, 1, 12),  # four cores taken (a fifth used 0.2, under the margin)
        (8, 4.0, 4.0, 2, 4),  # two ranks, the other rank's 4 cores are the ranks' own
        (8, 6.0, 4.0, 2, 3),  # two ranks and 2 busy cores outside them: 6 cores for 2 ranks
    ],
)
def test_threads_for(cores, others, own, processes, expected):
    assert threads_for(cores, others, own, processes) == expected


def _times(*readings):
    """A reader returning ``CpuTimes(busy, elapsed, own)`` for each reading in turn."""
    it = iter(CpuTimes(*r) for r in readings)
    return lambda: next(it)


def test_policy_follows_the_load_between_updates(monkeypatch):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1}, raising=False)
    # cumulative seconds over both CPUs; 10 s of wall time per update (20 CPU-seconds)
    policy = CpuThreadPolicy(
        processes=1,
        read=_times(
            (0, 0, 0),
            (19, 20, 18),  # we use 1.8 cores, others 0.1: 2 threads
            (39, 40, 31),  # we 1.3, others 0.7 (a busy process that got 2/3 of a core): 1
            (59, 60, 41),  # we 1.0, others 1.0: unchanged
            (70, 80, 51),  # the other process stopped: 2, once the next measure agrees
            (89, 100, 61),  # others 0.9 again: stays at 1
            (100, 120, 71),  # others 0.1
            (111, 140, 81),  # ... and again: 2
        ),
    )
    torch.set_num_threads(1)
    assert policy.update() == 2 and torch.get_num_threads() == 2  # the first measure: at once
    assert policy.update() == 1 and torch.get_num_threads() == 1  # fewer: at once
    assert policy.others_busy == pytest.approx(0.7)
    assert policy.update() is None and torch.get_num_threads() == 1
    assert policy.update() is None and torch.get_num_threads() == 1
    assert policy.update() is None and torch.get_num_threads() == 1
    assert policy.update() is None and torch.get_num_threads() == 1
    assert policy.update() == 2 and torch.get_num_threads() == 2


def test_first_update_samples_briefly(monkeypatch):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1}, raising=False)
    slept = []
    monkeypatch.setattr('ssd_plugin.engine.cpu_threads.time.sleep', slept.append)
    policy = CpuThreadPolicy(read=_times((0, 0, 0), (0, 0.1, 0), (1.0, 1.0, 0)))
    torch.set_num_threads(2)
    assert policy.update(first_sample_s=0.5) == 1  # measured over the 0.5 s sleep: 2 cores busy
    assert slept == [0.5]


def test_proc_readings_count_this_process_on_its_cpu():
    """A CPU-bound loop pinned to one CPU: ``own`` grows by this process's CPU time as
    ``os.times()`` reports it, and that CPU's ``busy`` by at least as much.

    Tolerances: ``/proc`` and ``times(2)`` floor to whole clock ticks, so a difference of two
    readings is off by less than one tick per summed counter: ``own`` (utime + stime) and
    ``os.times()`` (user + system) two each, the CPU's ``busy`` six; one tick more covers the
    statements between the two reads.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if read_cpu_times(cpus) is None:
        pytest.skip('no /proc')
    tick = 1 / os.sysconf('SC_CLK_TCK')
    cpu = cpus[0]
    os.sched_setaffinity(0, {cpu})  # this thread; the process's other threads are idle
    try:
        before, times_before = read_cpu_times([cpu]), os.times()
        start = time.process_time()
        while time.process_time() - start < 0.3:  # CPU work, not a timing
            pass
        after, times_after = read_cpu_times([cpu]), os.times()
    finally:
        os.sched_setaffinity(0, cpus)
    spent = sum(times_after[:2]) - sum(times_before[:2])
    own = after.own - before.own
    assert own == pytest.approx(spent, abs=5 * tick)
    assert own >= 0.3 - 3 * tick
    assert after.busy - before.busy >= own - 9 * tick


class _Runner:
    def __init__(self, deterministic=False):
        self.lines = []
        self.logger = self  # logger.info(...)
        self.deterministic = deterministic

    def info(self, line):
        self.lines.append(line)


def test_hook_respects_omp_num_threads(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    torch.set_num_threads(1)
    hook = CpuThreadsHook()
    hook.before_run(_Runner())
    assert hook._policy is None and torch.get_num_threads() == 1


def test_hook_rechecks_on_its_interval_and_restores_threads(monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.setattr('ssd_plugin.engine.hooks.cpu_threads_hook.get_device', lambda: 'cpu')
    updates = []

    class _Policy:
        cores, others_busy = 2, 1.0

        def update(self):
            updates.append(1)
            torch.set_num_threads(1)
            return 1

    monkeypatch.setattr('ssd_plugin.engine.hooks.cpu_threads_hook.CpuThreadPolicy', _Policy)
    torch.set_num_threads(2)
    runner, now = _Runner(), [0.0]
    hook = CpuThreadsHook(interval_s=5)
    hook._clock = lambda: now[0]
    hook.before_run(runner)
    assert len(updates) == 1 and runner.lines == [
        'CPU threads: 1 (other processes keep 1.0 of 2 cores busy)'
    ]
    for t in (1.0, 4.0, 5.5, 9.0, 10.5):
        now[0] = t
        hook.after_train_iter(runner, 0)
    assert len(updates) == 3  # at 5.5 and 10.5
    hook.after_run(runner)
    assert torch.get_num_threads() == 2


def test_a_deterministic_run_keeps_its_thread_count(monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.setattr('ssd_plugin.engine.hooks.cpu_threads_hook.get_device', lambda: 'cpu')

    def no_policy():
        raise AssertionError('a deterministic run measured the load')

    monkeypatch.setattr('ssd_plugin.engine.hooks.cpu_threads_hook.CpuThreadPolicy', no_policy)
    threads = torch.get_num_threads()
    runner, hook = _Runner(deterministic=True), CpuThreadsHook()
    hook.before_run(runner)
    hook.after_train_iter(runner, 0)
    hook.after_run(runner)
    assert torch.get_num_threads() == threads
    assert runner.lines == [f'CPU threads: {threads} throughout (a deterministic run)']


def test_own_cpu_time_includes_child_processes():
    """Dataloader workers are the run's own load, not another process's."""
    import subprocess
    import sys

    from ssd_plugin.engine.cpu_threads import descendant_pids

    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])
    try:
        assert child.pid in descendant_pids(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert child.pid not in descendant_pids(os.getpid())


class _CountThreads(BaseModel):
    """Records torch's intra-op thread count at every training step."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.threads = []

    def forward(self, x, mode='loss'):
        self.threads.append(torch.get_num_threads())
        return dict(loss=(self.linear(x) - 1).abs().mean())


@pytest.mark.skipif(torch.cuda.is_available(), reason='the hook is active on CPU runs only')
def test_hook_in_a_real_runner_without_omp_num_threads(tmp_path, monkeypatch):
    """conftest.py sets OMP_NUM_THREADS for the test workers: unset here, the hook acts."""
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1}, raising=False)
    # /proc as the policy reads it: 10 s per reading, this run 1.8 cores, the others 0.1
    readings = [CpuTimes(0, 0, 0), CpuTimes(19, 20, 18)]
    monkeypatch.setattr(
        'ssd_plugin.engine.cpu_threads.read_cpu_times',
        lambda cpus: readings.pop(0) if len(readings) > 1 else readings[0],  # then: no change
    )
    torch.set_num_threads(1)
    model = _CountThreads()
    points = [dict(x=x) for x in torch.randn(8, 4, generator=torch.Generator().manual_seed(0))]
    runner = Runner(
        model=model,
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=points,
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            collate_fn=dict(type='default_collate'),
        ),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        custom_hooks=[dict(type='CpuThreadsHook')],
        default_hooks=dict(checkpoint=None),
        default_scope='mmdet',
        experiment_name=f'cpu_threads_{tmp_path.name}',
    )
    runner.train()
    assert model.threads == [2, 2, 2, 2]  # both cores free: two threads while training
    assert torch.get_num_threads() == 1  # the count before the run, back after it
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'CPU threads: 2 (other processes keep 0.1 of 2 cores busy)' in log
