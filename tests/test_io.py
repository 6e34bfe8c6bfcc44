import hashlib
import json
import os
import stat

import pytest

from fkdlib.io import (
    atomic_open,
    atomic_write_json,
    atomic_write_text,
    new_folders,
    sha256_bytes,
    sha256_file,
)


def test_atomic_write_replaces_content(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "wb") as handle:
            handle.write(b"new, half written")
            raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_json_and_hashes(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    data = target.read_bytes()
    assert sha256_bytes(data) == hashlib.sha256(data).hexdigest() == sha256_file(target)


def test_append_mode_is_refused(tmp_path):
    with pytest.raises(ValueError):
        with atomic_open(tmp_path / "x", "a"):
            pass


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        (tmp_path / "b.txt").write_text("x")  # what open() gives
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == mode


def test_a_failed_write_removes_the_folders_made_for_it_and_only_those(tmp_path):
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "old.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "kept" / "new" / "deeper" / "file.bin", "wb") as handle:
            handle.write(b"half")
            raise RuntimeError("crash")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kept", "old.txt"]
    # a folder that something else filled meanwhile is not removed
    with pytest.raises(RuntimeError):
        with new_folders(tmp_path / "a" / "b") as folder:
            (tmp_path / "a" / "other.txt").write_text("someone else's")
            assert folder.is_dir()
            raise RuntimeError("crash")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["other.txt"]


def test_write_errors_name_the_file_being_written(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    target = tmp_path / "file.txt" / "sub" / "out.json"
    with pytest.raises(NotADirectoryError) as caught:
        atomic_write_json(target, {})
    assert caught.value.filename == str(target)
    (tmp_path / "folder.json").mkdir()  # os.replace cannot put a file over a folder
    with pytest.raises(IsADirectoryError) as caught:
        atomic_write_json(tmp_path / "folder.json", {})
    assert caught.value.filename == str(tmp_path / "folder.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder.json"]
