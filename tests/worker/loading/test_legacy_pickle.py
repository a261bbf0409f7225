"""torch.save's legacy (pre-zip) format: five pickles, then raw storages. All five are scanned, whatever
their protocol, and the storages the object pickle claims must fit in the bytes after them."""

from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.worker.loading.conftest import ClaimingTensor, StorageStandIn
from worker.loading import CheckpointError, ModelSpec, inspect_checkpoint, load_checkpoint

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch/serialization.py
_PROTOCOL_VERSION = 1001


def _header() -> bytes:
    buffer = io.BytesIO()
    for value in (_MAGIC_NUMBER, _PROTOCOL_VERSION, {"protocol_version": _PROTOCOL_VERSION}):
        pickle.dump(value, buffer, protocol=2)
    return buffer.getvalue()


def _object_pickle(claims: list[int], protocol: int) -> bytes:
    """A state_dict whose i-th tensor claims ``claims[i]`` floats, all from the storage with key "0"."""
    numels = iter(claims)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return (
                ("storage", torch.FloatStorage, "0", "cpu", next(numels), None)
                if isinstance(obj, StorageStandIn)
                else None
            )

    buffer = io.BytesIO()
    Pickler(buffer, protocol=protocol).dump({f"w{i}": ClaimingTensor((4,)) for i in range(len(claims))})
    return buffer.getvalue()


def _keys() -> bytes:
    return pickle.dumps(["0"], protocol=2)


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    return path


def test_storage_claim_larger_than_the_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _header() + _object_pickle([10**12], protocol=2) + _keys())
    with pytest.raises(CheckpointError, match="claim 4000000000000 bytes but the file holds 0 bytes of tensor data"):
        load_checkpoint(path, ModelSpec(arch="small_cnn"))


@pytest.mark.parametrize(
    "object_pickle",
    [
        pytest.param(lambda: _object_pickle([10**12], protocol=1), id="protocol 1"),
        pytest.param(lambda: _object_pickle([10**12], protocol=2)[2:], id="protocol 2 without PROTO"),
    ],
)
def test_object_pickle_without_proto_is_still_scanned(object_pickle: Callable[[], bytes], tmp_path: Path) -> None:
    # PROTO is optional; the scan once stopped at the first pickle without it, and torch.load then
    # tried to allocate the 4 TB this storage claims
    path = _write(tmp_path, _header() + object_pickle() + _keys())
    with pytest.raises(CheckpointError, match="claim 4000000000000 bytes"):
        inspect_checkpoint(path)


def test_huge_first_claim_on_a_storage_key_is_not_hidden_by_a_small_later_one(tmp_path: Path) -> None:
    # torch allocates a key's storage where the key first appears
    path = _write(tmp_path, _header() + _object_pickle([10**12, 4], protocol=2) + _keys() + bytes(64))
    with pytest.raises(CheckpointError, match="claim 4000000000000 bytes"):
        inspect_checkpoint(path)


def test_hostile_object_pickle_of_protocol_0_is_refused(canary: Path, tmp_path: Path) -> None:
    payload = b"cos\nsystem\n(Vtouch " + str(canary).encode() + b"\ntR."
    path = _write(tmp_path, _header() + payload + _keys())
    with pytest.raises(CheckpointError, match=r"the legacy checkpoint's object pickle imports `os.system`"):
        inspect_checkpoint(path)


def test_legacy_file_cut_inside_its_storages_is_refused_at_intake(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(tiny_model.state_dict(), buffer, _use_new_zipfile_serialization=False)
    path = _write(tmp_path, buffer.getvalue()[:-100])
    with pytest.raises(CheckpointError, match="refused before allocating"):
        inspect_checkpoint(path)


def test_legacy_file_cut_between_its_pickles_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _header() + _object_pickle([4], protocol=2))
    with pytest.raises(CheckpointError, match=r"legacy checkpoint ends after 4 of its 5 pickles .*truncated"):
        inspect_checkpoint(path)


def test_plain_pickle_is_refused_as_not_a_torch_checkpoint(tmp_path: Path) -> None:
    path = _write(tmp_path, pickle.dumps({"w": [1.0, 2.0]}))
    with pytest.raises(CheckpointError, match=r"is a pickle but not a torch\.save checkpoint"):
        inspect_checkpoint(path)
