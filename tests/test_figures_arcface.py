"""The figures of notebook 01 (fkdlib.experiments.arcface), built from small hand-made inputs."""

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.colors import to_hex, to_rgba  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402

from fkdlib.evaluation import project  # noqa: E402
from fkdlib.evaluation.benchmark import identity_sample_rows  # noqa: E402
from conftest import pair_evaluation  # noqa: E402
from fkdlib.experiments import arcface as exp  # noqa: E402
from fkdlib.report.figures import method_color  # noqa: E402




def _evaluation(name, shift, seed=0, test_embeddings=None):
    rng = np.random.default_rng(seed)
    positive, negative = rng.uniform(0.2, 0.9, 60) + shift, rng.uniform(-0.5, 0.4, 200)
    return pair_evaluation(name, positive, negative,
                           test_embeddings if test_embeddings is not None else np.eye(3))


def _history(epochs, seed):
    rng = np.random.default_rng(seed)
    angles = [rng.uniform(60 - 10 * e, 90 - 10 * e, 40) for e in range(epochs)]
    return pd.DataFrame({"epoch": np.arange(1, epochs + 1), "loss": 10.0 / np.arange(1, epochs + 1),
                         "theta_mean": [a.mean() for a in angles],
                         "theta_deg": [json.dumps(a.tolist()) for a in angles],
                         "time_s": np.ones(epochs)})


def test_target_logit_figure_draws_every_column():
    theta = np.linspace(0, 180, 7)
    curves = pd.DataFrame({"theta_deg": theta, "Softmax": np.cos(np.radians(theta)),
                           "ArcFace": np.cos(np.radians(theta) + 0.5)})
    fig = exp.target_logit_figure(curves)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == [
        "Softmax: cos θ  (‖W‖ = ‖x‖ = 1, b = 0)", "ArcFace: cos(θ + 0.5)"]
    for line, name in zip(ax.lines, ("Softmax", "ArcFace")):
        np.testing.assert_allclose(line.get_xdata(), theta)
        np.testing.assert_allclose(line.get_ydata(), curves[name])
        assert line.get_color() == method_color(name)
    assert ax.get_xlim() == (0, 180) and list(ax.get_xticks()) == list(range(0, 181, 30))
    assert ax.get_ylabel() == "target logit / s"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == \
        [line.get_label() for line in ax.lines]


def test_target_logit_figure_shows_overlapping_curves_and_explains_the_step():
    fig = exp.target_logit_figure(exp.target_logit_curves())
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.lines]
    assert [label.split(":")[0] for label in labels] == list(exp.LOSSES)
    # Softmax and Norm-Softmax are both cos θ: the second says so and is dashed over the first
    softmax, norm = ax.lines[:2]
    np.testing.assert_allclose(softmax.get_ydata(), norm.get_ydata())
    assert labels[1] == "Norm-Softmax: cos θ  (= Softmax)"
    assert softmax.get_linewidth() > norm.get_linewidth()
    assert len({(line.get_linestyle(), line.get_marker()) for line in ax.lines}) == 6
    assert labels[2] == "SphereFace: ψ(1.5θ)" and labels[3] == "CosFace: cos θ − 0.35"
    assert labels[5] == "CM (1,0.3,0.2): ψ(θ + 0.3) − 0.2"
    # ArcFace's step at θ = π − m: from −1 down to −cos m − m·sin m, as the head computes it
    m = exp.LOSSES["ArcFace"][1]["m"]
    (step,) = [t for t in ax.texts if "ArcFace past" in t.get_text()]
    assert "π − m = 151°" in step.get_text() and "cos θ − m·sin m" in step.get_text()
    assert "easy_margin=False" in step.get_text() and "−1.12" in step.get_text()
    assert step.xy[0] == pytest.approx(np.degrees(np.pi - m))
    curve = exp.target_logit_curves(num_points=3601)
    before = curve[curve.theta_deg < np.degrees(np.pi - m)].ArcFace.iloc[-1]
    after = curve[curve.theta_deg > np.degrees(np.pi - m)].ArcFace.iloc[0]
    assert before == pytest.approx(-1.0, abs=1e-4)
    assert after == pytest.approx(-np.cos(m) - m * np.sin(m), abs=1e-3)
    assert step.xy[1] == pytest.approx((-1 - np.cos(m) - m * np.sin(m)) / 2)
    assert any("ψ(φ) = (−1)ᵏ cos φ − 2k" in t.get_text() for t in ax.texts)
    # without a ψ loss or ArcFace, no note and no annotation
    theta = np.linspace(0, 180, 5)
    plain = exp.target_logit_figure(pd.DataFrame({"theta_deg": theta,
                                                  "CosFace": np.cos(np.radians(theta)) - 0.35}))
    assert len(plain.axes[0].texts) == 0


