"""The figures of notebook 04 (fkdlib.experiments.icd_face) that the notebook used to draw
inline, built from small hand-made inputs (the similarity and ablation figures are tested in
test_experiments_icd_face.py)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from fkdlib.errors import ConfigError  # noqa: E402
from fkdlib.evaluation import project  # noqa: E402
from fkdlib.evaluation.benchmark import identity_sample_rows  # noqa: E402
from conftest import pair_evaluation  # noqa: E402
from fkdlib.experiments import icd_face as exp  # noqa: E402
from fkdlib.report.figures import method_color  # noqa: E402




def _evaluation(name, quality, seed=0, test_embeddings=None):
    rng = np.random.default_rng(seed)
    return pair_evaluation(name, rng.normal(quality, 0.1, 40), rng.normal(0.0, 0.2, 400),
                           test_embeddings if test_embeddings is not None else np.eye(3))


def test_training_curves_figure_one_panel_per_recorded_term():
    epochs = np.array([1, 2, 3])
    histories = {
        exp.STUDENT: pd.DataFrame({"epoch": epochs, "loss_ce": [9.0, 6.0, 4.0]}),
        exp.FCD: pd.DataFrame({"epoch": epochs, "loss_ce": [9.5, 6.5, 4.5],
                               "loss_fcd": [7.0, 3.0, 2.0]}),
        exp.FCD_ICD: pd.DataFrame({"epoch": epochs, "loss_ce": [9.4, 6.4, 4.4],
                                   "loss_fcd": [7.1, 3.1, 2.1], "loss_icd": [0.5, 0.3, 0.2]}),
    }
    fig = exp.training_curves_figure(histories)
    assert [ax.get_title() for ax in fig.axes] == ["CE term (weighted)", "FCD term (weighted)",
                                                   "ICD term (weighted)"]
    for ax, term in zip(fig.axes, ("loss_ce", "loss_fcd", "loss_icd")):
        drawn = [name for name, h in histories.items() if term in h]
        assert [line.get_label() for line in ax.lines] == drawn
        for line in ax.lines:
            np.testing.assert_allclose(line.get_xdata(), epochs)
            np.testing.assert_allclose(line.get_ydata(), histories[line.get_label()][term])
            assert line.get_color() == method_color(line.get_label())
    assert fig.axes[0].get_legend() is not None
    assert all(ax.get_legend() is None for ax in fig.axes[1:])
    only_ce = exp.training_curves_figure({exp.STUDENT: histories[exp.STUDENT]})
    assert len(only_ce.axes) == 1
    with pytest.raises(ConfigError, match="no history records"):
        exp.training_curves_figure({exp.STUDENT: pd.DataFrame({"epoch": [1], "loss": [1.0]})})


def test_tsne_figure_projects_the_same_identities_for_every_method():
    metadata = pd.DataFrame({"identity": np.repeat(np.arange(20), 3)})
    rng = np.random.default_rng(1)
    evaluations = {name: _evaluation(name, 0.5, seed=k, test_embeddings=rng.normal(size=(60, 5)))
                   for k, name in enumerate(exp.METHODS)}
    fig = exp.tsne_figure(evaluations, metadata, max_points=30, seed=4, projection="pca")
    assert [ax.get_title() for ax in fig.axes] == list(exp.METHODS)
    rows = identity_sample_rows(metadata, exp.TSNE_IDENTITIES, 30, 4)
    assert rows.size == 30
    for ax, ev in zip(fig.axes, evaluations.values()):
        xy = project(ev.embeddings["test"][rows], method="pca", random_state=4)
        assert len(ax.collections) == np.unique(metadata.identity.to_numpy()[rows]).size
        np.testing.assert_allclose(np.concatenate([c.get_offsets() for c in ax.collections]), xy)
        assert ax.get_legend() is None and list(ax.get_xticks()) == []


def test_roc_figure_draws_every_method():
    evaluations = {name: _evaluation(name, 0.3 + 0.1 * k, seed=k)
                   for k, name in enumerate(exp.METHODS)}
    (ax,) = exp.roc_figure(evaluations).axes
    assert [line.get_label() for line in ax.lines] == list(exp.METHODS)
    for line in ax.lines:
        fpr, tpr = evaluations[line.get_label()].roc("ijb")
        np.testing.assert_allclose(line.get_ydata(), tpr[fpr > 0])
        assert line.get_color() == method_color(line.get_label())
    assert ax.get_title() == "IJB-like 1:1 verification"
