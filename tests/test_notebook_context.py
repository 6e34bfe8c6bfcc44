"""What a notebook cell shows: saved figures inline, no stored progress widgets."""

import ast
import json
import os
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from IPython.core.formatters import DisplayFormatter

from fkdlib import notebook
from fkdlib.zoo import ModelSpec

FKDLIB = Path(__file__).resolve().parent.parent / "fkdlib"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "fkdlib").mkdir()
    monkeypatch.chdir(tmp_path)
    return notebook.start_notebook("01_x", "smoke", 0, "cpu")


def test_a_saved_figure_is_shown_inline_as_png_and_closed(ctx):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [1, 0])
    shown = ctx.save_figure(fig, "line")
    assert [p.name for p in shown.paths] == ["line.png", "line.pdf", "line.svg"]
    assert all(p.exists() for p in shown.paths)
    assert not plt.fignum_exists(fig.number)  # an inline backend will not show it twice
    data, _ = DisplayFormatter().format(shown)
    assert data["image/png"][:8] == PNG_MAGIC
    # screen resolution: 4 x 3 inches at 110 dpi, not the saved file's 300 dpi
    width = int.from_bytes(shown.png[16:20], "big")
    assert 300 < width < 4 * 300 * 0.6
    assert shown.png != shown.paths[0].read_bytes()
    assert data["text/plain"] == f"saved {', '.join(str(p) for p in shown.paths)}"


def test_progress_bars_go_through_fkdlib_progress():
    """A direct tqdm bar ignores FKD_PROGRESS=0 and stores a dead widget in every notebook
    that ``fkd reproduce`` executes; only fkdlib.progress may import tqdm."""
    importers = []
    for path in FKDLIB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "tqdm" for name in names):
                importers.append(path.relative_to(FKDLIB).as_posix())
    assert importers == ["progress.py"]


def _spec(name, **fields):
    # the name is not part of the zoo key; the seed makes each spec its own entry
    return ModelSpec(backbone="iresnet18", head="softmax", data={"kind": "synthface"},
                     train={"epochs": 2, "seed": sum(map(ord, name))}, name=name, **fields)


def _zoo_entry(cache, spec, epoch_seconds, written):
    entry = cache / spec.key
    entry.mkdir(parents=True)
    pd.DataFrame({"epoch": range(1, len(epoch_seconds) + 1),
                  "time_s": epoch_seconds}).to_csv(entry / "history.csv", index=False)
    (entry / "manifest.json").write_text("{}")
    os.utime(entry / "manifest.json", (written, written))


def test_training_cost_counts_each_model_parent_and_teacher_once(tmp_path):
    teacher = _spec("teacher")
    parent = _spec("pre-training")
    student = _spec("student", init_from=parent, method="distill",
                    method_kwargs={"teacher": teacher.to_dict()})
    sibling = _spec("sibling", init_from=parent)
    unknown = _spec("not in this zoo")
    start = 1_000_000.0
    _zoo_entry(tmp_path, teacher, [30.0, 30.5], written=start - 100)  # an earlier run
    _zoo_entry(tmp_path, parent, [10.0, 10.0], written=start - 50)
    _zoo_entry(tmp_path, student, [12.0, 13.0], written=start + 10)  # this run
    _zoo_entry(tmp_path, sibling, [11.0, 11.0], written=start + 20)
    models = [SimpleNamespace(spec=spec) for spec in (student, sibling, sibling, unknown)]
    cost = notebook.training_cost(models, tmp_path, since=start)
    assert cost == {"models": 5, "training_s": 30 + 30.5 + 20 + 25 + 22, "trained_now": 2,
                    "trained_now_s": 47.0}


def test_finish_records_the_training_cost_of_the_models_it_is_given(ctx):
    spec = _spec("one")
    _zoo_entry(ctx.cache_dir, spec, [5.0], written=ctx.started_at - 1)
    record = ctx.finish({"one": [SimpleNamespace(spec=spec)]})
    assert record["zoo"] == {"models": 1, "training_s": 5.0, "trained_now": 0,
                             "trained_now_s": 0.0}
    assert json.loads((ctx.results_dir / "provenance.json").read_text())["zoo"] == record["zoo"]
    assert "zoo" not in ctx.finish()  # no models given, no cost claimed