def test_training_curves_figure_plots_loss_and_mean_angle():
    histories = {"Softmax": _history(3, 0), "ArcFace": _history(3, 1)}
    fig = exp.training_curves_figure(histories)
    loss, theta = fig.axes
    assert len(loss.lines) == len(theta.lines) == 2
    for name, history in histories.items():
        (loss_line,) = [line for line in loss.lines if line.get_label() == name]
        (theta_line,) = [line for line in theta.lines if line.get_label() == name]
        np.testing.assert_allclose(loss_line.get_xdata(), history.epoch)
        np.testing.assert_allclose(loss_line.get_ydata(), history.loss)
        np.testing.assert_allclose(theta_line.get_ydata(), history.theta_mean)
        assert loss_line.get_color() == theta_line.get_color() == method_color(name)
    # the loss falls from 10 to 3.3: less than a decade, a linear axis
    assert loss.get_yscale() == "linear"
    assert loss.get_ylabel() == "training loss (nats, epoch mean)"
    assert all(float(t).is_integer() for ax in fig.axes for t in ax.get_xticks())  # epochs
    assert loss.get_legend() is None  # one legend for the figure
    assert [t.get_text() for t in theta.get_legend().get_texts()] == ["Softmax", "ArcFace"]


def test_training_curves_figure_log_loss_axis_has_readable_ticks():
    long = _history(12, 0)
    long["loss"] = 50.0 * 0.6 ** np.arange(12)  # 50 down to 0.18
    fig = exp.training_curves_figure({"ArcFace": long})
    loss = fig.axes[0]
    assert loss.get_yscale() == "log"
    assert loss.get_ylabel() == "training loss (nats, epoch mean), log scale"
    fig.canvas.draw()
    low, high = loss.get_ylim()
    labels = [t.get_text() for t in loss.get_yticklabels()
              if low <= t.get_position()[1] <= high and t.get_text()]
    assert labels == ["0.2", "0.5", "1", "2", "5", "10", "20", "50"]


def test_angle_histogram_figure_first_and_last_epoch_per_loss():
    histories = {name: _history(3, k) for k, name in enumerate(
        ["Softmax", "Norm-Softmax", "SphereFace", "ArcFace"])}
    bins = np.linspace(0, 120, 13)
    fig = exp.angle_histogram_figure(histories, bins=bins)
    assert len(fig.axes) == 6 and [ax.axison for ax in fig.axes] == [True] * 4 + [False] * 2
    shown = fig.axes[:4]
    for ax, (name, history) in zip(shown, histories.items()):
        assert ax.get_title() == name
        last, first = [p for p in ax.patches if isinstance(p, StepPatch)]
        for patch, epoch in ((first, 0), (last, -1)):
            expected, _ = np.histogram(json.loads(history.theta_deg.iloc[epoch]), bins=bins)
            np.testing.assert_allclose(patch.get_data().values, expected)
            np.testing.assert_allclose(patch.get_data().edges, bins)
        # the first epoch a black outline (not Softmax's grey), the last filled in the colour
        assert not first.get_fill() and to_hex(first.get_edgecolor()) == "#000000"
        assert last.get_fill() and to_hex(last.get_facecolor()) == method_color(name).lower()
        assert ax.get_legend() is None
    # compared panels share both axes; one legend for the figure
    assert all(shown[0].get_shared_y_axes().joined(shown[0], ax) for ax in shown[1:])
    assert all(shown[0].get_shared_x_axes().joined(shown[0], ax) for ax in shown[1:])
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "after the first epoch", "after the last epoch (filled in the loss's colour)"]
    assert [ax.get_ylabel() for ax in shown] == ["training images", "", "", "training images"]
    # x labels under the lowest panel of each column (the fourth panel sits above an empty one)
    assert [ax.get_xlabel() for ax in shown] == ["", "θ_y (°)", "θ_y (°)", "θ_y (°)"]
    assert len(exp.angle_histogram_figure({"ArcFace": _history(2, 0)}).axes) == 1


