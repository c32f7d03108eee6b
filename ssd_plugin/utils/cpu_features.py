"""The CPU's feature flags as the libraries in this process see them.

The kernel's list (``/proc/cpuinfo``) names the hardware's features. Under
``tools/cpu_kind/run_as.sh`` (CPUID masked by a preloaded library, so that ONNX Runtime, OpenVINO,
oneDNN and PyTorch pick a smaller CPU kind's kernels) the libraries see fewer: the flags that kind
hides are dropped here too, so that choices made from the flags (the int8 target, native bf16)
match the kernels that run.
"""

import os
import os.path as osp
from typing import FrozenSet, Iterable, Optional

#: The ``CPUID_MASK`` kinds of ``tools/cpu_kind/cpuid_mask.c`` and the flag-name prefixes each
#: hides (the CPUID bits that file clears, as the kernel names them).
CPUID_MASK_HIDES = {
    'avx2': ('avx512', 'amx', 'avx_vnni', 'avx_ne_convert', 'avx_ifma', 'avx10'),
    'avx512_core': ('avx512_vnni', 'avx512_bf16', 'avx512_fp16', 'avx512_vbmi', 'avx512_bitalg',
                    'avx512_vpopcntdq', 'avx512_4', 'avx512_vp2intersect', 'amx', 'avx_vnni',
                    'avx_ne_convert', 'avx_ifma', 'avx10'),
}  # fmt: skip
#: The flags that pick the kernels: SIMD width, int8 dot products (VNNI), bf16, AMX (x86, Arm).
KERNEL_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx_vnni', 'avx512_bf16',
                'avx512_fp16', 'amx_bf16', 'amx_int8', 'amx_tile', 'asimd', 'asimddp', 'bf16',
                'i8mm', 'sve')  # fmt: skip


def hardware_flags(cpuinfo: str = '/proc/cpuinfo') -> FrozenSet[str]:
    """The kernel's feature flags of this CPU (x86 ``flags``, Arm ``Features``); empty where
    ``cpuinfo`` cannot be read (not Linux)."""
    if osp.isfile(cpuinfo):
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(('flags', 'Features')):
                    return frozenset(line.split(':', 1)[1].split())
    return frozenset()


def active_cpuid_mask(flags: Iterable[str]) -> Optional[str]:
    """The ``CPUID_MASK`` kind in force in this process, or None.

    In force: the kind is set, ``cpuid_mask.so`` is preloaded and the CPU has CPUID faulting
    (``cpuid_fault`` in ``flags``), without which the library changes nothing.
    """
    kind = os.environ.get('CPUID_MASK', '')
    preloaded = 'cpuid_mask' in os.environ.get('LD_PRELOAD', '')
    return kind if kind in CPUID_MASK_HIDES and preloaded and 'cpuid_fault' in flags else None


def cpu_flags(cpuinfo: str = '/proc/cpuinfo') -> FrozenSet[str]:
    """This CPU's feature flags less those an active CPUID mask hides (see module docstring)."""
    flags = hardware_flags(cpuinfo)
    kind = active_cpuid_mask(flags)
    if kind is None:
        return flags
    return frozenset(f for f in flags if not f.startswith(CPUID_MASK_HIDES[kind]))


def describe_isa(cpuinfo: str = '/proc/cpuinfo') -> str:
    """The kernel-picking flags the libraries see, and what a CPUID mask hides of the hardware."""
    hardware = hardware_flags(cpuinfo)
    seen = cpu_flags(cpuinfo)
    line = ' '.join(f for f in KERNEL_FLAGS if f in seen) or 'none of ' + '/'.join(KERNEL_FLAGS[:6])
    hidden = [f for f in KERNEL_FLAGS if f in hardware - seen]
    if hidden:
        line += (f' (CPUID masked to {active_cpuid_mask(hardware)} by tools/cpu_kind/run_as.sh; '
                 f'the hardware also has {" ".join(hidden)})')  # fmt: skip
    return line
