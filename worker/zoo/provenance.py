"""Which weights a zoo holds, and what trained them.

The plan's recipes are seeded, but the same recipe trains to the same bits only on the same software
and CPU kernels: of three builds on this project's 2-core machines, the thirteenth and fifteenth
sessions' are bit-identical and the fourteenth's differs (BENCHMARKS.md, "The zoo"). So each manifest
entry records the machine that trained it, and the benchmarks name the build they measured by a hash
of the weights themselves, and the machine they ran on (their seconds depend on it).
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

CPUINFO = Path("/proc/cpuinfo")


def build_hash(models: Iterable[Mapping[str, Any]]) -> str:
    """A 12-hex-digit name of a set of manifest entries' weights: their files' sha256s, order-free."""
    return hashlib.sha256("".join(sorted(m["sha256"] for m in models)).encode()).hexdigest()[:12]


def cpu_name(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def this_machine() -> dict[str, Any]:
    """What decides trained bits besides the recipe, and a benchmark's seconds besides the code: torch's
    version, the CPU, the vector kernels torch dispatches to on it (``AVX2``, ``AVX512``, ...) and the
    number of threads its reductions use."""
    return {
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
