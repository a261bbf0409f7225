import uuid
from pathlib import Path

import pytest

from app.core.storage import Storage, UploadTooLarge


def test_staged_upload_is_hashed_and_moved_into_content_addressed_place(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    with storage.stage(max_bytes=100) as staged:
        staged.write(b"abc")
        staged.write(b"def")
        key = Storage.checkpoint_key(staged.sha256)
        target = storage.commit(staged, key)
    assert staged.sha256 == "bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721"
    assert target.read_bytes() == b"abcdef" and key.startswith("checkpoints/be/")
    assert list((tmp_path / "incoming").iterdir()) == []


def test_oversized_upload_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    with pytest.raises(UploadTooLarge, match="larger than the limit of 5 bytes"), storage.stage(max_bytes=5) as staged:
        staged.write(b"1234")
        staged.write(b"56")
    assert list((tmp_path / "incoming").iterdir()) == []


def test_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "root")
    with pytest.raises(ValueError, match="escapes"):
        storage.path("../outside")
    with pytest.raises(ValueError, match="plain file names"):
        Storage.audit_key(uuid.uuid4(), "../report.json")
    with pytest.raises(ValueError, match="sha256"):
        Storage.checkpoint_key("../../etc/passwd")
