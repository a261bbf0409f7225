"""Write files so that a reader never sees half of one: into a temporary sibling, then renamed over it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; when the block ends cleanly it is renamed over
    ``path`` (atomic on one file system), and when it raises it is removed and ``path`` is untouched."""
    tmp = _temporary(path)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text)


def check_writable(path: Path) -> None:
    """Raise ValueError, naming ``path``, unless a file can be written there: a long run checks its
    output paths before it starts instead of failing at the end. Creates and removes the temporary
    sibling that ``replacing`` would write."""
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder")
    tmp = _temporary(path)
    try:
        tmp.touch()
        tmp.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None


def _temporary(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")
