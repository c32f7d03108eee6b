#!/usr/bin/env bash
# The GPU report in one command: head loss / post-processing, whole-detector inference and
# training throughput against mmdet's and torchvision's SSDs, and CPU-vs-device parity.
#
#   bash tools/benchmarks/gpu_report.sh                      # --device cuda
#   bash tools/benchmarks/gpu_report.sh --device cpu --quick # tiny settings: proves it runs
#
# Also: --seed N (every section), --repeats N / --warmup N (the benchmarks). Python: $PYTHON,
# else the repository's .venv, else python3. Every section runs even when one fails; the exit
# status is 1 then. Host-sync counts of the head (ours vs mmdet and torchvision) are a separate
# command: python tools/benchmarks/count_syncs.py --device cuda
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$(dirname "$here")")"
device=cuda
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --device=*) device="${1#--device=}"; shift ;;
        -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
if [ "$device" = cuda ] && ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "gpu_report.sh: torch.cuda.is_available() is False here; use --device cpu" >&2
    exit 2
fi
cd "$repo" && exec "$PYTHON" "$here/report.py" --device "$device" ${args[@]+"${args[@]}"}
