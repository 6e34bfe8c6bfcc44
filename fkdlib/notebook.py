"""The first and last cells of every notebook: set-up, where outputs go, provenance.

``ctx = start_notebook("01_arcface", profile, seed, device, data)`` moves to the project root
(so a notebook opened from ``notebooks/`` in JupyterLab and one run by ``fkd reproduce`` see the
same relative paths), seeds everything, picks the device and the thread count, applies the one
figure style, and returns a context whose ``save_table`` / ``save_figure`` / ``save_claims``
write atomically under ``results/<notebook>/`` and ``figures/<notebook>/`` — for the committed
configuration only; any other profile, seed, data, evaluation set or override writes under
``build/…`` (:mod:`fkdlib.outputs`). ``ctx.finish()`` writes ``provenance.json`` (code
version, packages, device, profile, runtime).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.figure import Figure

from .io import atomic_write_json
from .outputs import is_committed_run, output_dirs
from .profiles import Profile, get_profile, parse_overrides
from .report.claims import save_claims
from .report.figures import save_figure, use_style
from .report.results import save_table
from .runtime import configure, provenance
from .zoo import ModelSpec, TrainedModel


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` holding ``pyproject.toml`` and ``fkdlib/``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "fkdlib").is_dir():
            return folder
    return here


@dataclass
class NotebookContext:
    """Where a notebook writes, and what it needs to say about the run."""

    name: str
    profile: Profile
    seed: int
    data: str
    device: torch.device
    results_dir: Path
    figures_dir: Path
    cache_dir: Path
    eval_sets: str = ""
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)  # wall clock, to compare file times
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def assess(self) -> bool:
        """Whether claims get a verdict (not on the smoke profile)."""
        return self.profile.assess_claims

    def save_table(self, frame: pd.DataFrame, name: str, caption: str | None = None,
                   float_format: str = "{:.2f}") -> dict[str, Path]:
        """CSV + Markdown + LaTeX + provenance under ``results/<notebook>/``."""
        return save_table(frame, self.results_dir / name, caption=caption,
                          provenance=self.provenance(), float_format=float_format)

    def save_figure(self, fig: Figure, name: str) -> SavedFigure:
        """PNG + PDF + SVG under ``figures/<notebook>/``; the returned object shows the figure
        inline as the last expression of a cell (executed notebooks then carry their plots,
        and GitHub-style viewers show them). The figure is closed, so a backend that shows
        open figures at the end of a cell does not show it a second time."""
        paths = save_figure(fig, self.figures_dir / name)
        shown = SavedFigure.from_figure(fig, paths)
        plt.close(fig)
        return shown

    def save_claims(self, checked: pd.DataFrame) -> pd.DataFrame:
        """``claims.csv`` and ``claims.md`` under ``results/<notebook>/`` (the table of
        :func:`fkdlib.report.claims.evaluate_claims`)."""
        save_claims(checked, self.results_dir / "claims")
        return checked

    def time(self, label: str) -> _Timer:
        """``with ctx.time("training"):`` records a stage's wall-clock time."""
        return _Timer(self.timings, label)

    def provenance(self, **extra: Any) -> dict[str, Any]:
        return provenance(self.device, notebook=self.name, profile=self.profile.to_dict(),
                          seed=self.seed, data=self.data, eval_sets=self.eval_sets, **extra)

    def finish(self, *models: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``provenance.json`` with the total runtime, the per-stage timings and, given
        the notebook's trained models (``{name: [model per seed]}`` dicts), what training them
        cost (:func:`training_cost`): the reproduction report derives the cold runtime from
        it."""
        extra = {}
        if models:
            trained = [model for group in models for runs in group.values()
                       for model in (runs if isinstance(runs, Sequence) else [runs])]
            extra["zoo"] = training_cost(trained, self.cache_dir, since=self.started_at)
        record = self.provenance(runtime_s=round(time.perf_counter() - self.started, 1),
                                 timings_s={k: round(v, 1) for k, v in self.timings.items()},
                                 **extra)
        atomic_write_json(self.results_dir / "provenance.json", record)
        return record


def _made_from(spec: ModelSpec) -> Iterator[ModelSpec]:
    """``spec`` and every model it was made from: its ``init_from`` parent and its
    distillation teacher, recursively."""
    yield spec
    if spec.init_from is not None:
        yield from _made_from(spec.init_from)
    teacher = spec.method_kwargs.get("teacher")
    if teacher:
        yield from _made_from(ModelSpec.from_dict(teacher))


def training_cost(models: Iterable[TrainedModel], cache_dir: str | os.PathLike,
                  since: float) -> dict[str, Any]:
    """What training ``models`` cost, as the model zoo recorded it: each model and the models
    it was made from (parents, teachers), counted once, with the wall-clock seconds of their
    training epochs (``history.csv``). ``trained_now`` counts those whose zoo entry was
    written after ``since`` (a :func:`time.time` value: the start of this run).

    A notebook's cold runtime (empty zoo) is then its runtime less this run's training plus
    all of it: ``runtime_s - trained_now_s + training_s``.
    """
    specs = {spec.key: spec for model in models for spec in _made_from(model.spec)}
    total = now = 0.0
    trained_now = 0
    for key in specs:
        entry = Path(cache_dir) / key
        try:
            seconds = float(pd.read_csv(entry / "history.csv")["time_s"].sum())
            written = (entry / "manifest.json").stat().st_mtime
        except (OSError, KeyError, ValueError, pd.errors.EmptyDataError):
            continue  # not in this zoo (e.g. a model loaded from elsewhere): no cost known
        total += seconds
        if written >= since:
            trained_now += 1
            now += seconds
    return {"models": len(specs), "training_s": round(total, 1), "trained_now": trained_now,
            "trained_now_s": round(now, 1)}


@dataclass(frozen=True)
class SavedFigure:
    """A saved figure as a notebook shows it: a PNG at screen resolution (``_repr_png_``)
    and, as plain text, the files written."""

    paths: tuple[Path, ...]
    png: bytes

    DISPLAY_DPI = 110  # the saved PNG has 300 dpi; this keeps executed notebooks small

    @classmethod
    def from_figure(cls, fig: Figure, paths: list[Path]) -> SavedFigure:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=cls.DISPLAY_DPI, bbox_inches="tight")
        return cls(tuple(paths), buffer.getvalue())

    def _repr_png_(self) -> bytes:
        return self.png

    def __repr__(self) -> str:
        return "saved " + ", ".join(str(path) for path in self.paths)


class _Timer:
    def __init__(self, timings: dict[str, float], label: str):
        self.timings, self.label = timings, label

    def __enter__(self) -> _Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.timings[self.label] = self.timings.get(self.label, 0.0) + \
            time.perf_counter() - self.start


def start_notebook(name: str, profile: str = "default", seed: int = 0, device: str = "auto",
                   data: str = "synthface", results_dir: str | None = None,
                   figures_dir: str | None = None,
                   cache_dir: str = "data/cache/models", eval_sets: str = "",
                   overrides: str = "") -> NotebookContext:
    """Set up a notebook run (see the module docstring). ``eval_sets`` names extra evaluation
    sets (``"lfw"``); ``overrides`` changes profile fields (``"epochs=1,seeds=1"``,
    :func:`~fkdlib.profiles.parse_overrides`)."""
    os.chdir(project_root())
    profile_obj = get_profile(profile, **parse_overrides(overrides))
    torch_device = configure(seed=seed, device=device, num_threads=profile_obj.num_threads)
    use_style()
    default_results, default_figures = output_dirs(profile_obj.name, seed, data, eval_sets,
                                                   overrides)
    results = Path(results_dir or default_results / name)
    figures = Path(figures_dir or default_figures / name)
    results.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    if results_dir is None and not is_committed_run(profile_obj.name, seed, data, eval_sets,
                                                    overrides):
        print(f"writing under {results.parent.parent} (not the committed results/: this run's "
              "settings differ from the default profile on SynthFace, seed 0)")
    return NotebookContext(name, profile_obj, seed, data, torch_device, results, figures,
                           Path(cache_dir), eval_sets)
