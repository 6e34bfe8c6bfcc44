"""`fkd` itself: an output path the system refuses, and an interruption, end in one line."""

import errno
import sys
from pathlib import Path

import pytest

import fkdlib.data.synthface.cli as synth_cli
from fkdlib.cli import main


def _error_line(capsys) -> str:
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error, error
    return error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_preview_into_proc_names_the_path(capsys):
    assert main(["synth", "preview", "--out", "/proc/x.png", "--n", "1",
                 "--resolution", "16"]) == 2
    error = _error_line(capsys)
    # the path given, not the temporary file the write went through
    assert error.startswith("fkd: error: cannot write /proc/x.png: ")
    assert error.endswith("; choose another output path\n") and ".tmp" not in error


def test_a_preview_through_a_file_says_which_file(tmp_path, capsys):
    (tmp_path / "somefile.txt").write_text("x")
    out = tmp_path / "somefile.txt" / "sub" / "x.png"
    assert main(["synth", "preview", "--out", str(out), "--n", "1", "--resolution", "16"]) == 2
    assert _error_line(capsys) == (
        f"fkd: error: cannot write {out}: {tmp_path / 'somefile.txt'} is a file, not a folder; "
        "choose another output path or move that file\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["somefile.txt"]


def test_an_os_error_without_a_path_is_one_line(tmp_path, capsys, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(synth_cli, "save_preview", disk_full)
    assert main(["synth", "preview", "--out", str(tmp_path / "new" / "x.png")]) == 2
    assert _error_line(capsys) == ("fkd: error: No space left on device; check the output path "
                                   "and the free disk space\n")


def test_ctrl_c_is_one_line_and_status_130(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth_cli, "save_preview", interrupted)
    assert main(["synth", "preview", "--out", "x.png"]) == 130
    assert _error_line(capsys) == "fkd synth: interrupted; nothing half-written was left\n"
    assert not Path("x.png").exists()