def test_toy_embedding_figure_normalises_all_but_softmax():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(4), 5)
    weights = rng.normal(size=(4, 2))
    toy = {name: exp.ToyEmbedding(name, rng.normal(size=(20, 2)) * 3, labels, weights)
           for name in ("Softmax", "ArcFace")}
    fig = exp.toy_embedding_figure(toy)
    assert [ax.get_title() for ax in fig.axes] == ["Softmax (2-D features, raw)",
                                                   "ArcFace (2-D features, L2-normalised)"]
    for ax, t in zip(fig.axes, toy.values()):
        xy = t.features if t.name == "Softmax" else \
            t.features / np.linalg.norm(t.features, axis=1, keepdims=True)
        scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(scatters) == 4
        np.testing.assert_allclose(np.concatenate([c.get_offsets() for c in scatters]), xy)
        assert len(ax.lines) == 4  # one line per class centre, as long as the widest point
        radius = np.abs(xy).max()
        for line, scatter, w in zip(ax.lines, scatters, weights):
            np.testing.assert_allclose(line.get_xydata()[1], w / np.linalg.norm(w) * radius)
            assert to_rgba(line.get_color()) == tuple(scatter.get_facecolor()[0][:3]) + (1.0,)
        assert ax.get_legend() is None
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0", "1", "2", "3"]
    assert fig.legends[0].get_title().get_text() == "identity"


def test_toy_embedding_figure_eight_identities_in_eight_colours_and_markers():
    labels = np.repeat(np.arange(8), 6)
    weights = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)
    features = weights[labels] * 2 + np.random.default_rng(1).normal(0, 0.05, (48, 2))
    fig = exp.toy_embedding_figure({"ArcFace": exp.ToyEmbedding("ArcFace", features, labels,
                                                                weights)})
    (ax,) = fig.axes
    colors = {to_hex(c.get_facecolor()[0]) for c in ax.collections}
    markers = {c.get_paths()[0].vertices.tobytes() for c in ax.collections}
    assert len(colors) == len(markers) == 8
    assert len({to_hex(line.get_color()) for line in ax.lines}) == 8
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 8
    # evenly spread centres: none closer than half the spacing, reported under the panel
    assert "every two centres at least 22.5° apart" in ax.get_xlabel()


def test_toy_embedding_figure_states_spread_and_classes_sharing_a_direction():
    # classes 0, 3 and 6 share one direction, as in the committed ArcFace toy
    angles = np.radians([250, 290, 0, 251, 160, 60, 249, 120])
    weights = np.stack([np.cos(angles), np.sin(angles)], 1)
    labels = np.repeat(np.arange(8), 2)
    spread = np.radians(np.tile([4.0, -10.0], 8))  # every class: 4° and 10° off its centre
    features = np.stack([np.cos(angles[labels] + spread), np.sin(angles[labels] + spread)], 1)
    own, between = exp.toy_angle_summary(features * 5, labels, weights)
    np.testing.assert_allclose(own, np.tile([4.0, 10.0], 8), atol=1e-6)
    assert between.shape == (8, 8) and between[0, 3] == pytest.approx(1.0)
    assert between[0, 2] == pytest.approx(110.0)
    fig = exp.toy_embedding_figure({"ArcFace": exp.ToyEmbedding("ArcFace", features, labels,
                                                                weights)})
    assert fig.axes[0].get_xlabel() == (
        "angle to own class centre: median 7°, 90% of points within 10°\n"
        "centres closer than 22.5°: 0–3, 0–6, 3–6")


def test_toy_embedding_figure_wraps_a_long_list_of_close_centres():
    # every class centre within 10° of the next: 28 close pairs, wrapped to the panel's width
    angles = np.radians(np.arange(8) * 1.2)
    weights = np.stack([np.cos(angles), np.sin(angles)], 1)
    labels = np.repeat(np.arange(8), 2)
    fig = exp.toy_embedding_figure({"ArcFace": exp.ToyEmbedding("ArcFace", weights[labels],
                                                                labels, weights)})
    lines = fig.axes[0].get_xlabel().split("\n")
    assert len(lines) > 3 and max(map(len, lines[1:])) <= exp.CAPTION_WIDTH
    pairs = " ".join(lines[1:]).removeprefix("centres closer than 22.5°: ").split(", ")
    assert pairs == [f"{a}–{b}" for a in range(8) for b in range(a + 1, 8)]


