"""Batch reproduction: run every notebook with papermill, then build the claim and run reports.

``fkd reproduce --profile default``, run in a checkout of fkdlib (the project folder: the
nearest folder at or above the current one holding ``pyproject.toml`` and ``fkdlib/``),
executes ``notebooks/NN_name.ipynb`` one at a time into ``results/NN_name/NN_name.ipynb``,
each in its own process group under a wall-clock timeout, and continues past a failure. It
then writes ``results/CLAIMS.md`` (every claim of every notebook, one row each) and
``results/REPORT.md`` (per notebook: status, runtime, tables, figures) and returns non-zero if
any notebook failed, naming the notebook and its failing cell.

While it runs, the terminal shows one line per cell (``[01_arcface] cell 7/28 (0:03:12)
with ctx.time("training"):``); ``papermill.log`` beside the executed notebook keeps
papermill's own messages, with paths relative to the project folder. A lock file in the
results folder (:mod:`fkdlib.lock`) keeps a second reproduction out of it. SIGINT (Ctrl-C) or
SIGTERM stops the running notebook and its kernel, records the notebook as ``interrupted``,
writes the reports for what ran and raises :class:`~fkdlib.errors.Interrupted`.

The kernel is always this interpreter (``sys.executable``): a kernelspec named ``python3`` is
written to a temporary Jupyter data directory that is put first on ``JUPYTER_PATH`` for the
child, so no machine-specific kernel name is needed and the stored notebooks keep the generic
``python3`` kernelspec.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from .errors import ConfigError, Interrupted, missing_folder
from .io import atomic_write_json, atomic_write_text
from .lock import folder_lock
from .notebook import project_root
from .outputs import output_dirs
from .papermill_child import CELL_MARKER, KERNEL_MARKER
from .profiles import get_profile, parse_overrides

NOTEBOOK_PARAMETERS = ("profile", "seed", "data", "eval_sets", "overrides", "device",
                       "results_dir", "figures_dir")


# Each notebook's outcome, beside its results (output notebook path relative to the results).
RUN_RECORD = "run.json"
# How long a stopped notebook gets to save itself and shut its kernel down before SIGKILL.
STOP_GRACE_S = 10.0
# A line the kernel prints on every start (ipykernel >= 7); papermill.log leaves it out.
KERNEL_TCP_WARNING = "Kernel is running over TCP without encryption"


@dataclass
class NotebookRun:
    """The outcome of running one notebook."""

    name: str
    status: str  # "ok", "failed", "timeout" or "interrupted"
    runtime_s: float
    output_notebook: str
    failing_cell: int | None = None
    error: str | None = None
    parameters: dict = field(default_factory=dict)


def discover_notebooks(notebooks_dir: str | os.PathLike,
                       only: Sequence[str] | None = None) -> list[Path]:
    """The ``NN_name.ipynb`` notebooks in order; ``only`` selects by stem (``01_arcface``).

    An ``only`` name that matches no notebook, or an empty ``only`` (``--only ""``), is an
    error listing the available ones; a name given twice runs once.
    """
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise missing_folder(notebooks_dir, "notebook folder", "expected a folder of "
                             "NN_name.ipynb notebooks, as notebooks/ of an fkdlib checkout")
    found = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if only is not None:
        stems = {p.stem: p for p in found}
        if not only:
            raise ConfigError("--only needs at least one notebook name; available: "
                              f"{', '.join(stems) or 'none'}")
        unknown = [name for name in only if name not in stems]
        if unknown:
            raise ConfigError(
                f"--only names unknown notebook(s) {unknown}; available: {', '.join(stems) or 'none'}"
            )
        found = [stems[name] for name in dict.fromkeys(only)]
    return found


def notebook_hygiene_problems(path: str | os.PathLike) -> list[str]:
    """Why a stored notebook is not clean: outputs, execution counts, no tagged
    ``parameters`` cell, or a kernelspec other than the generic ``python3``."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    problems = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {index} has stored outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {index} has an execution count")
    tagged = [c for c in notebook.get("cells", [])
              if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"expected exactly one cell tagged 'parameters', found {len(tagged)}")
    else:
        source = "".join(tagged[0].get("source", []))
        for name in ("profile", "seed", "data", "eval_sets", "overrides", "device"):
            if f"{name} =" not in source and f"{name}=" not in source:
                problems.append(f"the parameters cell does not set {name!r}")
    kernelspec = notebook.get("metadata", {}).get("kernelspec", {})
    if kernelspec.get("name") != "python3":
        problems.append(f"kernelspec name is {kernelspec.get('name')!r}, expected 'python3'")
    return problems


