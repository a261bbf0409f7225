"""A zoo build's name (the hash of its weights), the training machine each manifest entry records, and
the kernel pin that makes the weights the same across kinds of machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from worker.zoo.provenance import (
    CPUINFO,
    PINNED_KERNELS,
    build_hash,
    cpu_name,
    this_machine,
)

HAS_AVX2 = CPUINFO.is_file() and " avx2" in CPUINFO.read_text()


def test_build_hash_names_the_set_of_weights_whatever_their_order() -> None:
    models = [{"id": "a", "sha256": "0" * 64}, {"id": "b", "sha256": "1" * 64}]
    name = build_hash(models)
    assert len(name) == 12 and int(name, 16) >= 0
    assert build_hash(list(reversed(models))) == name
    assert build_hash([models[0], {"id": "b", "sha256": "2" * 64}]) != name  # one retrained model: a new build
    assert build_hash(models[:1]) != name


def test_cpu_name_reads_proc_cpuinfo_and_falls_back(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\n")
    assert cpu_name(cpuinfo) == "AMD EPYC 9B14"
    assert cpu_name(tmp_path / "missing") != ""  # platform's answer, or "unknown"


def test_this_machine_records_what_decides_bits_and_seconds() -> None:
    machine = this_machine()
    assert machine["torch"] == torch.__version__
    assert machine["threads"] == torch.get_num_threads()
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and machine["cpu"]


@pytest.mark.skipif(not HAS_AVX2, reason="the pin needs a CPU with AVX2")
def test_a_fresh_process_pinned_before_its_first_op_runs_and_records_the_pinned_kernels() -> None:
    script = (
        "import json, torch\n"
        "from worker.zoo.provenance import pin_kernels, this_machine\n"
        "pin_kernels()\n"
        "torch.nn.functional.conv2d(torch.ones(1, 3, 8, 8), torch.ones(4, 3, 3, 3))\n"
        "print(json.dumps(this_machine()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    machine = json.loads(done.stdout)
    assert machine["cpu_capability"] == "AVX2"
    assert machine["kernels"] == PINNED_KERNELS


def test_a_pin_after_torch_chose_other_kernels_is_refused() -> None:
    """In a fresh process told to run torch's DEFAULT kernels, which every CPU has, and computing before
    the pin: so the refusal is tested on every host, an AVX2-only one included (there the CPU's own
    kernels are the pinned ones, and a pin in this process would succeed)."""
    script = (
        "import json, os, torch\n"
        "from worker.zoo.provenance import PINNED_KERNELS, KernelPinError, pin_kernels\n"
        "torch.ones(2, 2).sum()\n"  # torch chooses its kernels at its first op
        "try:\n"
        "    pin_kernels()\n"
        "    refusal = None\n"
        "except KernelPinError as exc:\n"
        "    refusal = str(exc)\n"
        "print(json.dumps({'refusal': refusal, 'env': {n: os.environ.get(n) for n in PINNED_KERNELS}}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in PINNED_KERNELS}
    env.update(ATEN_CPU_CAPABILITY="default", MKL_CBWR="AUTO")  # ONEDNN_MAX_CPU_ISA left unset
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True, env=env
    )
    result = json.loads(done.stdout)
    assert result["refusal"] is not None and "torch runs its DEFAULT kernels, not the pinned AVX2" in result["refusal"]
    # a refused pin leaves the switches as they were, so no child process inherits half a pin
    assert result["env"] == {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": None, "MKL_CBWR": "AUTO"}


PINNED_TRAINING = (
    "import hashlib, torch\n"
    "from worker.zoo.provenance import pin_kernels\n"
    "pin_kernels()\n"
    "from worker.zoo.train import train_classifier\n"
    "g = torch.Generator().manual_seed(0)\n"
    "x, y = torch.rand(128, 1, 28, 28, generator=g), torch.randint(0, 10, (128,), generator=g)\n"
    "net = train_classifier('small_cnn', x, y, epochs=1, batch_size=32, test=(x[:32], y[:32])).net\n"
    "print(hashlib.sha256(b''.join(v.numpy().tobytes() for v in net.state_dict().values())).hexdigest())\n"
)
EMULATED_CPUS = ("Cascadelake-Server-v3", "EPYC-Rome-v2")  # an Intel Xeon and an AMD EPYC, both with AVX2


@pytest.mark.slow
@pytest.mark.skipif(not HAS_AVX2, reason="the pin needs a CPU with AVX2")
def test_pinned_training_gives_emulated_intel_and_amd_cpus_this_machines_weights() -> None:
    """torch, oneDNN and MKL choose code by the CPU's vendor, features and caches. QEMU's user-mode
    emulator shows the process another CPU's and computes every instruction to the IEEE rule, so a
    library result that depends on the CPU shows as other weights. The unfused Adam failed this: its
    square roots came from MKL's vector library."""
    prefixes = [[], *(["qemu-x86_64", "-cpu", cpu] for cpu in EMULATED_CPUS)]
    runs = [
        subprocess.Popen([*prefix, sys.executable, "-c", PINNED_TRAINING], stdout=subprocess.PIPE, text=True)
        for prefix in prefixes
    ]
    weights = [run.communicate(timeout=600)[0].strip() for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0]
    assert len(weights[0]) == 64
    assert weights[1:] == [weights[0], weights[0]]
