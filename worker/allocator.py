"""Keep freed tensor memory in the process instead of handing it back to the kernel (glibc only).

A CPU audit allocates and frees the same activation buffers, 1-16 MB each, at every optimisation
step. glibc serves blocks that large with ``mmap`` and unmaps them when they are freed (and trims the
heap's top above a threshold), so every step faults its buffers' pages in again and the kernel zeroes
them. In a process that audits model after model (``bench/allocator_speed.py``: two rounds of eight
architectures, both detectors) glibc faulted 4.0-8.7 million pages in, 0.2 million with the memory
kept; in two such runs on an Intel Xeon our detector's total time fell 5-8% (9-22% on the small
CNNs), MM-BD's 2-4%. On an AMD EPYC glibc faulted 1.1-2.6 million pages in by default and the two
settings were equally fast (totals within 4% of each other; bench/MEASUREMENT_LOG.md, "Freed memory kept").
The cost is that the process keeps its peak heap until it exits, which a worker reuses at the next
step or audit anyway.

PyTorch's CPU tuning guide suggests swapping in jemalloc or TCMalloc for the same reason; two
``mallopt`` calls do it for blocks of these sizes without another native dependency. Elsewhere
(macOS, musl) this does nothing. Numbers do not change: PyTorch aligns every CPU tensor to 64 bytes
whichever way glibc found the memory, and the maps are the same bit for bit (tests/worker/test_allocator.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# the largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2): blocks up to 32 MB come from
# the heap and are reused; larger ones are still mapped and unmapped
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024  # never give back less than 1 GB of free heap top

_retained = False


def retain_freed_memory() -> bool:
    """Tune this process's glibc malloc so freed blocks up to 32 MB are reused, not returned; idempotent.

    Returns whether the setting is in force (False where the C library has no ``mallopt``).
    """
    global _retained
    if _retained:
        return True
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is None:
        return False
    _retained = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _retained
