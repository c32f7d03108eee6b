#!/usr/bin/env bash
# Run a command as if on a smaller x86-64 CPU kind: every library in it (ONNX Runtime, OpenVINO,
# oneDNN, PyTorch) picks that kind's kernels, which then run natively on this CPU.
#
#   bash tools/cpu_kind/run_as.sh avx2 COMMAND [ARGS...]          # no AVX512, VNNI, bf16 or AMX
#   bash tools/cpu_kind/run_as.sh avx512_core COMMAND [ARGS...]   # AVX512 without VNNI/bf16/AMX
#
# CPUID is masked by cpuid_mask.c (built here on first use into build/cpu_kind/ with cc), where
# the CPU offers CPUID faulting (the `cpuid_fault` flag); oneDNN and ATen are also capped through
# their environment variables, which is all that applies where it does not (said on stderr).
# CPUID_MASK_REQUIRED=1 makes a missing CPUID faulting an error (exit status 3) instead.
set -eu
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$(dirname "$here")")"
kind="${1:?usage: run_as.sh avx2|avx512_core COMMAND [ARGS...]}"
shift
case "$kind" in
    avx2) onednn=AVX2 aten=avx2 ;;
    avx512_core) onednn=AVX512_CORE aten=avx512 ;;
    *) echo "run_as.sh: unknown CPU kind '$kind' (avx2, avx512_core)" >&2; exit 2 ;;
esac
lib="$repo/build/cpu_kind/cpuid_mask.so"
if [ ! -e "$lib" ] || [ "$here/cpuid_mask.c" -nt "$lib" ]; then
    mkdir -p "$(dirname "$lib")"
    "${CC:-cc}" -O2 -shared -fPIC -o "$lib.tmp" "$here/cpuid_mask.c" -ldl && mv "$lib.tmp" "$lib" \
        || rm -f "$lib" "$lib.tmp"
fi
export CPUID_MASK="$kind" ONEDNN_MAX_CPU_ISA="$onednn" ATEN_CPU_CAPABILITY="$aten"
if [ ! -e "$lib" ]; then
    how="no C compiler: only oneDNN and ATen capped, ONNX Runtime sees the real CPU"
elif ! grep -qw cpuid_fault /proc/cpuinfo 2>/dev/null; then
    how="no cpuid_fault on this CPU: only oneDNN and ATen capped, ONNX Runtime sees the real CPU"
else
    how="CPUID masked for every library"
fi
if [ -e "$lib" ]; then
    export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"
fi
echo "run_as.sh: CPU kind $kind ($how; ONEDNN_MAX_CPU_ISA=$onednn ATEN_CPU_CAPABILITY=$aten)" >&2
exec "$@"
