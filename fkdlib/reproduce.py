"""Batch reproduction: run every notebook with papermill, then build the claim and run reports.

``fkd reproduce --profile default`` executes ``notebooks/NN_name.ipynb`` one at a time into
``results/NN_name/NN_name.ipynb``, each in its own process group under a wall-clock timeout, and
continues past a failure. It then writes ``results/CLAIMS.md`` (every claim of every notebook,
one row each) and ``results/REPORT.md`` (per notebook: status, runtime, tables, figures) and
returns non-zero if any notebook failed, naming the notebook and its failing cell.

The kernel is always this interpreter (``sys.executable``): a kernelspec named ``python3`` is
written to a temporary Jupyter data directory that is put first on ``JUPYTER_PATH`` for the
child, so no machine-specific kernel name is needed and the stored notebooks keep the generic
``python3`` kernelspec.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .errors import ConfigError, MissingDataError
from .io import atomic_write_json, atomic_write_text
from .outputs import output_dirs
from .profiles import get_profile, parse_overrides

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_PARAMETERS = ("profile", "seed", "data", "eval_sets", "overrides", "device",
                       "results_dir", "figures_dir")


# Each notebook's outcome, beside its results (output notebook path relative to the results).
RUN_RECORD = "run.json"


@dataclass
class NotebookRun:
    """The outcome of running one notebook."""

    name: str
    status: str  # "ok", "failed" or "timeout"
    runtime_s: float
    output_notebook: str
    failing_cell: int | None = None
    error: str | None = None
    parameters: dict = field(default_factory=dict)


def discover_notebooks(notebooks_dir: str | os.PathLike,
                       only: Sequence[str] | None = None) -> list[Path]:
    """The ``NN_name.ipynb`` notebooks in order; ``only`` selects by stem (``01_arcface``).

    An ``only`` name that matches no notebook is an error listing the available ones.
    """
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise MissingDataError(f"notebook folder {notebooks_dir} does not exist")
    found = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if only:
        stems = {p.stem: p for p in found}
        unknown = [name for name in only if name not in stems]
        if unknown:
            raise ConfigError(
                f"--only names unknown notebook(s) {unknown}; available: {', '.join(stems) or 'none'}"
            )
        found = [stems[name] for name in only]
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


def run_notebook(notebook: Path, output_dir: Path, parameters: dict, timeout_s: int,
                 cwd: Path, log=print) -> NotebookRun:
    """Execute one notebook with papermill in a child process group, killed after ``timeout_s``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    output_notebook = output_dir / notebook.name
    command = [sys.executable, "-m", "papermill", str(notebook), str(output_notebook),
               "--kernel", "python3", "--cwd", str(cwd), "--no-progress-bar"]
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
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                       env=env, cwd=cwd, start_new_session=True)
            try:
                returncode = process.wait(timeout=timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                returncode, timed_out = -9, True
        runtime = time.perf_counter() - start
    cell, error = _first_error(output_notebook)
    if timed_out:
        status = "timeout"
        error = f"exceeded the {timeout_s} s notebook timeout"
    elif returncode != 0:
        status = "failed"
        if error is None:
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            error = tail[-1] if tail else f"papermill exited with code {returncode}"
    else:
        status = "ok"
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


def write_run_report(results_dir: Path, figures_dir: Path, runs: Sequence[NotebookRun],
                     profile: str) -> Path:
    """``REPORT.md``: per notebook its status, runtime, tables and links to figures."""
    lines = [f"# Reproduction report (profile `{profile}`)", "",
             "| notebook | status | runtime (s) | failing cell | error |", "|---|---|---|---|---|"]
    for run in runs:
        lines.append(f"| {run.name} | {run.status} | {run.runtime_s:.1f} | "
                     f"{'' if run.failing_cell is None else run.failing_cell} | "
                     f"{(run.error or '').replace('|', '/')} |")
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
              timeout_s: int | None = None, log=print, eval_sets: str = "",
              overrides: str = "") -> list[NotebookRun]:
    """Run the notebooks one at a time, continuing past failures, then write the reports.

    Results and figures go to the committed ``results/`` and ``figures/`` only for the
    committed configuration (default profile, seed 0, SynthFace, no ``eval_sets`` or
    ``overrides``), else under ``build/`` (:mod:`fkdlib.outputs`); the data, evaluation sets
    and overrides are checked before any notebook starts."""
    from .data import parse_data_arg
    from .evaluation.sources import parse_eval_sets

    profile_obj = get_profile(profile, **parse_overrides(overrides))
    parse_data_arg(data)
    parse_eval_sets(eval_sets)
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else REPO_ROOT / "notebooks"
    default_results, default_figures = output_dirs(profile_obj.name, seed, data, eval_sets,
                                                   overrides, root=REPO_ROOT)
    results_dir = Path(results_dir) if results_dir else default_results
    figures_dir = Path(figures_dir) if figures_dir else default_figures
    log(f"writing results to {results_dir} and figures to {figures_dir}")
    timeout_s = timeout_s or profile_obj.notebook_timeout_s
    notebooks = discover_notebooks(notebooks_dir, only)
    if not notebooks:
        log(f"no notebooks found in {notebooks_dir}")
    runs = []
    for notebook in notebooks:
        cwd = notebooks_dir.parent
        parameters = {"profile": profile_obj.name, "seed": seed, "data": data,
                      "eval_sets": eval_sets, "overrides": overrides, "device": device,
                      "results_dir": _relative(results_dir / notebook.stem, cwd),
                      "figures_dir": _relative(figures_dir / notebook.stem, cwd)}
        log(f"[{notebook.stem}] running (profile {profile_obj.name}, timeout {timeout_s} s) ...")
        run = run_notebook(notebook, results_dir / notebook.stem, parameters, timeout_s, cwd=cwd)
        record = {**asdict(run), "output_notebook": os.path.relpath(run.output_notebook,
                                                                    results_dir)}
        atomic_write_json(results_dir / notebook.stem / RUN_RECORD, record)
        where = f" in cell {run.failing_cell}" if run.failing_cell is not None else ""
        log(f"[{notebook.stem}] {run.status} after {run.runtime_s:.1f} s"
            + (f"{where}: {run.error}" if run.status != "ok" else ""))
        runs.append(run)
    results_dir.mkdir(parents=True, exist_ok=True)
    reported = recorded_runs(results_dir, discover_notebooks(notebooks_dir), profile_obj.name,
                             latest=runs)
    names = [run.name for run in reported]
    write_claims_report(results_dir, names, profile_obj.name)
    write_run_report(results_dir, figures_dir, reported, profile_obj.name)
    return runs


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


def add_reproduce_parser(subparsers) -> None:
    """``fkd reproduce``."""
    parser = subparsers.add_parser(
        "reproduce", help="run the notebooks with papermill and build CLAIMS.md and REPORT.md")
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--figures-dir", default=None)
    parser.add_argument("--timeout", type=int, default=None,
                        help="per-notebook wall-clock limit in seconds (default: the profile's)")
    parser.set_defaults(handler=_reproduce_command)


def _reproduce_command(args) -> int:
    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    runs = reproduce(args.profile, only=only, data=args.data, seed=args.seed, device=args.device,
                     results_dir=args.results_dir, figures_dir=args.figures_dir,
                     timeout_s=args.timeout, eval_sets=args.eval_sets,
                     overrides=",".join(args.overrides))
    failed = [run for run in runs if run.status != "ok"]
    for run in failed:
        where = f"cell {run.failing_cell}" if run.failing_cell is not None else "no cell recorded"
        print(f"FAILED {run.name} ({run.status}, {where}): {run.error}", file=sys.stderr)
    return 1 if failed else 0
