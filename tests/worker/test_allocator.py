"""Keeping freed memory (worker/allocator.py): fewer page faults, the same numbers.

Each case runs in a child process, because glibc's settings cannot be undone within one.
"""

from __future__ import annotations

import json
import mmap
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# modes: "default" leaves glibc alone; "kept" is the worker's setting; "returned" pins glibc's mmap
# threshold at its 128 KB starting value, so every freed buffer goes back to the kernel. glibc's
# default drifts between the two: its dynamic threshold rises to the size of the largest block freed,
# and whether later runs then fault depends on the heap's layout. One CI machine saw 0 faults a run
# by default, this one 15,000-52,000; only the pinned case is the same everywhere.
CHILD = """
import ctypes, ctypes.util, hashlib, json, mmap, resource, sys
import torch
from worker.allocator import _M_MMAP_THRESHOLD, retain_freed_memory
from worker.saliency.config import SaliencyConfig
from worker.saliency.engine import compute_class_maps

def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

kept = None
if sys.argv[1] == "kept":
    kept = retain_freed_memory()
elif sys.argv[1] == "returned":
    ctypes.CDLL(ctypes.util.find_library("c")).mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
# does this kernel count minor faults at all? touch 1,024 fresh pages
before, fresh = minor_faults(), mmap.mmap(-1, 1024 * mmap.PAGESIZE)
for page in range(1024):
    fresh[page * mmap.PAGESIZE] = 1
counted = minor_faults() - before >= 512
torch.set_num_threads(1)
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(32 * 28 * 28, 10)
)
config = SaliencyConfig(iterations=4, refine_iterations=1)
compute_class_maps(model, (1, 28, 28), 10, config)  # the first run maps its buffers in either way
faults = []
for _ in range(4):
    before = minor_faults()
    maps = compute_class_maps(model, (1, 28, 28), 10, config)
    faults.append(minor_faults() - before)
digest = hashlib.sha256(b"".join(m.raw.numpy().tobytes() for m in maps)).hexdigest()
print(json.dumps({"kept": kept, "counted": counted, "faults": min(faults), "maps": digest}))
"""


@cache
def _child(mode: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_kept_memory_changes_no_map() -> None:
    assert _child("kept")["kept"] is True
    assert _child("kept")["maps"] == _child("default")["maps"]


def test_kept_memory_saves_the_page_faults_of_memory_given_back() -> None:
    returned, kept = _child("returned"), _child("kept")
    if not returned["counted"]:
        pytest.skip("touching 1,024 fresh pages counted under 512 minor faults here (no counting, or huge pages)")
    # later runs of the same steps, the quietest of four compared: with memory given back each run
    # faults its activations in again (16 MB, 4,096 pages of 4 KB, at the least; 210,000 faults here), kept
    # memory serves them from the heap (0-2,000 here and on CI so far). Under one buffer's pages also
    # tells kept memory from glibc's default where the default faults (15,600 here)
    buffer_pages = 16 * 1024 * 1024 // mmap.PAGESIZE
    assert int(kept["faults"]) < buffer_pages <= int(returned["faults"])
    assert int(kept["faults"]) * 5 < int(returned["faults"])
    assert returned["maps"] == kept["maps"]


def test_retaining_is_idempotent() -> None:
    script = "from worker.allocator import retain_freed_memory as r; print(r(), r())"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True"]
