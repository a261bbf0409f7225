"""Content-addressed artifact storage on a local or shared filesystem.

Checkpoints are stored once per sha256 (``checkpoints/ab/abcd...``) whoever uploads them; audit
artifacts (class maps, images, report) under ``audits/<audit_id>/``. Keys are built here from hashes,
ids and fixed names, never from a client's file name. Writes go to a temporary file first and are
renamed into place, so a reader never sees half a file and a crash leaves only a stray temp file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Self

REPORT_FILE = "report.json"


class UploadTooLarge(Exception):
    """The upload exceeded the configured limit; nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"checkpoint is larger than the limit of {limit} bytes; "
            "raise BACKDOOR_AUDIT_MAX_CHECKPOINT_BYTES on the server (MAX_CHECKPOINT_BYTES in docker compose's "
            "environment) or upload a smaller file"
        )
        self.limit = limit


class StagedFile:
    """An upload being written to a temporary file, hashed and size-checked chunk by chunk.

    Use as a context manager: unless ``commit`` moved it into storage, the temporary file is deleted on exit.
    """

    def __init__(self, folder: Path, max_bytes: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=folder, prefix="upload-", suffix=".part")
        self.path = Path(name)
        self._file: IO[bytes] = os.fdopen(handle, "wb")
        self._hash = hashlib.sha256()
        self.max_bytes = max_bytes
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise UploadTooLarge(self.max_bytes)
        self._hash.update(chunk)
        self._file.write(chunk)

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


class Storage:
    """Artifact files under one root folder (a local directory or a volume shared by API and workers)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def checkpoint_key(sha256: str) -> str:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return f"checkpoints/{sha256[:2]}/{sha256}"

    @staticmethod
    def audit_key(audit_id: uuid.UUID, name: str) -> str:
        """Key of an audit artifact; ``name`` is one of the fixed names the worker writes."""
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise ValueError(f"artifact names are plain file names, got {name!r}")
        return f"audits/{audit_id}/{name}"

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"storage key escapes the storage root: {key!r}")
        return path

    def stage(self, max_bytes: int) -> StagedFile:
        """A temporary file inside the storage root (same filesystem, so ``commit`` is an atomic rename)."""
        return StagedFile(self.root / "incoming", max_bytes)

    def commit(self, staged: StagedFile, key: str) -> Path:
        """Move a fully written staged file to ``key``; an existing file with that key is kept as is."""
        staged.close()
        target = self.path(key)
        if target.exists():  # content-addressed: same key, same bytes
            staged.discard()
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, target)
        return target

    def write_bytes(self, key: str, data: bytes) -> Path:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(name, target)
        return target

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
