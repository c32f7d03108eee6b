"""The four sections of ``gpu_report.sh`` in one process (the imports once).

Usage: see ``gpu_report.sh``. ``--device``, ``--quick`` and ``--seed`` go to every section,
``--repeats`` and ``--warmup`` to the three benchmarks (not the parity check). Every section
runs even when one fails; the exit status is 1 then.
"""

import argparse
import sys
import time
import traceback

import bench_head
import bench_inference
import bench_train
import check_device_parity

SECTIONS = (  # title, main, whether it takes --repeats / --warmup
    ('head: loss and post-processing', bench_head.main, True),
    ('whole-detector inference', bench_inference.main, True),
    ('training throughput', bench_train.main, True),
    ('device parity', check_device_parity.main, False),
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='GPU report: every benchmark and the parity check')
    parser.add_argument('--device', default='cuda', choices=['cpu', 'cuda'])
    parser.add_argument('--quick', action='store_true', help="every section's tiny settings")
    parser.add_argument('--seed', type=int, help="every section's seed")
    parser.add_argument('--repeats', type=int, help='timed rounds of each benchmark')
    parser.add_argument('--warmup', type=int, help='warm-up rounds of each benchmark')
    args = parser.parse_args(argv)
    common = ['--device', args.device] + (['--quick'] if args.quick else [])
    common += ['--seed', str(args.seed)] if args.seed is not None else []
    timing = [
        f'--{k}={getattr(args, k)}' for k in ('repeats', 'warmup') if getattr(args, k) is not None
    ]
    print(f'report: {" ".join(common + timing)} '
          f'({time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})')  # fmt: skip
    failed = []
    for title, section, timed in SECTIONS:
        print(f'\n==================== {title} ====================', flush=True)
        try:
            status = section(common + (timing if timed else []))
        except (Exception, SystemExit) as exc:  # the other sections still run
            traceback.print_exc()
            status = getattr(exc, 'code', 1)
        if status:
            print(f'SECTION FAILED: {title}', flush=True)
            failed.append(title)
    print(f'\nreport: {"FAILED sections: " + ", ".join(failed) if failed else "all sections ran"}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
