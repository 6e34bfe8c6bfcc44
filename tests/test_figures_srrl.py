"""The figures of notebook 03 (fkdlib.experiments.srrl), built from small hand-made inputs."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402

from conftest import pair_evaluation  # noqa: E402
from fkdlib.experiments import srrl  # noqa: E402

ROWS = [srrl.STUDENT, *srrl.KD_ZOO, *srrl.SRRL_ROWS, srrl.TEACHER]




def _evaluation(name, quality, seed=0):
    rng = np.random.default_rng(seed)
    return pair_evaluation(name, rng.normal(quality, 0.1, 40), rng.normal(0.0, 0.2, 400))


@pytest.fixture(scope="module")
def evaluations():
    return {name: _evaluation(name, 0.4 + 0.04 * k, seed=k) for k, name in enumerate(ROWS)}


def test_tsne_figure_one_panel_per_row_without_ticks_or_legends():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 3)
    points = {row: (rng.normal(size=(12, 2)), labels) for row in srrl.TSNE_ROWS}
    fig = srrl.tsne_figure(points)
    assert [ax.get_title() for ax in fig.axes] == list(srrl.TSNE_ROWS)
    for ax, (xy, _) in zip(fig.axes, points.values()):
        assert len(ax.collections) == 4 and ax.get_legend() is None
        assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
        np.testing.assert_allclose(np.concatenate([c.get_offsets() for c in ax.collections]), xy)
    assert fig.legends == []
    assert tuple(fig.get_size_inches()) == pytest.approx((3.4 * len(points), 3.6))


def test_similarity_figure_puts_the_teacher_in_every_panel(evaluations):
    fig = srrl.similarity_figure(evaluations)
    shown = [srrl.STUDENT, *srrl.KD_ZOO, *srrl.SRRL_ROWS]
    assert [ax.get_title() for ax in fig.axes] == shown
    edges = np.linspace(-1, 1, 81)
    for ax, row in zip(fig.axes, shown):
        stairs = {p.get_label(): p for p in ax.patches if isinstance(p, StepPatch)}
        assert set(stairs) == {f"{name} ({kind})" for name in (row, srrl.TEACHER)
                               for kind in ("pos", "neg")}
        for name in (row, srrl.TEACHER):
            expected, _ = np.histogram(evaluations[name].negatives("ijb"), bins=edges,
                                       density=True)
            np.testing.assert_allclose(stairs[f"{name} (neg)"].get_data().values, expected)
            assert stairs[f"{name} (pos)"].get_edgecolor() == to_rgba(srrl.ROW_COLORS[name])
        assert ax.get_legend() is None
        # the teacher drawn first, so where a row matches it the row's colour shows
        assert [p.get_label() for p in ax.patches if isinstance(p, StepPatch)][:2] == [
            f"{srrl.TEACHER} (pos)", f"{srrl.TEACHER} (neg)"]
    for ax in fig.axes[1:]:  # nine compared panels: every axis shared
        assert fig.axes[0].get_shared_x_axes().joined(fig.axes[0], ax)
        assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], ax)
    assert fig.axes[0].get_yscale() == "log"
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["positive pairs", "negative pairs",
                                                          srrl.TEACHER]
    assert all(t.get_fontsize() >= 10 for t in legend.get_texts())


def test_roc_figure_styles_the_kd_zoo_and_starts_at_the_lowest_reportable_far(evaluations):
    study = SimpleNamespace(bench=None)
    fig = srrl.roc_figure(study, evaluations)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == ROWS
    for line in ax.lines:
        row = line.get_label()
        fpr, tpr = evaluations[row].roc("ijb")
        np.testing.assert_allclose(line.get_ydata(), tpr[fpr > 0])
        assert line.get_color() == srrl.ROW_COLORS[row]
        assert line.get_linestyle() == ("--" if row in srrl.KD_ZOO else "-")
        assert line.get_linewidth() == (2.4 if row == srrl.OURS else 1.6)
    # 400 negatives: 100 of them lie above the threshold from FAR 0.25 on
    assert ax.get_xlim()[0] == pytest.approx(100 / 400)
    assert ax.get_title() == "IJB-like 1:1 verification"
    low = srrl.roc_figure(study, evaluations, rows=[srrl.STUDENT])
    assert [line.get_label() for line in low.axes[0].lines] == [srrl.STUDENT]