def _write_kernelspec(jupyter_data_dir: Path) -> None:
    kernel_dir = jupyter_data_dir / "kernels" / "python3"
    kernel_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (fkdlib)",
        "language": "python",
    }
    (kernel_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")


def _first_error(output_notebook: Path) -> tuple[int | None, str | None]:
    """Index (among all cells) and one-line description of the first cell that raised."""
    if not output_notebook.exists():
        return None, None
    try:
        notebook = json.loads(output_notebook.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None, None
    for index, cell in enumerate(notebook.get("cells", [])):
        for output in cell.get("outputs", []) or []:
            if output.get("output_type") == "error":
                return index, f"{output.get('ename')}: {output.get('evalue')}"
    return None, None


def _say(line: str) -> None:
    """Print a progress line at once, also when stdout is a pipe or a file."""
    print(line, flush=True)


class StopSignals:
    """SIGINT and SIGTERM during a reproduction, remembered rather than raised.

    A signal then cannot land half-way through a write or leave a kernel behind: the running
    notebook is stopped (:func:`run_notebook`), its outcome and the reports are written, and
    :func:`reproduce` raises :class:`~fkdlib.errors.Interrupted`. Handlers can be installed
    only in the main thread; elsewhere nothing is caught and :attr:`signal` stays None."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum

    @property
    def name(self) -> str:
        """``"SIGINT"`` or ``"SIGTERM"`` (empty when no signal came)."""
        return signal.Signals(self.signal).name if self.signal else ""


class _PapermillOutput:
    """Papermill's merged stdout and stderr, fed in chunks and handled line by line: the cell
    markers of :mod:`fkdlib.papermill_child` become progress lines, the kernel's process
    group is noted, the kernel's TCP warning is dropped, the rest goes to ``papermill.log``."""

    def __init__(self, log_file: IO[str], name: str, started: float,
                 log: Callable[[str], Any]) -> None:
        self.log_file, self.notebook, self.started, self.log = log_file, name, started, log
        self.kernel_group: int | None = None
        self.cell: dict | None = None  # the cell running now (marker fields)
        self._pending = b""

    def feed(self, data: bytes) -> None:
        """Handle the complete lines in ``data``; keep a partial last line for later."""
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            self._handle(line.decode("utf-8", errors="replace") + "\n")

    def close(self) -> None:
        """Handle a last line that ended without a newline."""
        if self._pending:
            self._handle(self._pending.decode("utf-8", errors="replace") + "\n")
            self._pending = b""

    def _handle(self, line: str) -> None:
        if line.startswith(CELL_MARKER):
            self.cell = json.loads(line[len(CELL_MARKER):])
            self.log(self.progress_line(self.cell, time.perf_counter() - self.started))
        elif line.startswith(KERNEL_MARKER):
            self.kernel_group = int(line[len(KERNEL_MARKER):])
        elif KERNEL_TCP_WARNING not in line:
            self.log_file.write(line)
            self.log_file.flush()

    def progress_line(self, cell: dict, elapsed: float, width: int = 70) -> str:
        """``[01_arcface] cell 7/28 (0:03:12) with ctx.time("training"):``"""
        text = cell["line"] if len(cell["line"]) <= width else cell["line"][:width - 3] + "..."
        clock = datetime.timedelta(seconds=int(elapsed))
        return f"[{self.notebook}] cell {cell['number']}/{cell['count']} ({clock}) {text}"


def _read_available(fd: int, output: _PapermillOutput, wait_s: float) -> bool:
    """Feed ``output`` what the pipe holds, waiting up to ``wait_s`` for something; False at
    the end of the pipe."""
    if not select.select([fd], [], [], wait_s)[0]:
        return True
    data = os.read(fd, 1 << 16)
    if data:
        output.feed(data)
    return bool(data)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def run_notebook(notebook: Path, output_dir: Path, parameters: dict, timeout_s: int,
                 cwd: Path, log: Callable[[str], Any] = _say,
                 stop: StopSignals | None = None) -> NotebookRun:
    """Execute one notebook with papermill (:mod:`fkdlib.papermill_child`) in a process group
    of its own, stopped after ``timeout_s`` or when ``stop`` records a signal.

    Stopping sends SIGTERM to papermill, which interrupts the cell, saves the executed
    notebook and shuts the kernel down; papermill's group gets SIGKILL if it has not ended
    after :data:`STOP_GRACE_S`, and the kernel's group gets SIGKILL in any case (it also ends
    what the kernel started). ``log`` gets one progress line per cell. Paths given to
    papermill are relative to ``cwd`` (the project folder) when inside it, so that
    ``papermill.log`` and the executed notebook's metadata name no absolute path. An executed
    notebook of an earlier run is deleted first: the report must never name a cell of an old
    notebook."""
    output_dir.mkdir(parents=True, exist_ok=True)
    output_notebook = output_dir / notebook.name
    output_notebook.unlink(missing_ok=True)
    command = [sys.executable, "-m", "fkdlib.papermill_child",
               _relative(notebook, cwd), _relative(output_notebook, cwd),
               "--kernel", "python3", "--no-progress-bar", "--log-level", "INFO"]
    for key, value in parameters.items():
        command += ["-p", key, str(value)]
    with tempfile.TemporaryDirectory(prefix="fkd-kernel-") as jupyter_dir:
        _write_kernelspec(Path(jupyter_dir))
        env = dict(os.environ)
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [jupyter_dir, env.get("JUPYTER_PATH")]))
        env.setdefault("MPLBACKEND", "Agg")
        env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
        env["FKD_PROGRESS"] = "0"
        start = time.perf_counter()
        log_path = output_dir / "papermill.log"
        with open(log_path, "w", encoding="utf-8") as log_file:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       env=env, cwd=cwd, start_new_session=True)
            output = _PapermillOutput(log_file, notebook.stem, start, log)
            fd = process.stdout.fileno()
            pipe_open, status, stopping_since = True, "ok", None
            try:
                while (returncode := process.poll()) is None:
                    if pipe_open:
                        pipe_open = _read_available(fd, output, wait_s=0.2)
                    else:
                        time.sleep(0.2)
                    now = time.perf_counter()
                    if stopping_since is not None:
                        if now - stopping_since > STOP_GRACE_S:
                            _signal_group(process.pid, signal.SIGKILL)
                        continue
                    if stop is not None and stop.signal is not None:
                        status = "interrupted"
                    elif now - start > timeout_s:
                        status = "timeout"
                    else:
                        continue
                    stopping_since = now
                    _signal_group(process.pid, signal.SIGTERM)
            except BaseException:
                # an error of our own (a log callback that raised): the notebook must not
                # outlive it
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
                status = "failed"  # so that the kernel's group is ended below too
                raise
            finally:
                if status != "ok" and output.kernel_group is not None:
                    _signal_group(output.kernel_group, signal.SIGKILL)
                # what papermill wrote before it ended is in the pipe; a process the
                # notebook started may hold the pipe open for longer, and is not waited for
                drained_by = time.perf_counter() + 1.0
                while (pipe_open and time.perf_counter() < drained_by
                       and select.select([fd], [], [], 0)[0]):
                    pipe_open = _read_available(fd, output, wait_s=0)
                output.close()
                process.stdout.close()
        runtime = time.perf_counter() - start
    cell, error = _first_error(output_notebook)
    if status != "ok" and cell is None and output.cell is not None:
        cell = output.cell["index"]  # stopped between cells, or before the kernel answered
    if status == "timeout":
        error = f"exceeded the {timeout_s} s notebook timeout"
    elif status == "interrupted":
        error = f"interrupted by {stop.name}"
    elif returncode != 0:
        status = "failed"
        if error is None:
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            error = tail[-1] if tail else f"papermill exited with code {returncode}"
    return NotebookRun(notebook.stem, status, round(runtime, 1), str(output_notebook),
                       cell, error, dict(parameters))


