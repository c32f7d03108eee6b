"""What every benchmark here shares: the run's header, interleaved best-of-N timing, tables.

Rules the scripts follow (so figures from different runs compare):

- the header names the exact command, the load average before the run (a WARNING above 0.5:
  figures from a loaded machine are not to be reported), torch's threads, the device and the
  versions of everything timed;
- implementations are interleaved (``a b c a b c``) after warm-up rounds, and each reports its
  best of ``repeats`` calls, so a burst of load hits all of them alike and the best call is the
  least disturbed one;
- ratios are ``peer / ours``: above 1 means ours is faster.
"""

import argparse
import importlib
import os
import os.path as osp
import platform
import shlex
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ssd_plugin.utils import describe_isa

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LOAD_LIMIT = 0.5
VERSIONED = (
    'torch',
    'torchvision',
    'mmdet',
    'mmcv',
    'mmengine',
    'onnxruntime',
    'openvino',
    'nncf',
    'ssd_plugin',
)


def mmdet_config(relpath: str) -> str:
    """Path of one of mmdet's packaged configs (``.mim/configs``), e.g. ``ssd/ssd300_coco.py``."""
    import mmdet

    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', relpath)


def build_detector(model_cfg) -> torch.nn.Module:
    """A detector with PyTorch's default init (an ``init_cfg`` may name a download).

    mmdet's ``L2Norm`` allocates its weight with ``torch.Tensor(n)`` and leaves it to
    ``init_weights``: without it the weight is whatever memory held (NaN losses, NaN scores), so
    it gets the value ``init_weights`` gives it, its ``scale``.
    """
    from mmdet.models.necks.ssd_neck import L2Norm
    from mmdet.registry import MODELS

    model = MODELS.build(model_cfg)
    for module in model.modules():
        if isinstance(module, L2Norm):
            torch.nn.init.constant_(module.weight, module.scale)
    return model


def repo_config(name: str) -> str:
    """Path of a config of this repository (``configs/<name>``)."""
    return osp.join(REPO, 'configs', name)


def load_warning(load1: float, limit: float = LOAD_LIMIT) -> Optional[str]:
    """The warning to print when the 1-minute load average says the machine is busy, else None."""
    if load1 <= limit:
        return None
    return (
        f'WARNING: 1-minute load average {load1:.2f} > {limit}: other processes share the CPU; '
        'these figures are not to be reported (rerun on an idle machine)'
    )


