"""fkd reproduce on tiny notebooks: success, failure (with its cell), timeout, reports;
progress lines and papermill.log; options checked before any kernel starts; the lock on the
results folder; Ctrl-C stopping the notebook and its kernel."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from fkdlib.cli import main
from fkdlib.errors import ConfigError, FkdError, FolderInUse
from fkdlib.lock import LOCK_NAME, folder_lock
from fkdlib.reproduce import (
    NotebookRun,
    discover_notebooks,
    notebook_hygiene_problems,
    reproduce,
    run_notebook,
    runtime_columns,
    write_run_report,
)

PARAMETERS = ('profile = "smoke"\nseed = 0\ndata = "synthface"\neval_sets = ""\noverrides = ""\n'
              'device = "cpu"\n'
              'results_dir = "results"\nfigures_dir = "figures"\n')


def _notebook(path, *sources):
    notebook = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell(PARAMETERS)
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters] + [nbformat.v4.new_code_cell(s) for s in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01_ok.ipynb",
              "import pathlib, sys\n"
              "out = pathlib.Path(results_dir); out.mkdir(parents=True, exist_ok=True)\n"
              "(out / 'claims.csv').write_text('id,statement,source,status,effect,ci_low,ci_high\\n'"
              "'c1,margin helps,paper,holds,0.5,0.1,0.9\\n')\n"
              "(out / 'table.md').write_text('| a |\\n|---|\\n| 1 |')\n"
              "(out / 'python.txt').write_text(sys.executable)")
    _notebook(folder / "02_fails.ipynb", "x = 1", "raise ValueError('broken on purpose')")
    _notebook(folder / "03_hangs.ipynb", "import time\ntime.sleep(600)")
    return folder


def test_reproduce_runs_all_continues_past_failures_and_reports(notebooks, tmp_path):
    results = tmp_path / "results"
    said = []
    runs = reproduce("smoke", notebooks_dir=notebooks, results_dir=results,
                     figures_dir=tmp_path / "figures", timeout_s=25, log=said.append)
    status = {run.name: run for run in runs}
    assert [run.name for run in runs] == ["01_ok", "02_fails", "03_hangs"]
    assert status["01_ok"].status == "ok"
    assert status["02_fails"].status == "failed"
    # papermill inserts a header cell, so the failing cell index refers to the output notebook
    assert "ValueError: broken on purpose" in status["02_fails"].error
    output = json.loads((results / "02_fails" / "02_fails.ipynb").read_text())
    failing = output["cells"][status["02_fails"].failing_cell]
    assert "raise ValueError" in "".join(failing["source"])
    assert status["03_hangs"].status == "timeout"
    assert status["03_hangs"].runtime_s < 60
    # the timeout interrupts the kernel, so the executed notebook shows the cell that hung
    hung = json.loads((results / "03_hangs" / "03_hangs.ipynb").read_text())
    assert "time.sleep(600)" in "".join(hung["cells"][status["03_hangs"].failing_cell]["source"])
    # the kernel is this interpreter, not whatever "python" is on PATH
    assert (results / "01_ok" / "python.txt").read_text() == sys.executable
    claims = (results / "CLAIMS.md").read_text()
    assert "| 01_ok | c1 | margin helps | paper | holds | 0.5 | 0.1 | 0.9 |" in claims
    report = (results / "REPORT.md").read_text()
    assert "| 02_fails | failed |" in report and "| 03_hangs | timeout |" in report
    assert "| a |" in report
    assert json.loads((results / "01_ok" / "run.json").read_text())["status"] == "ok"
    # one terminal line per code cell (the two parameter cells, then the notebook's own)
    progress = [line for line in said if line.startswith("[01_ok] cell")]
    assert len(progress) == 3
    assert re.fullmatch(r"\[01_ok\] cell 3/3 \(\d+:\d\d:\d\d\) import pathlib, sys", progress[2])
    assert progress[1].endswith(") # Parameters")
    # papermill.log: papermill's own lines, paths relative to the project folder (tmp_path),
    # neither the cell markers nor the kernel's TCP warning
    log = (results / "01_ok" / "papermill.log").read_text()
    assert log.splitlines()[:2] == ["Input Notebook:  notebooks/01_ok.ipynb",
                                    "Output Notebook: results/01_ok/01_ok.ipynb"]
    assert str(tmp_path) not in log and "fkd-" not in log and "TCP" not in log
    metadata = json.loads((results / "01_ok" / "01_ok.ipynb").read_text())["metadata"]
    assert metadata["papermill"]["input_path"] == "notebooks/01_ok.ipynb"
    assert metadata["papermill"]["output_path"] == "results/01_ok/01_ok.ipynb"
    assert str(tmp_path) not in json.dumps(metadata["papermill"])
    assert not (results / LOCK_NAME).exists()  # released


def test_reports_keep_earlier_runs_of_the_same_profile(notebooks, tmp_path):
    results = tmp_path / "results"
    (notebooks / "03_hangs.ipynb").unlink()
    options = dict(notebooks_dir=notebooks, results_dir=results, figures_dir=tmp_path / "f",
                   timeout_s=60, log=lambda *_: None)
    reproduce("smoke", only=["01_ok"], **options)
    record = json.loads((results / "01_ok" / "run.json").read_text())
    assert record["output_notebook"] == "01_ok/01_ok.ipynb"  # portable
    runs = reproduce("smoke", only=["02_fails"], **options)
    assert [run.name for run in runs] == ["02_fails"]
    report = (results / "REPORT.md").read_text()
    assert "| 01_ok | ok |" in report and "| 02_fails | failed |" in report
    assert "Executed notebook: `01_ok/01_ok.ipynb`" in report
    assert "| 01_ok | c1 |" in (results / "CLAIMS.md").read_text()
    # a run recorded under another profile is not reported as this one's
    record["parameters"]["profile"] = "default"
    (results / "01_ok" / "run.json").write_text(json.dumps(record))
    reproduce("smoke", only=["02_fails"], **options)
    assert "01_ok" not in (results / "REPORT.md").read_text()


def _fkd_reproduce(notebooks, tmp_path, *options):
    """``fkd reproduce`` on the tiny notebooks, writing under tmp_path."""
    return ["reproduce", "--profile", "smoke", "--device", "cpu",
            "--notebooks-dir", str(notebooks), "--results-dir", str(tmp_path / "r"),
            "--figures-dir", str(tmp_path / "f"), *options]


def test_cli_exits_nonzero_naming_the_failed_notebook(notebooks, tmp_path):
    (notebooks / "03_hangs.ipynb").unlink()
    (notebooks / "01_ok.ipynb").unlink()
    proc = subprocess.run([sys.executable, "-m", "fkdlib.cli",
                           *_fkd_reproduce(notebooks, tmp_path, "--timeout", "60")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert "FAILED 02_fails (failed, cell" in proc.stderr


def test_only_selects_and_rejects_unknown_names(notebooks):
    assert [p.stem for p in discover_notebooks(notebooks, ["02_fails"])] == ["02_fails"]
    assert [p.stem for p in discover_notebooks(notebooks, ["02_fails", "02_fails"])] == [
        "02_fails"]
    with pytest.raises(ConfigError, match="01_ok"):
        discover_notebooks(notebooks, ["04_nope"])
    with pytest.raises(ConfigError, match="at least one notebook name; available: 01_ok"):
        discover_notebooks(notebooks, [])


def test_hygiene_flags_outputs_counts_tags_and_kernels(tmp_path):
    clean = tmp_path / "01_clean.ipynb"
    _notebook(clean, "print(1)")
    assert notebook_hygiene_problems(clean) == []
    dirty = json.loads(clean.read_text())
    dirty["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1"}]
    dirty["cells"][1]["execution_count"] = 3
    dirty["cells"][0]["metadata"]["tags"] = []
    dirty["metadata"]["kernelspec"]["name"] = "my-conda-env"
    (tmp_path / "02_dirty.ipynb").write_text(json.dumps(dirty))
    problems = " / ".join(notebook_hygiene_problems(tmp_path / "02_dirty.ipynb"))
    for expected in ("stored outputs", "execution count", "tagged 'parameters'", "my-conda-env"):
        assert expected in problems


def _project(folder):
    """Make ``folder`` an fkdlib project folder, as a checkout is."""
    (folder / "fkdlib").mkdir(parents=True)
    (folder / "pyproject.toml").write_text("[project]\nname = 'fkdlib'\n")
    return folder


def test_outputs_go_to_the_project_of_the_current_folder(notebooks, tmp_path, monkeypatch):
    (notebooks / "02_fails.ipynb").unlink()
    (notebooks / "03_hangs.ipynb").unlink()
    monkeypatch.chdir(_project(tmp_path) / "notebooks")  # anywhere inside the project
    said = []
    runs = reproduce("smoke", timeout_s=60, log=said.append, seed=2, overrides="epochs=3")
    assert [run.status for run in runs] == ["ok"]
    base = tmp_path / "build" / "smoke-custom" / "synthface-seed2"
    assert (base / "results" / "01_ok" / "claims.csv").exists()
    assert not (tmp_path / "results").exists()
    # absolute: the results are not inside the current folder, notebooks/
    assert said[0] == f"writing results to {base / 'results'} and figures to {base / 'figures'}"
    assert runs[0].parameters["overrides"] == "epochs=3"
    assert runs[0].parameters["results_dir"] == "build/smoke-custom/synthface-seed2/results/01_ok"
    monkeypatch.chdir(tmp_path)
    said.clear()
    reproduce("smoke", timeout_s=60, log=said.append, seed=2, overrides="epochs=3")
    assert said[0] == ("writing results to build/smoke-custom/synthface-seed2/results and "
                       "figures to build/smoke-custom/synthface-seed2/figures")
    # a results folder given alone keeps the figures inside it, away from figures/
    said.clear()
    reproduce("smoke", timeout_s=60, log=said.append, results_dir="mine")
    assert said[0] == "writing results to mine and figures to mine/figures"
    assert not (tmp_path / "figures").exists()


def test_outside_a_project_the_folders_must_be_given(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "--profile", "smoke", "--results-dir", "r"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"{tmp_path} is not inside a checkout of fkdlib" in error
    assert error.endswith("or pass --notebooks-dir\n")  # figures go inside the results
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, message", [
    (["--device", "gpu"], "unknown device 'gpu'; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    (["--seed", "one"], "--seed must be a non-negative integer, got 'one'"),
    (["--timeout", "0"], "--timeout must be a positive number of seconds, got 0"),
    (["--timeout", "-1"], "--timeout must be a positive number of seconds, got -1"),
    (["--only", ""], "--only needs at least one notebook name; available: 01_ok, 02_fails"),
    (["--only", ","], "--only needs at least one notebook name; available: 01_ok, 02_fails"),
    (["--data", "folder:/nonexistent"], "/nonexistent does not exist"),
    (["--set", "epoch=1"], "unknown profile field"),
])
def test_every_option_is_checked_before_any_kernel_starts(notebooks, tmp_path, capsys,
                                                          options, message):
    assert main(_fkd_reproduce(notebooks, tmp_path, *options)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # not even "writing results to"
    assert captured.err.startswith("fkd: error: ") and captured.err.count("\n") == 1
    assert message in captured.err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CUDA is available here")
def test_cuda_is_refused_where_there_is_none(notebooks, tmp_path, capsys):
    assert main(_fkd_reproduce(notebooks, tmp_path, "--device", "cuda")) == 2
    assert "CUDA is not available on this machine" in capsys.readouterr().err


def test_results_dir_through_a_file_is_one_line(notebooks, tmp_path, capsys):
    (tmp_path / "file.bin").write_bytes(b"x")
    argv = _fkd_reproduce(notebooks, tmp_path)
    argv[argv.index("--results-dir") + 1] = str(tmp_path / "file.bin" / "r")
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"fkd: error: cannot write {tmp_path / 'file.bin' / 'r'}: {tmp_path / 'file.bin'} is a "
        "file, not a folder; choose another output path or move that file\n")


def test_a_second_reproduction_is_refused_while_the_lock_is_held(notebooks, tmp_path, capsys):
    with folder_lock(tmp_path / "r") as lock:
        assert lock.read_text() == f"{os.getpid()}\n"
        assert main(_fkd_reproduce(notebooks, tmp_path)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"{tmp_path / 'r'} is being written by another fkd reproduce (pid {os.getpid()}" in error
    assert str(lock) in error and f"kill {os.getpid()}" in error
    assert list((tmp_path / "r").iterdir()) == []  # nothing ran, and the lock file went


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / LOCK_NAME).write_text(f"{dead}\n")  # as a killed reproduction leaves it
    with folder_lock(tmp_path) as lock:
        assert lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(FolderInUse, match=f"pid {os.getpid()}"):
            with folder_lock(tmp_path):
                pass
    assert not lock.exists()


def test_a_stale_executed_notebook_is_never_reported(notebooks, tmp_path):
    out = tmp_path / "r" / "02_fails"
    out.mkdir(parents=True)
    old = nbformat.v4.new_notebook()
    old.cells = [nbformat.v4.new_code_cell("old")]
    old.cells[0].outputs = [nbformat.v4.new_output("error", ename="OldError", evalue="old",
                                                   traceback=[])]
    nbformat.write(old, out / "02_fails.ipynb")
    # a limit too short for papermill even to start its kernel
    run = run_notebook(notebooks / "02_fails.ipynb", out, {}, timeout_s=1, cwd=tmp_path,
                       log=lambda *_: None)
    assert (run.status, run.failing_cell) == ("timeout", None)
    assert not (out / "02_fails.ipynb").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_the_notebook_and_its_kernel(tmp_path, signum):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    pids = tmp_path / "pids.json"
    _notebook(folder / "01_sleeps.ipynb",
              "import json, os, subprocess, sys, time\n"
              "sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],\n"
              "                           stderr=subprocess.DEVNULL)\n"
              f"open({str(pids)!r}, 'w').write(json.dumps([os.getpid(), os.getppid(), sleeper.pid]))",
              "time.sleep(300)",
              "print('never reached')")
    _notebook(folder / "02_never.ipynb", "print('never started')")
    process = subprocess.Popen([sys.executable, "-m", "fkdlib.cli",
                                *_fkd_reproduce(folder, tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=tmp_path)
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # wait for the cell that sleeps
            lines.append(process.stdout.readline())
            if lines[-1].startswith("[01_sleeps] cell 4/5") or not lines[-1]:
                break
        assert lines[-1].endswith(") time.sleep(300)\n"), lines
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    name = signal.Signals(signum).name
    assert err == (f"fkd reproduce: interrupted during 01_sleeps ({name}); stopped the notebook "
                   "and its kernel; the reports cover what ran\n")
    kernel, papermill, sleeper = json.loads(pids.read_text())
    assert not [pid for pid in (kernel, papermill, sleeper) if _alive(pid)]
    record = json.loads((tmp_path / "r" / "01_sleeps" / "run.json").read_text())
    assert (record["status"], record["error"]) == ("interrupted", f"interrupted by {name}")
    executed = json.loads((tmp_path / "r" / "01_sleeps" / "01_sleeps.ipynb").read_text())
    stopped = executed["cells"][record["failing_cell"]]
    assert "".join(stopped["source"]) == "time.sleep(300)"
    assert [o["ename"] for o in stopped["outputs"] if o["output_type"] == "error"] == [
        "KeyboardInterrupt"]
    assert not (tmp_path / "r" / "02_never").exists()
    assert "| 01_sleeps | interrupted |" in (tmp_path / "r" / "REPORT.md").read_text()
    assert not (tmp_path / "r" / LOCK_NAME).exists()


@pytest.mark.parametrize("options, message", [
    ({"overrides": "epoch=1"}, "unknown profile field"),
    ({"eval_sets": "megaface"}, "unknown evaluation set"),
    ({"data": "rec:/nonexistent/faces"}, "does not exist"),
])
def test_bad_options_fail_before_any_notebook_runs(notebooks, tmp_path, options, message):
    said = []
    with pytest.raises(FkdError, match=message):
        reproduce("smoke", notebooks_dir=notebooks, results_dir=tmp_path / "r",
                  figures_dir=tmp_path / "f", log=said.append, **options)
    assert said == [] and not (tmp_path / "r").exists()


def test_the_report_gives_warm_and_cold_runtimes_from_the_zoo_cost(tmp_path):
    results = tmp_path / "results"
    zoo = {"01_cold": {"models": 4, "training_s": 300.0, "trained_now": 3, "trained_now_s": 250.0},
           "02_warm": {"models": 2, "training_s": 100.0, "trained_now": 0, "trained_now_s": 0.0}}
    runs = []
    for name, cost in zoo.items():
        (results / name).mkdir(parents=True)
        (results / name / "provenance.json").write_text(json.dumps({"zoo": cost}))
        runs.append(NotebookRun(name, "ok", 400.0 if name == "01_cold" else 60.0,
                                str(results / name / f"{name}.ipynb")))
    runs.append(NotebookRun("03_no_record", "ok", 5.0, str(results / "03" / "03.ipynb")))
    assert runtime_columns(runs[0], zoo["01_cold"]) == ("3 of 4", "", "450")
    assert runtime_columns(runs[1], zoo["02_warm"]) == ("0 of 2", "60", "160")
    report = write_run_report(results, tmp_path / "figures", runs, "default").read_text()
    assert "| 01_cold | ok | 400.0 | 3 of 4 |  | 450 |" in report
    assert "| 02_warm | ok | 60.0 | 0 of 2 | 60 | 160 |" in report
    assert "| 03_no_record | ok | 5.0 |  |  |  |" in report
