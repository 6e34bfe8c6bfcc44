"""The figures of notebook 02 (fkdlib.experiments.vargfacenet), built from small hand-made
inputs."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex, to_rgba  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402

from fkdlib.evaluation import project  # noqa: E402
from fkdlib.evaluation.benchmark import identity_sample_rows  # noqa: E402
from conftest import pair_evaluation  # noqa: E402
from fkdlib.experiments import vargfacenet as exp  # noqa: E402
from fkdlib.report.figures import PALETTE  # noqa: E402

GEN = [exp.generation_label(k) for k in range(exp.GENERATIONS + 1)]
TRIO = {"teacher (IResNet-50)": exp.DISTILLATION_TEACHER, "scratch (VarGFaceNet)": exp.STUDENT,
        "VarGFaceNet (angular KD, gen 0)": GEN[0]}




def _evaluation(name, quality, seed=0, test_embeddings=None):
    rng = np.random.default_rng(seed)
    return pair_evaluation(name, rng.normal(quality, 0.1, 50), rng.normal(0.0, 0.2, 300),
                           test_embeddings if test_embeddings is not None else np.eye(3))


def test_efficiency_figure_bars_are_the_ratios_to_iresnet50():
    rows = []
    for setting, scale in (("published (112 px)", 1.0), ("profile (32 px)", 0.1)):
        for backbone, macs, latency in ((exp.TEACHER, 400.0, (1.0, 1.0)),
                                        (exp.STUDENT, 100.0, (1.5, 0.8)),
                                        (exp.MOBILE, 80.0, (1.2, 0.6))):
            rows.append({"setting": setting, "backbone": backbone, exp.MACS_COL: scale * macs,
                         f"latency b=1 / {exp.TEACHER}": latency[0],
                         f"latency b=4 / {exp.TEACHER}": latency[1]})
    efficiency = pd.DataFrame(rows)
    fig = exp.efficiency_figure(efficiency, (1, 4))
    assert [ax.get_title() for ax in fig.axes] == ["published (112 px)", "profile (32 px)"]
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    for ax in fig.axes:
        assert len(ax.patches) == 3 * 3  # three bars (multiply-adds, two latencies) per backbone
        heights = np.array([p.get_height() for p in ax.patches]).reshape(3, 3)
        np.testing.assert_allclose(heights[0], [1.0, 0.25, 0.2])
        np.testing.assert_allclose(heights[1], [1.0, 1.5, 1.2])
        np.testing.assert_allclose(heights[2], [1.0, 0.8, 0.6])
        colors = [to_hex(ax.patches[3 * i].get_facecolor()) for i in range(3)]
        assert colors == [c.lower() for c in PALETTE[:3]]
        assert [t.get_text() for t in ax.get_xticklabels()] == [exp.TEACHER, exp.STUDENT,
                                                                exp.MOBILE]
        assert ax.lines[0].get_ydata()[0] == 1.0  # the IResNet-50 line
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "multiply-adds", "latency, batch 1", "latency, batch 4"]
    assert fig.axes[1].get_legend() is None
    assert [ax.get_ylabel() for ax in fig.axes] == [f"ratio to {exp.TEACHER}", ""]


def test_training_curves_figure_one_line_per_model():
    histories = {name: pd.DataFrame({"epoch": [1, 2, 3], "loss": [30.0, 20.0 - k, 10.0 - k]})
                 for k, name in enumerate([exp.DISTILLATION_TEACHER, exp.STUDENT, exp.MOBILE])}
    fig = exp.training_curves_figure(histories)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == list(histories)
    for line, (name, history) in zip(ax.lines, histories.items()):
        np.testing.assert_allclose(line.get_ydata(), history.loss)
        assert line.get_color() == exp.model_color(name)
    # 30 down to 8: less than a decade, so a linear axis with readable ticks (a log axis
    # labelled only 10 and 20 here), whole epochs on x
    assert ax.get_yscale() == "linear"
    assert ax.get_ylabel() == "training loss (CosFace; nats, epoch mean)"
    assert ax.get_xlabel() == "epoch"
    fig.canvas.draw()
    low, high = ax.get_ylim()
    assert len([t for t in ax.get_yticklabels() if low <= t.get_position()[1] <= high]) >= 4
    assert all(float(tick).is_integer() for tick in ax.get_xticks())
    # one legend, outside the axes
    assert ax.get_legend() is None
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == list(histories)


def test_training_curves_figure_log_axis_over_decades():
    histories = {exp.STUDENT: pd.DataFrame({"epoch": np.arange(1, 9),
                                            "loss": 40.0 * 0.5 ** np.arange(8)})}
    fig = exp.training_curves_figure(histories)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert ax.get_ylabel() == "training loss (CosFace; nats, epoch mean), log scale"
    fig.canvas.draw()
    low, high = ax.get_ylim()
    labels = [t.get_text() for t in ax.get_yticklabels()
              if low <= t.get_position()[1] <= high and t.get_text()]
    assert labels == ["0.5", "1", "2", "5", "10", "20", "50"]


def test_generations_figure_ours_beside_the_official_results():
    accuracies = {exp.DISTILLATION_TEACHER: (95.0, 94.0), exp.STUDENT: (80.0, 79.0),
                  GEN[0]: (85.0, 84.0), GEN[1]: (86.0, 85.5), GEN[2]: (87.0, 85.0)}
    generations = pd.DataFrame([{"model": name, "LFW-like acc": lfw, "CFP-FP-like acc": cfp}
                                for name, (lfw, cfp) in accuracies.items()])
    official = pd.DataFrame({"generation": [0, 1, 2], "LFW (paper)": [99.68, 99.78, 99.83],
                             "CFP-FP (paper)": [98.1, 98.4, 98.3],
                             "AgeDB-30 (paper)": [98.1, 98.07, 98.05]})
    fig = exp.generations_figure(generations, official)
    ours, paper = fig.axes
    curves = [line for line in ours.lines if line.get_linestyle() == "-"]
    teacher = [line for line in ours.lines if line.get_linestyle() == "--"]
    assert [line.get_label() for line in curves] == ["LFW-like", "CFP-FP-like"]  # no AgeDB
    np.testing.assert_allclose(curves[0].get_ydata(), [80.0, 85.0, 86.0, 87.0])
    np.testing.assert_allclose(curves[1].get_ydata(), [79.0, 84.0, 85.5, 85.0])
    assert list(curves[0].get_xdata()) == ["scratch", "gen 0", "gen 1", "gen 2"]
    assert [line.get_ydata()[0] for line in teacher] == [95.0, 94.0]
    assert [line.get_color() for line in curves] == [line.get_color() for line in teacher] \
        == list(PALETTE[:2])
    assert [line.get_label() for line in paper.lines] == ["LFW", "CFP-FP"]
    np.testing.assert_allclose(paper.lines[0].get_ydata(), official["LFW (paper)"])
    assert list(paper.lines[1].get_xdata()) == ["gen 0", "gen 1", "gen 2"]
    assert ours.get_ylabel() == "10-fold accuracy (%)"
    assert ours.get_title() == "ours (SynthFace); dashed: teacher"
    assert paper.get_title() == "official results (MS1M)"
    real = exp.generations_figure(generations, official, source="LFW (scikit-learn)")
    assert real.axes[0].get_title() == "ours (LFW (scikit-learn)); dashed: teacher"


def test_accuracy_vs_cost_figure_scatters_cost_against_each_metric():
    cost = pd.DataFrame([
        {"model": name, exp.PARAMS_COL: p, exp.FLOPS_COL: f, "LFW-like acc": a,
         f"IJB-like TAR@{exp.CLAIM_FAR:g}": t}
        for name, p, f, a, t in ((exp.DISTILLATION_TEACHER, 0.5, 16.0, 93.0, 0.12),
                                 (exp.TEACHER, 0.5, 16.0, 83.0, 0.06),
                                 (exp.STUDENT, 0.2, 5.5, 75.0, 0.01),
                                 (GEN[0], 0.2, 5.5, 89.0, 0.04),
                                 (GEN[1], 0.2, 5.5, 90.0, 0.05))])
    fig = exp.accuracy_vs_cost_figure(cost)
    assert len(fig.axes) == 4
    shown = [exp.DISTILLATION_TEACHER, exp.TEACHER, exp.STUDENT, GEN[0]]  # no gen 1
    for index, ax in enumerate(fig.axes):
        xcol = exp.FLOPS_COL if index < 2 else exp.PARAMS_COL
        metric = ["LFW-like acc", f"IJB-like TAR@{exp.CLAIM_FAR:g}"][index % 2]
        assert ax.get_xlabel() == xcol and ax.get_ylabel() == metric
        assert ax.get_xscale() == "log"
        assert [c.get_label() for c in ax.collections] == shown
        frame = cost.set_index("model")
        for scatter in ax.collections:
            np.testing.assert_allclose(scatter.get_offsets()[0],
                                       frame.loc[scatter.get_label(), [xcol, metric]])
            assert to_hex(scatter.get_facecolor()[0]) == \
                exp.model_color(scatter.get_label()).lower()
        (arrow,) = ax.texts
        assert arrow.xy == pytest.approx(tuple(frame.loc[GEN[0], [xcol, metric]]))
    # the two panels of a metric share their y axis; one legend for the figure
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[2])
    assert not fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == shown


def test_similarity_and_projection_figures_of_the_trio(monkeypatch):
    rng = np.random.default_rng(3)
    evaluations = {name: _evaluation(name, q, seed=k, test_embeddings=rng.normal(size=(30, 4)))
                   for k, (name, q) in enumerate(zip(TRIO.values(), (0.9, 0.5, 0.7)))}
    fig = exp.similarity_figure(evaluations, TRIO)
    assert [ax.get_title() for ax in fig.axes] == list(TRIO)
    for ax in fig.axes[1:]:  # compared panels: both axes shared, one legend
        assert fig.axes[0].get_shared_x_axes().joined(fig.axes[0], ax)
        assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], ax)
        assert ax.get_legend() is None
    assert len(fig.legends) == 1
    for ax, (label, name) in zip(fig.axes, TRIO.items()):
        stairs = [p for p in ax.patches if isinstance(p, StepPatch)]
        np.testing.assert_allclose(stairs[0].get_data().edges, np.linspace(-1, 1, 81))
        expected, _ = np.histogram(evaluations[name].positives("ijb"),
                                   bins=np.linspace(-1, 1, 81), density=True)
        np.testing.assert_allclose(stairs[0].get_data().values, expected)
        assert stairs[0].get_edgecolor() == to_rgba(exp.model_color(name))
    metadata = pd.DataFrame({"identity": np.repeat(np.arange(6), 5)})
    fig = exp.projection_figure(evaluations, metadata, TRIO, identities=3, max_points=12,
                                seed=2, method="pca")
    assert [ax.get_title() for ax in fig.axes] == [f"{label} · PCA" for label in TRIO]
    rows = identity_sample_rows(metadata, 3, 12, 2)
    for ax, name in zip(fig.axes, TRIO.values()):
        xy = project(evaluations[name].embeddings["test"][rows], method="pca", random_state=2)
        np.testing.assert_allclose(np.concatenate([c.get_offsets() for c in ax.collections]),
                                   xy)  # identities in pool order, so the groups concatenate
    monkeypatch.setattr(exp, "project", lambda features, method, random_state: features[:, :2])
    tsne = exp.projection_figure(evaluations, metadata, TRIO, identities=3, seed=2)
    assert tsne.axes[0].get_title() == "teacher (IResNet-50) · t-SNE"


def test_roc_figure_defaults_to_every_trained_model():
    models = [exp.DISTILLATION_TEACHER, exp.TEACHER, exp.MOBILE, exp.STUDENT, exp.DEPTHWISE,
              *GEN]
    evaluations = {name: _evaluation(name, 0.3 + 0.05 * k, seed=k)
                   for k, name in enumerate(models)}
    fig = exp.roc_figure(evaluations)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == models
    for line, name in zip(ax.lines, models):
        fpr, tpr = evaluations[name].roc("ijb")
        np.testing.assert_allclose(line.get_xdata(), fpr[fpr > 0])
        np.testing.assert_allclose(line.get_ydata(), tpr[fpr > 0])
        assert line.get_color() == exp.model_color(name)
    # from the lowest FAR with 100 of the list's negatives above the threshold
    negatives = evaluations[models[0]].num_negatives("ijb")
    assert ax.get_xlim()[0] == pytest.approx(100 / negatives)
    assert ax.get_legend()._loc == 2  # upper left
    assert [line.get_label() for line in exp.roc_figure(
        evaluations, models=[exp.STUDENT]).axes[0].lines] == [exp.STUDENT]
