"""How many intra-op threads a CPU run gives torch: the cores other processes leave free.

torch starts one OpenMP thread per core. When another process keeps one of them busy, the
operator that needs all threads waits at every barrier for the thread that lost its core, and a
training iteration takes several times longer than with fewer threads (on two cores, one busy:
3.4x the idle time with two threads, against 1.3x with one). One thread on an idle machine is
slower, though, so no fixed count fits both. :class:`CpuThreadPolicy` measures instead: from
``/proc/stat`` (per-CPU busy time, on the CPUs this process may run on) minus the CPU time of
this process and its children (its dataloader workers), it knows how many cores the *other*
processes keep busy, and gives torch the rest. A core counts as taken once others use more than
``margin`` of it. The run's own workers do not count: measured on the demo config (one worker,
two cores, idle machine), two threads beside them take 0.24 s/iter, one thread 0.35.

Under distributed CPU training, the ranks on one machine share the free cores: the other ranks
run the same policy and use about what this one uses, so that much is not counted as taken.
"""

import math
import os
import time
from typing import Callable, List, NamedTuple, Optional

import torch

__all__ = ['CpuThreadPolicy', 'CpuTimes', 'descendant_pids', 'read_cpu_times', 'threads_for']

#: Fraction of a core other processes may use before it counts as taken.
DEFAULT_MARGIN = 0.3


class CpuTimes(NamedTuple):
    """Cumulative CPU times, in seconds, at one instant."""

    busy: float  # summed over the usable CPUs: user, nice, system, irq, softirq, steal
    elapsed: float  # summed over the usable CPUs: busy + idle + iowait
    own: float  # this process and its descendants, all threads: user + system


def usable_cpus() -> List[int]:
    """The CPUs this process may run on."""
    if hasattr(os, 'sched_getaffinity'):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _process_time(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (the 12th and 13th fields after its name)."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


def descendant_pids(pid: int) -> List[int]:
    """Live child processes of ``pid``, recursively (``/proc/<pid>/task/*/children``)."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f'/proc/{parent}/task')
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f'/proc/{parent}/task/{tid}/children') as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found += children
            stack += children
    return found


def read_cpu_times(cpus: List[int]) -> Optional[CpuTimes]:
    """Read :class:`CpuTimes` from ``/proc`` (Linux); None where it cannot be read."""
    tick = os.sysconf('SC_CLK_TCK')
    wanted = {f'cpu{i}' for i in cpus}
    busy = elapsed = 0
    try:
        with open('/proc/stat') as f:
            for line in f:
                name, *fields = line.split()
                if name not in wanted:
                    continue
                user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[:8])
                used = user + nice + system + irq + softirq + steal
                busy += used
                elapsed += used + idle + iowait
        own = _process_time(os.getpid())
        for child in descendant_pids(os.getpid()):
            try:
                own += _process_time(child)
            except OSError:  # exited meanwhile
                pass
    except (OSError, ValueError, IndexError):
        return None
    return CpuTimes(busy / tick, elapsed / tick, own / tick)


def threads_for(
    cores: int,
    others_busy: float,
    own_busy: float,
    processes: int = 1,
    margin: float = DEFAULT_MARGIN,
) -> int:
    """Intra-op threads for one of ``processes`` ranks sharing ``cores`` cores.

    Args:
        cores (int): Cores this process may use.
        others_busy (float): Cores' worth of CPU time used by every process but this one.
        own_busy (float): Cores' worth used by this process; the other ranks are assumed to use
            as much, and so are not counted as taken from the ranks' share.
        processes (int): Ranks on this machine that share the cores.
        margin (float): Use of a core by others below which it still counts as free.

    Returns:
        int: Between 1 and ``cores // processes`` (at least 1).
    """
    external = max(0.0, others_busy - (processes - 1) * own_busy)
    taken = max(0, math.ceil(external - margin))
    return max(1, (cores - taken) // processes)


class CpuThreadPolicy:
    """Set ``torch.set_num_threads`` from the cores other processes leave free.

    Each :meth:`update` measures over the time since the previous one (the first over a short
    sleep) and changes torch's thread count when the measure says so: at once to fewer threads
    (an oversubscribed core stalls every iteration), to more only when two measures in a row
    agree (the load of a shared machine comes and goes, and each wrong raise costs a stall).

    Args:
        processes (int): Ranks sharing this machine's cores. Defaults to ``LOCAL_WORLD_SIZE``
            (set by torchrun) or 1.
        margin (float): See :func:`threads_for`.
        read (Callable): Returns :class:`CpuTimes` or None (tests replace it).
    """

    def __init__(
        self,
        processes: Optional[int] = None,
        margin: float = DEFAULT_MARGIN,
        read: Optional[Callable[[], Optional[CpuTimes]]] = None,
    ) -> None:
        cpus = usable_cpus()
        self.cores = len(cpus)
        self.processes = processes or int(os.environ.get('LOCAL_WORLD_SIZE', 1))
        self.margin = margin
        self._read = read or (lambda: read_cpu_times(cpus))
        self._last = self._read()
        self._measured = self._raise_pending = False
        self.others_busy = 0.0  # of the last measure, for the log

    def update(self, first_sample_s: float = 0.25) -> Optional[int]:
        """Measure and set torch's threads; returns the new count, or None when unchanged.

        Args:
            first_sample_s (float): Seconds to sleep for the first measure when no earlier
                reading exists or it is less than that old.
        """
        if self._last is None:
            return None  # no /proc: keep torch's default
        now = self._read()
        if now is None:
            return None
        if now.elapsed - self._last.elapsed < first_sample_s * self.cores:
            time.sleep(first_sample_s)
            now = self._read()
        span = (now.elapsed - self._last.elapsed) / self.cores  # seconds of wall time
        if span <= 0:
            return None
        own = (now.own - self._last.own) / span
        self.others_busy = max(0.0, (now.busy - self._last.busy) / span - own)
        self._last = now
        threads = threads_for(self.cores, self.others_busy, own, self.processes, self.margin)
        current = torch.get_num_threads()
        first, self._measured = not self._measured, True
        if threads > current and not first and not self._raise_pending:
            self._raise_pending = True  # raised at the next measure if that agrees
            return None
        self._raise_pending = False
        if threads == current:
            return None
        torch.set_num_threads(threads)
        return threads
