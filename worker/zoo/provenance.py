"""Which weights a zoo holds, and what trained them.

The plan's recipes are seeded, but the same recipe trains to the same bits only on the same software
and CPU kernels: of three builds on this project's 2-core machines, the thirteenth and fifteenth
sessions' are bit-identical and the fourteenth's differs (BENCHMARKS.md, "The zoo"). So each manifest
entry records the machine that trained it, and the benchmarks name the build they measured by a hash
of the weights themselves, and the machine they ran on (their seconds depend on it).

Three kinds of machine gave three sets of weights (Intel AVX-512, AMD AVX-512, AMD AVX2), and which
rgb target a build missed followed the kind. ``pin_kernels`` takes the kind out with the training
recipe's help: it sends torch's own kernels and oneDNN's to their AVX2 code paths, which every x86-64
machine of the last decade has, and MKL's matrix products to its COMPATIBLE branch (SSE2 without the
approximate reciprocals), the one MKL documents for the same results on Intel and non-Intel CPUs (its
ISA branches exist only on Intel CPUs; elsewhere it quietly runs its AUTO branch). That was not
enough: pinned so, an Intel Xeon and an AMD EPYC trained different bits (the thirty-first and
thirty-second sessions). Of the ops training uses, only the square root changed its bits under
QEMU's emulated CPUs: the unfused Adam takes it from MKL's vector library, which dispatches on the CPU
whatever the branch. ``train_classifier`` now uses the fused Adam, and with it emulated Intel and AMD
CPUs train what the host trains (``bench/kernel_pin.py
--cpu-model``; BENCHMARKS.md "The zoo"). The price: resnet18 trains about half as fast on an AVX-512
machine, having lost AVX-512 (``bench/kernel_pin.py``).
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

CPUINFO = Path("/proc/cpuinfo")
# the libraries' own switches; each is read when the library first computes, so set before any op
PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}


class KernelPinError(RuntimeError):
    """torch runs other kernels than the pinned ones: it had computed already, or the CPU lacks AVX2."""


def pin_kernels() -> None:
    """Make this process train with the pinned code paths of torch, oneDNN and MKL, whatever the CPU offers."""
    before = {name: os.environ.get(name) for name in PINNED_KERNELS}
    os.environ.update(PINNED_KERNELS)
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        for name, value in before.items():  # a refused pin leaves no switch for child processes to inherit
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
        raise KernelPinError(
            f"torch runs its {capability} kernels, not the pinned AVX2 ones: this CPU lacks AVX2, or torch "
            "had computed before the pin"
        )


def pinned_kernels() -> dict[str, str]:
    """The kernel switches set in this process's environment (empty: each library picks the CPU's best)."""
    return {name: os.environ[name] for name in PINNED_KERNELS if name in os.environ}


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
    number of threads its reductions use, and the kernel switches set (``pin_kernels``)."""
    return {
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "kernels": pinned_kernels(),
        "threads": torch.get_num_threads(),
    }
