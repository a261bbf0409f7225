"""A zoo build's name (the hash of its weights) and the training machine each manifest entry records."""

from __future__ import annotations

from pathlib import Path

import torch

from worker.zoo.provenance import build_hash, cpu_name, this_machine


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
