"""What this machine computes with: the CPU's name and the instruction set TensorFlow's kernels
(oneDNN) use on it, read from /proc/cpuinfo without importing TensorFlow.

Results are byte-identical on one kind of CPU, not across kinds (AVX2 and AVX-512 kernels sum
in other orders), so every MLflow run and every bench result records the instruction set."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import psutil

# Most capable first: the first whose flags the CPU has names it (x86; Arm's bf16 as it reads there).
INSTRUCTION_SETS = (
    ("AMX", {"amx_bf16"}),
    ("AVX-512 with bf16", {"avx512f", "avx512_bf16"}),
    ("AVX-512", {"avx512f"}),
    ("AVX2", {"avx2"}),
    ("AVX", {"avx"}),
    ("Arm with bf16", {"bf16", "asimd"}),
    ("Arm NEON", {"asimd"}),
)


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return ""


def cpu_flags() -> set[str]:
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_name() -> str:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def instruction_set() -> str:
    """ "AVX2", "AVX-512", "AVX-512 with bf16", "AMX", ...: the widest the CPU has."""
    flags = cpu_flags()
    return next((name for name, needs in INSTRUCTION_SETS if needs <= flags), platform.machine())


def bfloat16_flag() -> str | None:
    """The CPU flag that makes bfloat16 native here (AMX, avx512_bf16, Arm's bf16), or None."""
    flags = cpu_flags()
    return next((flag for flag in ("amx_bf16", "avx512_bf16", "bf16") if flag in flags), None)


def describe() -> str:
    """One line: "AMD EPYC (AVX-512 with bf16), 2 cores, 24 GiB, Python 3.11.7"."""
    return (
        f"{cpu_name()} ({instruction_set()}), {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
