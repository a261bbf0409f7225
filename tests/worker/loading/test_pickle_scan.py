"""The opcode scan itself: real torch pickles pass and report their storages; tricks are refused."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch

from tests.worker.loading.conftest import torch_zip_bytes
from worker.loading.pickle_scan import TENSOR_GLOBALS, scan_pickle
from worker.loading.types import CheckpointError


def _data_pkl(obj: object) -> bytes:
    archive = zipfile.ZipFile(io.BytesIO(torch_zip_bytes(obj)))
    return archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))


def test_a_real_state_dict_passes_and_lists_its_storages() -> None:
    state = {"a": torch.zeros(3, 4), "b": torch.zeros(5, dtype=torch.int64)}
    report = scan_pickle(_data_pkl(state), where="t", allowed=TENSOR_GLOBALS)
    assert report.globals == {
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch.FloatStorage",
        "torch.LongStorage",
    }
    assert report.calls == {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2"}
    assert sorted((s.storage_type, s.numel, s.nbytes) for s in report.storages) == [
        ("torch.FloatStorage", 12, 48),
        ("torch.LongStorage", 5, 40),
    ]


def test_a_training_checkpoint_with_numbers_and_lists_passes() -> None:
    checkpoint = {"model": {"w": torch.ones(2)}, "epoch": 3, "lr": [0.1, 0.01], "name": "run"}
    assert scan_pickle(_data_pkl(checkpoint), where="t", allowed=TENSOR_GLOBALS).end > 0


def test_extension_registry_globals_are_refused() -> None:
    with pytest.raises(CheckpointError, match="extension registry"):
        scan_pickle(b"\x80\x02\x82\x01)R.", where="t", allowed=TENSOR_GLOBALS)


def test_reduce_on_a_computed_callable_is_refused() -> None:
    # calls the result of OrderedDict() — a value the scan cannot name
    with pytest.raises(CheckpointError, match="non-global"):
        scan_pickle(b"\x80\x02ccollections\nOrderedDict\n)R)R.", where="t", allowed=TENSOR_GLOBALS)


@pytest.mark.parametrize("data", [b"\x80\x02(", b"\x80\x02K", b"\x80\x02R."])
def test_truncated_or_malformed_pickles_are_refused(data: bytes) -> None:
    with pytest.raises(CheckpointError, match="not a valid pickle"):
        scan_pickle(data, where="t", allowed=TENSOR_GLOBALS)
