"""A bounded view of a zip archive (torch.save, TorchScript and torch.export files are all zips).

Everything here reads the central directory only, or one member at a time with a byte limit, so a zip
bomb, a member count in the millions, overlapping entries or a truncated archive is refused before
anything is decompressed in bulk or handed to torch's own reader.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from worker.loading.types import CheckpointError

MAX_MEMBERS = 20_000  # a TorchScript ResNet-152 has ~1,500 members
MAX_RATIO = 100  # deflate rarely exceeds 10:1 on code and never on float weights; bombs reach 1000:1
_RATIO_FLOOR = 1 << 20  # members under 1 MiB uncompressed are too small to matter, whatever their ratio
ZIP_MAGIC = b"PK\x03\x04"


@dataclass
class Archive:
    """The members of a validated zip, named relative to its single top-level folder."""

    zip: zipfile.ZipFile
    prefix: str  # e.g. "archive/" (torch writes every member under one folder)
    members: dict[str, zipfile.ZipInfo]
    where: str

    def names(self) -> list[str]:
        return list(self.members)

    def size(self, name: str) -> int:
        return self.members[name].file_size

    def head(self, name: str, count: int) -> bytes:
        """The first ``count`` bytes of a member (enough to tell a nested zip from raw tensor bytes)."""
        try:
            with self.zip.open(self.members[name]) as stream:
                return stream.read(count)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(
                f"{self.where}: member `{name}` cannot be read ({exc}); the archive is corrupt."
            ) from exc

    def read(self, name: str) -> bytes:
        """One member's bytes, never more than its declared size (checked against the data and CRC)."""
        info = self.members[name]
        try:
            with self.zip.open(info) as stream:
                data = stream.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(
                f"{self.where}: member `{name}` cannot be read ({exc}); the archive is corrupt or truncated."
            ) from exc
        if len(data) != info.file_size:
            raise CheckpointError(
                f"{self.where}: member `{name}` holds {len(data)} bytes but declares {info.file_size}; "
                "the archive is corrupt or was tampered with."
            )
        return data


def is_zip(data: bytes) -> bool:
    return data.startswith(ZIP_MAGIC)


def open_archive(data: bytes, *, where: str, max_total: int) -> Archive:
    """Open ``data`` as a zip and refuse it unless it is small, honest and well formed.

    ``max_total`` bounds the sum of the members' uncompressed sizes.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(
            f"{where} looks like a zip archive but cannot be opened ({exc}); it is truncated or corrupt. "
            "Upload the complete file again."
        ) from exc
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"{where} has {len(infos)} archive members; at most {MAX_MEMBERS} are accepted.")
    if not infos:
        raise CheckpointError(f"{where} is an empty zip archive, not a checkpoint.")
    total = 0
    offsets: set[int] = set()
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        _check_member(info, where, len(data))
        if info.header_offset in offsets:
            raise CheckpointError(f"{where} has overlapping archive members (a zip-bomb pattern); refused.")
        offsets.add(info.header_offset)
        total += info.file_size
        if total > max_total:
            raise CheckpointError(
                f"{where} would unpack to more than {max_total} bytes (zip bomb or oversized model); refused."
            )
        if info.filename in members:
            raise CheckpointError(
                f"{where} has two members named `{info.filename}`; readers disagree on which one counts, "
                "so the archive is refused."
            )
        members[info.filename] = info
    prefix = _single_prefix(list(members), where)
    relative = {name[len(prefix) :]: info for name, info in members.items()}
    return Archive(zip=archive, prefix=prefix, members=relative, where=where)


def _check_member(info: zipfile.ZipInfo, where: str, data_size: int) -> None:
    if info.flag_bits & 0x1:
        raise CheckpointError(f"{where}: member `{info.filename}` is encrypted; refused.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(
            f"{where}: member `{info.filename}` uses an unsupported compression method "
            f"({info.compress_type}); only stored and deflated members are accepted."
        )
    if info.header_offset + info.compress_size > data_size:
        raise CheckpointError(
            f"{where}: member `{info.filename}` points past the end of the file; the archive is truncated."
        )
    if info.file_size > _RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise CheckpointError(
            f"{where}: member `{info.filename}` expands {info.file_size // max(info.compress_size, 1)}x "
            f"(at most {MAX_RATIO}x is accepted); this is a zip bomb, refused."
        )


def _single_prefix(names: list[str], where: str) -> str:
    first = names[0].split("/", 1)[0]
    prefix = f"{first}/"
    if any(not name.startswith(prefix) for name in names):
        raise CheckpointError(
            f"{where} is a zip archive, but not one written by PyTorch (its members are not all in one "
            "top-level folder). Accepted archives come from torch.save, torch.jit.save or torch.export.save."
        )
    return prefix
