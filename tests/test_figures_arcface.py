"""The figures of notebook 01 (fkdlib.experiments.arcface), built from small hand-made inputs."""

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
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
    assert [line.get_label() for line in ax.lines] == ["Softmax", "ArcFace"]
    for line in ax.lines:
        np.testing.assert_allclose(line.get_xdata(), theta)
        np.testing.assert_allclose(line.get_ydata(), curves[line.get_label()])
        assert line.get_color() == method_color(line.get_label())
    assert ax.get_title() == "Target logit curves" and ax.get_xlim() == (0, 180)
    assert ax.get_ylabel() == "target logit / s"
    every = exp.target_logit_figure(exp.target_logit_curves(num_points=19))
    assert [line.get_label() for line in every.axes[0].lines] == list(exp.LOSSES)


def test_training_curves_figure_plots_loss_and_mean_angle():
    histories = {"Softmax": _history(3, 0), "ArcFace": _history(3, 1)}
    fig = exp.training_curves_figure(histories)
    loss, theta = fig.axes
    assert loss.get_yscale() == "log" and len(loss.lines) == len(theta.lines) == 2
    for name, history in histories.items():
        (loss_line,) = [line for line in loss.lines if line.get_label() == name]
        (theta_line,) = [line for line in theta.lines if line.get_label() == name]
        np.testing.assert_allclose(loss_line.get_xdata(), history.epoch)
        np.testing.assert_allclose(loss_line.get_ydata(), history.loss)
        np.testing.assert_allclose(theta_line.get_ydata(), history.theta_mean)
        assert loss_line.get_color() == theta_line.get_color() == method_color(name)
    assert loss.get_legend() is None  # one legend for the figure
    assert [t.get_text() for t in theta.get_legend().get_texts()] == ["Softmax", "ArcFace"]


def test_angle_histogram_figure_first_and_last_epoch_per_loss():
    histories = {name: _history(3, k) for k, name in enumerate(
        ["Softmax", "Norm-Softmax", "SphereFace", "ArcFace"])}
    bins = np.linspace(0, 120, 13)
    fig = exp.angle_histogram_figure(histories, bins=bins)
    assert len(fig.axes) == 6 and [ax.axison for ax in fig.axes] == [True] * 4 + [False] * 2
    for ax, (name, history) in zip(fig.axes, histories.items()):
        assert ax.get_title() == name and len(ax.patches) == 2 * 12
        first, last = ax.patches[:12], ax.patches[12:]
        for patches, epoch in ((first, 0), (last, -1)):
            expected, _ = np.histogram(json.loads(history.theta_deg.iloc[epoch]), bins=bins)
            np.testing.assert_allclose([p.get_height() for p in patches], expected)
        assert to_hex(first[0].get_facecolor()) == to_hex("0.6")
        assert to_hex(last[0].get_facecolor()) == method_color(name).lower()
    assert fig.axes[0].get_legend() is not None
    assert all(ax.get_legend() is None for ax in fig.axes[1:])
    assert len(exp.angle_histogram_figure({"ArcFace": _history(2, 0)}).axes) == 1


def test_toy_embedding_figure_normalises_all_but_softmax():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(4), 5)
    weights = rng.normal(size=(4, 2))
    toy = {name: exp.ToyEmbedding(name, rng.normal(size=(20, 2)) * 3, labels, weights)
           for name in ("Softmax", "ArcFace")}
    fig = exp.toy_embedding_figure(toy)
    assert [ax.get_title() for ax in fig.axes] == ["Softmax (2-D features)",
                                                   "ArcFace (2-D features)"]
    for ax, t in zip(fig.axes, toy.values()):
        xy = t.features if t.name == "Softmax" else \
            t.features / np.linalg.norm(t.features, axis=1, keepdims=True)
        scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(scatters) == 4
        np.testing.assert_allclose(np.concatenate([c.get_offsets() for c in scatters]), xy)
        assert len(ax.lines) == 4  # one line per class centre, as long as the widest point
        radius = np.abs(xy).max()
        for line, w in zip(ax.lines, weights):
            np.testing.assert_allclose(line.get_xydata()[1], w / np.linalg.norm(w) * radius)
        assert ax.get_legend() is None
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0", "1", "2", "3"]


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
        "Softmax · TSNE", "ArcFace · TSNE", "Softmax · UMAP", "ArcFace · UMAP"]
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
