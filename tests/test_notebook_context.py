"""What a notebook cell shows: saved figures inline, no stored progress widgets."""

import ast
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from IPython.core.formatters import DisplayFormatter

from fkdlib import notebook

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
