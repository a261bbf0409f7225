from pathlib import Path

import pytest

from worker.files import check_writable, replacing, write_text_atomically


def test_write_replaces_the_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old, and longer than the new text")
    write_text_atomically(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_an_output_path_is_checked_before_a_long_run_and_left_as_found(tmp_path: Path) -> None:
    check_writable(tmp_path / "report.json")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"cannot write .*missing/report.json: No such file"):
        check_writable(tmp_path / "missing" / "report.json")
    with pytest.raises(ValueError, match="it is a folder"):
        check_writable(tmp_path)