def versions() -> Dict[str, str]:
    """Versions of the packages the benchmarks time (``-`` where one is not installed)."""
    found = {'python': platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = getattr(importlib.import_module(name), '__version__', '?')
        except ImportError:
            found[name] = '-'
    return found


def cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_with_quick(parser: argparse.ArgumentParser, argv, **quick) -> argparse.Namespace:
    """Parse ``argv``; with ``--quick`` the ``quick`` values replace the defaults (options given
    on the command line still win)."""
    args, _ = parser.parse_known_args(argv)
    if args.quick:
        parser.set_defaults(**quick)
    return parser.parse_args(argv)


def check_device(device: str) -> None:
    """Fail clearly when CUDA is asked for and absent."""
    if device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: torch.cuda.is_available() is False on this machine')


def print_header(
    title: str, device: str, script: Optional[str] = None, argv: Optional[Sequence[str]] = None
) -> None:
    """The command (``script`` with ``argv``; default: this process's), load average (and its
    WARNING), threads, device and versions of this run."""
    load = os.getloadavg()
    script = sys.argv[0] if script is None else script
    args = sys.argv[1:] if argv is None else list(argv)
    print(f'# {title}')
    print(f'command: {shlex.join(["python", osp.relpath(script, REPO)] + args)}')
    print(f'load average before the run (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}')
    warning = load_warning(load[0])
    if warning:
        print(warning)
    print(f'torch threads: {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}), '
          f'{os.cpu_count()} logical CPUs: {cpu_name()}')  # fmt: skip
    print(f'ISA flags: {describe_isa()}')
    if device == 'cuda':
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        print(f'device: cuda ({torch.cuda.get_device_name()}), TF32 matmul {tf32[0]}, '
              f'cudnn {tf32[1]}')  # fmt: skip
    else:
        print('device: cpu')
    print('versions: ' + ', '.join(f'{k} {v}' for k, v in versions().items()))
    sys.stdout.flush()


def begin(title: str, device: str, script: str, argv: Optional[Sequence[str]]) -> None:
    """Start a benchmark: check the device, enter mmdet's registry scope, print the header."""
    from mmengine.registry import init_default_scope

    check_device(device)
    init_default_scope('mmdet')
    print_header(title, device, script, argv)


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on CPU)."""
    return torch.cuda.synchronize if device == 'cuda' else (lambda: None)


def interleaved_best(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
) -> Tuple[Dict[str, float], Dict[str, Any]]:
    """Best milliseconds of each function over ``repeats`` interleaved rounds.

    Each round calls every function once, in order (``a b c a b c``); ``warmup`` untimed rounds
    come first.

    Returns:
        The best time per name in ms, and each function's last result.
    """
    if repeats < 1:
        raise ValueError(f'repeats must be >= 1, got {repeats}')
    best = {name: float('inf') for name in fns}
    results: Dict[str, Any] = {}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            sync()
            start = clock()
            results[name] = fn()
            sync()
            if round_ >= warmup:
                best[name] = min(best[name], (clock() - start) * 1e3)
    return best, results


def ratio(peer: Optional[float], ours: Optional[float]) -> str:
    """``peer / ours`` as ``1.23x`` (``-`` when either is missing)."""
    if peer is None or ours is None or ours <= 0:
        return '-'
    return f'{peer / ours:.2f}x'


def ms(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.1f}'


def print_table(title: str, header: Sequence[str], rows: List[Sequence[Any]]) -> None:
    """A markdown table (``title`` above it)."""
    print(f'\n{title}\n')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for row in rows:
        print('| ' + ' | '.join(str(v) for v in row) + ' |')
    sys.stdout.flush()


def compare_detections(
    first: Sequence[Tuple[Tensor, Tensor, Tensor]],
    second: Sequence[Tuple[Tensor, Tensor, Tensor]],
    score_tol: float,
) -> Dict[str, float]:
    """How far two sets of per-image detections ``(boxes, scores, labels)`` are apart.

    Ties may come in any order, so scores are compared sorted, labels as multisets, and each
    box of ``first`` against the closest box of ``second`` with its label and a score within
    ``score_tol``.

    Returns:
        ``images``, ``same_count`` and ``same_labels`` (image counts), ``max_score_diff`` and
        ``max_box_diff`` (``inf`` when a box has no counterpart).
    """
    out = dict(images=len(first), same_count=0, same_labels=0, max_score_diff=0.0,
               max_box_diff=0.0)  # fmt: skip
    for (boxes_a, scores_a, labels_a), (boxes_b, scores_b, labels_b) in zip(first, second):
        boxes_a, scores_a, labels_a = (t.detach().cpu().float() for t in (boxes_a, scores_a,
                                                                          labels_a))  # fmt: skip
        boxes_b, scores_b, labels_b = (t.detach().cpu().float() for t in (boxes_b, scores_b,
                                                                          labels_b))  # fmt: skip
        out['same_count'] += len(scores_a) == len(scores_b)
        out['same_labels'] += torch.equal(labels_a.sort().values, labels_b.sort().values)
        n = min(len(scores_a), len(scores_b))
        if n:
            diff = (
                scores_a.sort(descending=True).values[:n]
                - scores_b.sort(descending=True).values[:n]
            )
            out['max_score_diff'] = max(out['max_score_diff'], float(diff.abs().max()))
        if len(scores_a):
            dist = (boxes_a[:, None] - boxes_b[None]).abs().amax(-1)
            same = (labels_a[:, None] == labels_b[None]) & (
                (scores_a[:, None] - scores_b[None]).abs() <= score_tol)  # fmt: skip
            dist = dist.masked_fill(~same, float('inf'))
            nearest = (
                dist.min(1).values if len(scores_b) else torch.full_like(scores_a, float('inf'))
            )
            out['max_box_diff'] = max(out['max_box_diff'], float(nearest.max()))
    return out


def detections_agree(diff: Dict[str, float], score_tol: float, box_tol: float) -> bool:
    """Whether :func:`compare_detections`' result is within the tolerances everywhere."""
    counts_agree = diff['same_count'] == diff['same_labels'] == diff['images']
    return counts_agree and diff['max_score_diff'] <= score_tol and diff['max_box_diff'] <= box_tol


def describe(diff: Dict[str, float]) -> str:
    n = diff['images']
    return (f'counts {diff["same_count"]}/{n}, labels {diff["same_labels"]}/{n}, score diff <= '
            f'{diff["max_score_diff"]:.1e}, box diff <= {diff["max_box_diff"]:.1e} px')  # fmt: skip


def ort_session_options():
    """ONNX Runtime session options for interleaved timing: torch's thread count, no spinning.

    ONNX Runtime's pool threads spin after a run by default: interleaved, they would take the
    cores from the call that follows.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    return options
