"""Reading a checkpoint's bytes, telling its format from those bytes, and running every safety check.

Nothing here deserialises anything: it only decides whether the bytes may be handed to a loader. The
same bytes are then loaded from memory, so the file cannot change between the check and the load.
"""

from __future__ import annotations

import hashlib
import pickletools
from dataclasses import dataclass
from pathlib import Path

from worker.loading import onnx_module
from worker.loading.archive import Archive, is_zip, open_archive
from worker.loading.export_program import is_export_archive, scan_export
from worker.loading.safetensors_header import SafetensorsHeader, looks_like_safetensors, parse_header
from worker.loading.torch_zip import is_torchscript, scan_legacy_pickle, scan_state_dict_zip, scan_torchscript
from worker.loading.types import CheckpointError

DEFAULT_MAX_BYTES = 512 * 2**20
ACCEPTED = (
    "safetensors, torch.save state_dicts (.pt/.pth/.bin), TorchScript archives, torch.export programs "
    "(.pt2) and ONNX models"
)


@dataclass
class Intake:
    """A checkpoint that passed every check for its format, ready to be loaded."""

    data: bytes
    format: str  # "safetensors" | "state_dict" | "torchscript" | "export" | "onnx"
    sha256: str
    safetensors_header: SafetensorsHeader | None = None


def read_checkpoint(path: str | Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing non-files, empty files and files over ``max_bytes`` before reading."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path.name!r}: {exc.strerror}.") from exc
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path.name!r} is not a regular file.")
    if stat.st_size == 0:
        raise CheckpointError(f"checkpoint {path.name!r} is empty (0 bytes); upload the complete file.")
    if stat.st_size > max_bytes:
        raise CheckpointError(
            f"checkpoint {path.name!r} is {stat.st_size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB."
        )
    with path.open("rb") as stream:
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise CheckpointError(f"checkpoint {path.name!r} grew past {max_bytes} bytes while being read.")
    return data


def inspect_bytes(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Intake:
    """Detect the format from the bytes and run that format's safety checks; raise CheckpointError."""
    try:
        return _inspect(data, max_bytes)
    except CheckpointError:
        raise
    except Exception as exc:  # a parser choking on hostile input (RecursionError, MemoryError...)
        raise CheckpointError(
            f"the checkpoint could not be inspected ({type(exc).__name__}); it is corrupt or malformed."
        ) from exc


def _inspect(data: bytes, max_bytes: int) -> Intake:
    if not data:
        raise CheckpointError("the checkpoint is empty (0 bytes); upload the complete file.")
    digest = hashlib.sha256(data).hexdigest()
    if is_zip(data):
        archive = open_archive(data, where="the checkpoint", max_total=2 * max_bytes)
        return Intake(data, _scan_torch_archive(archive, 2 * max_bytes), digest)
    if looks_like_safetensors(data):
        return Intake(data, "safetensors", digest, safetensors_header=parse_header(data))
    if _parses_as_pickle(data):
        scan_legacy_pickle(data)
        return Intake(data, "state_dict", digest)
    if onnx_module.looks_like_onnx(data):
        onnx_module.check(onnx_module.parse(data))
        return Intake(data, "onnx", digest)
    raise CheckpointError(f"the file is not a checkpoint format this service reads. Accepted: {ACCEPTED}.")


def inspect_checkpoint(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Cheap upload-time validation: the detected format, or CheckpointError saying what is wrong."""
    return inspect_bytes(read_checkpoint(path, max_bytes), max_bytes).format


def _scan_torch_archive(archive: Archive, max_total: int) -> str:
    if is_export_archive(archive):
        scan_export(archive, max_total=max_total)
        return "export"
    if is_torchscript(archive):
        scan_torchscript(archive)
        return "torchscript"
    scan_state_dict_zip(archive)
    return "state_dict"


def _parses_as_pickle(data: bytes) -> bool:
    """Whether the bytes decode as pickle opcodes up to a STOP (decoding only, nothing runs)."""
    if data[:1] not in _PICKLE_FIRST_BYTES:
        return False
    try:
        for opcode, _, _ in pickletools.genops(data):
            if opcode.name == "STOP":
                return True
    except Exception:  # not opcodes: some other format
        return False
    return False


_PICKLE_FIRST_BYTES = {bytes([op.code.encode("latin-1")[0]]) for op in pickletools.opcodes}