def test_similarity_and_roc_figures_show_every_loss():
    evaluations = {name: _evaluation(name, 0.01 * k, seed=k) for k, name in enumerate(exp.LOSSES)}
    fig = exp.similarity_figure(evaluations)
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in shown] == list(exp.LOSSES) and len(fig.axes) == 6
    for ax, (name, ev) in zip(shown, evaluations.items()):
        stairs = [p for p in ax.patches if isinstance(p, StepPatch)]
        assert [p.get_label() for p in stairs] == [f"{name} (pos)", f"{name} (neg)"]
        assert stairs[0].get_edgecolor() == to_rgba(method_color(name))
        means = sorted(line.get_xdata()[0] for line in ax.lines)
        np.testing.assert_allclose(means, sorted([ev.positives("ijb").mean(),
                                                  ev.negatives("ijb").mean()]))
    # compared panels: shared x and y (a log density axis), one legend for the figure
    assert all(shown[0].get_shared_y_axes().joined(shown[0], ax) for ax in shown[1:])
    assert all(shown[0].get_shared_x_axes().joined(shown[0], ax) for ax in shown[1:])
    assert {ax.get_yscale() for ax in shown} == {"log"}
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in shown)
    roc = exp.roc_figure(evaluations)
    (ax,) = roc.axes
    assert [line.get_label() for line in ax.lines] == list(exp.LOSSES)
    for line, ev in zip(ax.lines, evaluations.values()):
        fpr, tpr = ev.roc("ijb")
        np.testing.assert_allclose(line.get_ydata(), tpr[fpr > 0])
    assert ax.get_title() == "IJB-like 1:1 verification"


def test_projection_figure_rows_are_methods_columns_are_losses(monkeypatch):
    metadata = pd.DataFrame({"identity": np.repeat(np.arange(10), 4)})
    rng = np.random.default_rng(5)
    evaluations = {name: _evaluation(name, 0, test_embeddings=rng.normal(size=(40, 6)))
                   for name in ("Softmax", "ArcFace")}
    rows = identity_sample_rows(metadata, 5, 18, 3)
    labels = metadata.identity.to_numpy()[rows]
    # t-SNE and UMAP take seconds: a stand-in projection that says which method drew it
    scale = {"tsne": 1.0, "umap": 10.0}
    monkeypatch.setattr(exp, "project",
                        lambda features, method, random_state: features[:, :2] * scale[method])
    fig = exp.projection_figure(evaluations, metadata, identities=5, max_points=18, seed=3)
    assert [ax.get_title() for ax in fig.axes] == [
        "Softmax · t-SNE", "ArcFace · t-SNE", "Softmax · UMAP", "ArcFace · UMAP"]
    assert fig.axes[2].get_subplotspec().rowspan.start == 1
    for ax, (name, method) in zip(fig.axes, [(n, m) for m in ("tsne", "umap")
                                             for n in evaluations]):
        xy = evaluations[name].embeddings["test"][rows][:, :2] * scale[method]
        for scatter in ax.collections:
            np.testing.assert_allclose(scatter.get_offsets(),
                                       xy[labels == int(scatter.get_label())])
        assert sum(len(c.get_offsets()) for c in ax.collections) == 18
        assert ax.get_legend() is None


def test_projection_figure_projects_with_the_seed():
    metadata = pd.DataFrame({"identity": np.repeat(np.arange(6), 3)})
    embeddings = np.random.default_rng(6).normal(size=(18, 5))
    evaluations = {"Softmax": _evaluation("Softmax", 0, test_embeddings=embeddings)}
    fig = exp.projection_figure(evaluations, metadata, names=("Softmax",), methods=("pca",),
                                identities=6, seed=1)
    xy = project(embeddings, method="pca", random_state=1)
    np.testing.assert_allclose(np.concatenate([c.get_offsets() for c in fig.axes[0].collections]),
                               xy)
