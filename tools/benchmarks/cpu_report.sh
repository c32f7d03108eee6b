#!/usr/bin/env bash
# The CPU report in one command: this CPU's ISA flags and load, then the whole-detector table
# (SSD300, SSDLite-MobileNetV2, SSDLite320-MobileNetV3; batch 1 and 8; ms per batch): ours in
# PyTorch float32, bf16 where the CPU has it natively, ONNX Runtime float32 and int8, OpenVINO
# float32 and int8 (NNCF), against mmdet's and torchvision's float32, with ratios.
#
#   bash tools/benchmarks/cpu_report.sh            # both families, batch 1 and 8, best of 3
#   bash tools/benchmarks/cpu_report.sh --quick    # SSDLite-MobileNetV2, batch 1: proves it runs
#
# Other options go to bench_inference.py (--families, --batches, --int8-target, --no-openvino,
# --checkpoint CFG CKPT, ...). Python: $PYTHON, else the repository's .venv, else python3.
# A smaller CPU kind's kernels on this CPU (an AVX2-only CPU's, say):
#   bash tools/cpu_kind/run_as.sh avx2 bash tools/benchmarks/cpu_report.sh
# Report figures only from a run whose header shows a load average below 0.5, and label them
# with the flags line: figures from one CPU kind are never another's.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$(dirname "$here")")"
# the report's settings, each unless the command line gives its own (the printed command then
# names each option once)
families=(--families ssd300 ssdlite) repeats=(--repeats 3) warmup=(--warmup 1)
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}"; exit 0 ;;
        --quick) families=() repeats=() warmup=() ;;  # bench_inference.py's tiny settings
        --families|--families=*) families=() ;;
        --repeats|--repeats=*) repeats=() ;;
        --warmup|--warmup=*) warmup=() ;;
    esac
done
defaults=(${families[@]+"${families[@]}"} ${repeats[@]+"${repeats[@]}"} ${warmup[@]+"${warmup[@]}"})
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
echo "# CPU report ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//'), $(nproc) logical CPUs, $(uname -m)"
# the flags that pick the kernels (SIMD width, VNNI, bf16, AMX) as the libraries see them: under
# tools/cpu_kind/run_as.sh, the smaller kind's, with what the mask hides of the hardware
echo "ISA flags: $(cd "$repo" && "$PYTHON" -c 'from ssd_plugin.utils import describe_isa; print(describe_isa())' 2>/dev/null)"
echo "oneDNN cap: ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-unset}"
echo "load: $(uptime)"
cd "$repo" && exec "$PYTHON" "$here/bench_inference.py" --device cpu ${defaults[@]+"${defaults[@]}"} "$@"
