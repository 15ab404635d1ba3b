"""machine.py: the CPU's name and instruction set, read from /proc/cpuinfo's text."""

from __future__ import annotations

import pytest

from mnist_pipeline import machine

AMD_ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16\n"
INTEL_SPR = "model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
ZEN3 = "model name\t: AMD EPYC 7R13 Processor\nflags\t\t: fpu avx avx2 fma\n"
SKYLAKE = "model name\t: Intel(R) Xeon(R) Platinum 8175M\nflags\t\t: avx avx2 avx512f avx512bw\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve bf16 i8mm\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize(
    "cpuinfo, name, isa, bf16",
    [
        (AMD_ZEN4, "AMD EPYC 9R14", "AVX-512 with bf16", "avx512_bf16"),
        (INTEL_SPR, "Intel(R) Xeon(R) Platinum 8488C", "AMX", "amx_bf16"),
        (ZEN3, "AMD EPYC 7R13 Processor", "AVX2", None),
        (SKYLAKE, "Intel(R) Xeon(R) Platinum 8175M", "AVX-512", None),
        (GRAVITON3, None, "Arm with bf16", "bf16"),
    ],
)
def test_the_instruction_set_and_native_bfloat16_of_each_kind(monkeypatch, cpuinfo, name, isa, bf16):
    monkeypatch.setattr(machine, "_cpuinfo", lambda: cpuinfo)
    assert machine.instruction_set() == isa and machine.bfloat16_flag() == bf16
    if name:
        assert machine.cpu_name() == name
    assert machine.describe().startswith(f"{machine.cpu_name()} ({isa}), ")


def test_this_machine_is_described_with_its_instruction_set():
    assert f"({machine.instruction_set()})" in machine.describe() and " cores, " in machine.describe()
