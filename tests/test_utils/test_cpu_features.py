"""The CPU's flags as this process's libraries see them: the hardware's, less a CPUID mask's."""

import pytest

from ssd_plugin.deploy.quantize import cpu_int8_target
from ssd_plugin.utils import active_cpuid_mask, cpu_flags, describe_isa

HARDWARE = ('fpu avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 amx_tile amx_int8 '
            'avx_vnni cpuid_fault')  # fmt: skip


@pytest.fixture
def cpuinfo(tmp_path):
    path = tmp_path / 'cpuinfo'
    path.write_text(f'processor\t: 0\nmodel name\t: test\nflags\t\t: {HARDWARE}\n')
    return str(path)


def masked(monkeypatch, kind, preload='/repo/build/cpu_kind/cpuid_mask.so'):
    monkeypatch.setenv('CPUID_MASK', kind)
    monkeypatch.setenv('LD_PRELOAD', preload)


def test_no_mask_gives_the_hardware_flags(cpuinfo, monkeypatch):
    monkeypatch.delenv('CPUID_MASK', raising=False)
    assert cpu_flags(cpuinfo) == frozenset(HARDWARE.split())
    assert cpu_int8_target(cpu_flags(cpuinfo)) == 'amx'
    assert '(CPUID masked' not in describe_isa(cpuinfo)


def test_avx2_mask_hides_avx512_vnni_bf16_and_amx(cpuinfo, monkeypatch):
    masked(monkeypatch, 'avx2')
    assert cpu_flags(cpuinfo) == {'fpu', 'avx2', 'fma', 'cpuid_fault'}
    assert cpu_int8_target(cpu_flags(cpuinfo)) == 'avx2'
    line = describe_isa(cpuinfo)
    assert line.startswith('avx2 fma (CPUID masked to avx2 by tools/cpu_kind/run_as.sh; ')
    assert line.endswith('the hardware also has avx512f avx512bw avx512_vnni avx_vnni '
                         'avx512_bf16 avx512_fp16 amx_int8 amx_tile)')  # fmt: skip


def test_avx512_core_mask_keeps_avx512_without_vnni_or_bf16(cpuinfo, monkeypatch):
    masked(monkeypatch, 'avx512_core')
    assert cpu_flags(cpuinfo) == {'fpu', 'avx2', 'fma', 'avx512f', 'avx512bw', 'cpuid_fault'}
    assert cpu_int8_target(cpu_flags(cpuinfo)) == 'avx2'  # no VNNI: pair sums saturate


@pytest.mark.parametrize('kind, preload, faulting', [
    ('avx2', '', True),  # the library is not loaded
    ('avx2', '/repo/build/cpu_kind/cpuid_mask.so', False),  # no CPUID faulting: no effect
    ('avx10', '/repo/build/cpu_kind/cpuid_mask.so', True),  # not a kind (the library exits)
])  # fmt: skip
def test_a_mask_not_in_force_changes_nothing(cpuinfo, monkeypatch, kind, preload, faulting):
    masked(monkeypatch, kind, preload)
    flags = set(HARDWARE.split()) - (set() if faulting else {'cpuid_fault'})
    assert active_cpuid_mask(flags) is None
    if faulting:
        assert cpu_flags(cpuinfo) == frozenset(HARDWARE.split())


def test_unreadable_cpuinfo_has_no_flags(tmp_path):
    assert cpu_flags(str(tmp_path / 'missing')) == frozenset()
    assert describe_isa(str(tmp_path / 'missing')).startswith('none of avx2/')