def _read_claims(results_dir: Path, names: Sequence[str]) -> pd.DataFrame:
    frames = []
    for name in names:
        path = results_dir / name / "claims.csv"
        if path.exists():
            frame = pd.read_csv(path)
            frame.insert(0, "notebook", name)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (kept local to avoid a dependency on ``tabulate``)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.4g}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_claims_report(results_dir: Path, names: Sequence[str], profile: str) -> Path:
    """``CLAIMS.md``: one row per claim of every notebook that produced a claims.csv."""
    claims = _read_claims(results_dir, names)
    lines = [f"# Claims checked (profile `{profile}`)", ""]
    if claims.empty:
        lines.append("No notebook produced a claims table.")
    else:
        columns = [c for c in ("notebook", "id", "statement", "source", "status", "effect",
                               "ci_low", "ci_high", "mde", "paper_effect", "seeds",
                               "identities", "reason") if c in claims.columns]
        counts = claims["status"].value_counts() if "status" in claims else pd.Series(dtype=int)
        lines.append(", ".join(f"{status}: {count}" for status, count in counts.items()))
        lines += ["", _markdown_table(claims[columns])]
    path = results_dir / "CLAIMS.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _zoo_cost(results_dir: Path, name: str) -> dict[str, Any] | None:
    """The ``zoo`` block of a notebook's ``provenance.json`` (what training its models cost,
    :func:`fkdlib.notebook.training_cost`), if it recorded one."""
    try:
        record = json.loads((results_dir / name / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    zoo = record.get("zoo") if isinstance(record, dict) else None
    return zoo if isinstance(zoo, dict) else None


def runtime_columns(run: NotebookRun, zoo: Mapping[str, Any] | None) -> tuple[str, str, str]:
    """``(models trained in this run, warm runtime, cold runtime)`` as the report prints them.

    The run's own runtime is the warm one when it trained nothing; the cold one (an empty
    zoo) is the runtime less this run's training plus the recorded training of every model the
    notebook uses, parents and teachers included (each measured when it was trained)."""
    if run.status != "ok" or zoo is None:
        return "", "", ""
    warm = f"{run.runtime_s:.0f}" if zoo["trained_now"] == 0 else ""
    cold = run.runtime_s - zoo["trained_now_s"] + zoo["training_s"]
    return f"{zoo['trained_now']} of {zoo['models']}", warm, f"{cold:.0f}"


def write_run_report(results_dir: Path, figures_dir: Path, runs: Sequence[NotebookRun],
                     profile: str) -> Path:
    """``REPORT.md``: per notebook its status, runtime (and, where the notebook recorded its
    models' training cost, the warm and cold runtimes), tables and links to figures."""
    lines = [f"# Reproduction report (profile `{profile}`)", "",
             "| notebook | status | runtime (s) | models trained in this run | warm runtime (s) "
             "| cold runtime (s) | failing cell | error |", "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        trained, warm, cold = runtime_columns(run, _zoo_cost(results_dir, run.name))
        lines.append(f"| {run.name} | {run.status} | {run.runtime_s:.1f} | {trained} | {warm} "
                     f"| {cold} | {'' if run.failing_cell is None else run.failing_cell} | "
                     f"{(run.error or '').replace('|', '/')} |")
    lines += ["", "Warm: every model in the zoo (the run only evaluates). Cold: an empty zoo, "
              "computed as the runtime less this run's training plus the training time every "
              "model of the notebook took when it was trained (parents and teachers included, "
              "on whatever else the machine was doing then)."]
    for run in runs:
        lines += ["", f"## {run.name}", "", f"Status: **{run.status}**, {run.runtime_s:.1f} s. "
                  f"Executed notebook: `{os.path.relpath(run.output_notebook, results_dir)}`."]
        for table in sorted((results_dir / run.name).glob("*.md")):
            lines += ["", f"### {table.stem}", "", table.read_text(encoding="utf-8").strip()]
        figures = sorted((figures_dir / run.name).glob("*.png"))
        if figures:
            lines += ["", "Figures:", ""]
            lines += [f"- [{fig.stem}]({os.path.relpath(fig, results_dir)})" for fig in figures]
    path = results_dir / "REPORT.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` when inside it (executed notebooks then show portable
    paths), else absolute."""
    path, start = path.resolve(), start.resolve()
    return str(path.relative_to(start)) if path.is_relative_to(start) else str(path)


def reproduce(profile: str = "default", only: Sequence[str] | None = None,
              data: str = "synthface", seed: int = 0, device: str = "auto",
              notebooks_dir: str | os.PathLike | None = None,
              results_dir: str | os.PathLike | None = None,
              figures_dir: str | os.PathLike | None = None,
              timeout_s: int | None = None, log: Callable[[str], Any] | None = None,
              eval_sets: str = "", overrides: str = "") -> list[NotebookRun]:
    """Run the notebooks one at a time, continuing past failures, then write the reports.

    Every option is checked before any kernel starts (profile, overrides, seed, timeout,
    device, data, evaluation sets, ``only``). The notebooks are ``notebooks/`` of the project
    folder, the one at or above the current folder (:func:`fkdlib.notebook.project_root`).
    Results and figures go to its ``results/`` and ``figures/`` only for the committed
    configuration (default profile, seed 0, SynthFace, no ``eval_sets`` or ``overrides``),
    else under its ``build/`` (:mod:`fkdlib.outputs`); outside a project, ``notebooks_dir``,
    ``results_dir`` and ``figures_dir`` must be given. ``log`` gets every progress line
    (default: printed and flushed at once, also into a pipe or a file).

    Raises:
        FolderInUse: another reproduction holds the results folder's lock.
        Interrupted: SIGINT or SIGTERM stopped the run; the notebook that was running is
            recorded as ``interrupted`` and the reports cover what ran.
    """
    from .data import parse_data_arg
    from .evaluation.sources import parse_eval_sets
    from .runtime import resolve_device

    log = log or _say
    profile_obj = get_profile(profile, **parse_overrides(overrides))
    _check_seed(seed)
    if timeout_s is not None:
        _check_timeout(timeout_s)
    resolve_device(device)
    parse_data_arg(data)
    parse_eval_sets(eval_sets)
    notebooks_dir, results_dir, figures_dir = _folders(
        notebooks_dir, results_dir, figures_dir,
        lambda root: output_dirs(profile_obj.name, seed, data, eval_sets, overrides, root=root))
    notebooks = discover_notebooks(notebooks_dir, only)
    timeout_s = timeout_s or profile_obj.notebook_timeout_s
    cwd = notebooks_dir.parent
    runs: list[NotebookRun] = []
    with folder_lock(results_dir), StopSignals() as stop:
        log(f"writing results to {_shown(results_dir)} and figures to {_shown(figures_dir)}")
        if not notebooks:
            log(f"no notebooks found in {_shown(notebooks_dir)}")
        for notebook in notebooks:
            if stop.signal is not None:
                break
            parameters = {"profile": profile_obj.name, "seed": seed, "data": data,
                          "eval_sets": eval_sets, "overrides": overrides, "device": device,
                          "results_dir": _relative(results_dir / notebook.stem, cwd),
                          "figures_dir": _relative(figures_dir / notebook.stem, cwd)}
            log(f"[{notebook.stem}] running (profile {profile_obj.name}, timeout {timeout_s} s)"
                " ...")
            run = run_notebook(notebook, results_dir / notebook.stem, parameters, timeout_s,
                               cwd=cwd, log=log, stop=stop)
            record = {**asdict(run), "output_notebook": os.path.relpath(run.output_notebook,
                                                                        results_dir)}
            atomic_write_json(results_dir / notebook.stem / RUN_RECORD, record)
            where = f" in cell {run.failing_cell}" if run.failing_cell is not None else ""
            log(f"[{notebook.stem}] {run.status} after {run.runtime_s:.1f} s"
                + (f"{where}: {run.error}" if run.status != "ok" else ""))
            runs.append(run)
        reported = recorded_runs(results_dir, discover_notebooks(notebooks_dir),
                                 profile_obj.name, latest=runs)
        names = [run.name for run in reported]
        write_claims_report(results_dir, names, profile_obj.name)
        write_run_report(results_dir, figures_dir, reported, profile_obj.name)
    if stop.signal is not None:
        raise Interrupted(_interruption(runs, stop.name), runs)
    return runs


def _interruption(runs: Sequence[NotebookRun], signal_name: str) -> str:
    """The one line that says what a signal stopped."""
    if runs and runs[-1].status == "interrupted":
        return (f"interrupted during {runs[-1].name} ({signal_name}); stopped the notebook and "
                "its kernel; the reports cover what ran")
    if runs:
        return (f"interrupted ({signal_name}) after {runs[-1].name}; no notebook was running; "
                "the reports cover what ran")
    return f"interrupted ({signal_name}) before any notebook started"


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")


def _check_timeout(timeout_s: Any) -> None:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s <= 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, got {timeout_s!r}; "
                          "leave it out for the profile's limit")


def _folders(notebooks_dir: str | os.PathLike | None, results_dir: str | os.PathLike | None,
             figures_dir: str | os.PathLike | None,
             default_outputs: Callable[[Path], tuple[Path, Path]]) -> tuple[Path, Path, Path]:
    """The notebook, results and figures folders: those given, else the project's. Figures
    of a run given only a results folder go inside it (``<results>/figures``), never into the
    project's committed ``figures/``."""
    given = [Path(folder) if folder else None
             for folder in (notebooks_dir, results_dir, figures_dir)]
    if given[1] is not None and given[2] is None:
        given[2] = given[1] / "figures"
    if all(given):
        return given[0], given[1], given[2]
    root = project_root()
    if not ((root / "pyproject.toml").is_file() and (root / "fkdlib").is_dir()):
        missing = [option for option, folder in zip(
            ("--notebooks-dir", "--results-dir", "--figures-dir"), given) if folder is None]
        raise ConfigError(
            f"{Path.cwd()} is not inside a checkout of fkdlib (no folder at or above "
            "it holds pyproject.toml and fkdlib/), so there is no project to take the "
            "notebooks from or to write results into; run fkd reproduce in the checkout, or "
            f"pass {' and '.join(missing)}")
    results, figures = default_outputs(root)
    return given[0] or root / "notebooks", given[1] or results, given[2] or figures


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when inside it (how a reader typed it)."""
    absolute, here = Path(path).resolve(), Path.cwd().resolve()
    if absolute == here:
        return "."
    return str(absolute.relative_to(here)) if absolute.is_relative_to(here) else str(path)


def recorded_runs(results_dir: Path, notebooks: Sequence[Path], profile: str,
                  latest: Sequence[NotebookRun] = ()) -> list[NotebookRun]:
    """The runs the reports cover, in notebook order: ``latest`` (this invocation) and, for
    the other notebooks, the run recorded in ``results_dir`` by an earlier invocation with
    the same profile (so ``--only`` refreshes one notebook without dropping the others)."""
    fresh = {run.name: run for run in latest}
    runs = []
    for notebook in notebooks:
        if notebook.stem in fresh:
            runs.append(fresh[notebook.stem])
            continue
        path = results_dir / notebook.stem / RUN_RECORD
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            run = NotebookRun(**record)
        except (OSError, json.JSONDecodeError, TypeError):
            continue
        if run.parameters.get("profile") == profile:
            run.output_notebook = str(results_dir / run.output_notebook)
            runs.append(run)
    return runs


def add_reproduce_parser(subparsers: Any) -> None:
    """``fkd reproduce``."""
    parser = subparsers.add_parser(
        "reproduce", help="run the notebooks with papermill and build CLAIMS.md and REPORT.md",
        description="Run the notebooks of the fkdlib checkout you are in, one at a time, and "
                    "build results/CLAIMS.md and results/REPORT.md. Exit status: 0 every "
                    "notebook ran, 1 a notebook failed or timed out, 2 a bad option or a "
                    "folder in use, 130 stopped by Ctrl-C or SIGTERM.")
    parser.add_argument("--profile", default="default", help="smoke, default or paper")
    parser.add_argument("--only", default=None,
                        help="comma-separated notebook names, e.g. 01_arcface,02_vargfacenet")
    parser.add_argument("--data", default="synthface",
                        help="training data: synthface (default), rec:DIR (insightface "
                             "train.rec and .bin files) or folder:DIR (DIR/train/<identity>/, "
                             "evaluation from DIR/*.bin, DIR/pairs.txt, DIR/test/); see "
                             "data/README.md")
    parser.add_argument("--eval", dest="eval_sets", default="",
                        help="extra evaluation sets, comma-separated: lfw (the official LFW "
                             "pairs through scikit-learn; downloaded once)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="FIELD=VALUE",
                        help="override a profile field, e.g. --set epochs=1 (repeatable)")
    parser.add_argument("--seed", default="0", help="a non-negative integer (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--notebooks-dir", default=None,
                        help="folder of NN_name.ipynb notebooks (default: the project's "
                             "notebooks/)")
    parser.add_argument("--results-dir", default=None,
                        help="where results go (default: the project's results/, or build/... "
                             "for other settings); locked while the reproduction runs")
    parser.add_argument("--figures-dir", default=None,
                        help="where figures go (default: RESULTS_DIR/figures when --results-dir "
                             "is given, else the project's figures/, or build/... for other "
                             "settings)")
    parser.add_argument("--timeout", default=None,
                        help="per-notebook wall-clock limit in seconds, a positive integer "
                             "(default: the profile's)")
    parser.set_defaults(handler=_reproduce_command)


def _integer(option: str, text: str | None, meaning: str) -> int | None:
    """A command-line integer, or one line saying what was expected."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{option} must be {meaning}, got {text!r}") from None


def _reproduce_command(args: Any) -> int:
    only = (None if args.only is None
            else [name.strip() for name in args.only.split(",") if name.strip()])
    runs = reproduce(args.profile, only=only, data=args.data,
                     seed=_integer("--seed", args.seed, "a non-negative integer"),
                     device=args.device, notebooks_dir=args.notebooks_dir,
                     results_dir=args.results_dir, figures_dir=args.figures_dir,
                     timeout_s=_integer("--timeout", args.timeout,
                                        "a positive number of seconds"),
                     eval_sets=args.eval_sets, overrides=",".join(args.overrides))
    failed = [run for run in runs if run.status != "ok"]
    for run in failed:
        where = f"cell {run.failing_cell}" if run.failing_cell is not None else "no cell recorded"
        print(f"FAILED {run.name} ({run.status}, {where}): {run.error}", file=sys.stderr)
    return 1 if failed else 0
