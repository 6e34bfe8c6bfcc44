"""The figures of notebook 04 (fkdlib.experiments.icd_face), built from small hand-made
inputs. The similarity figure is tested in test_experiments_icd_face.py, and so is the
ablation figure drawn from a computed ablation table."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

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
    assert [ax.get_ylabel() for ax in fig.axes] == ["weighted term (epoch mean)", "", ""]
    assert all(float(tick).is_integer() for ax in fig.axes for tick in ax.get_xticks())
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


def _ablation_table(teacher_pos, teacher_tar):
    """An ablation table (:func:`exp.ablation_table`'s columns) of hand-made values: variant
    ``i`` of the grid at mean positive similarity 0.910 + 0.001·i with an interval of ±0.0002
    around its change from no ICD (0.918)."""
    rows = [{"variant": exp.NO_ICD, "K": pd.NA, "σ": np.nan, "mean pos": 0.918,
             "ci_low": np.nan, "ci_high": np.nan, "TAR@1e-3": 0.098}]
    for i, (k, sigma) in enumerate(exp.ablation_grid()):
        change = 0.910 + 0.001 * i - 0.918
        rows.append({"variant": exp.ablation_label(k, sigma), "K": k, "σ": sigma,
                     "mean pos": 0.918 + change, "ci_low": change - 0.0002,
                     "ci_high": change + 0.0002, "TAR@1e-3": 0.095 + 0.0005 * i})
    rows.append({"variant": exp.TEACHER, "K": pd.NA, "σ": np.nan, "mean pos": teacher_pos,
                 "ci_low": np.nan, "ci_high": np.nan, "TAR@1e-3": teacher_tar})
    table = pd.DataFrame(rows)
    table["K"] = table["K"].astype("Int64")
    return table


def test_ablation_figure_error_bars_are_visible():
    fig = exp.ablation_figure(_ablation_table(teacher_pos=0.88, teacher_tar=0.0965))
    top_left, top_right, bottom_left, bottom_right = fig.axes
    data_line, caps, (bars,) = top_left.containers[0].lines
    # black bars with caps, drawn above the variant's line and markers
    assert to_hex(bars.get_colors()[0]) == "#000000"
    assert bars.get_zorder() > data_line.get_zorder()
    assert all(cap.get_zorder() > data_line.get_zorder() for cap in caps)
    assert len(caps) == 2 and caps[0].get_markersize() == 12 and bars.get_linewidth()[0] == 1.5
    assert data_line.get_markersize() == 5
    # the bars are the interval of the change from no ICD, around the variant (K = 2 ... 16)
    ys = 0.910 + 0.001 * np.arange(4)
    np.testing.assert_allclose(data_line.get_ydata(), ys)
    np.testing.assert_allclose([segment[:, 1] for segment in bars.get_segments()],
                               np.stack([ys - 0.0002, ys + 0.0002], 1))
    # the panels of a row share y; one legend for the figure, the variants first
    assert top_left.get_shared_y_axes().joined(top_left, top_right)
    assert bottom_left.get_shared_y_axes().joined(bottom_left, bottom_right)
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "FCD+ICD (fine-tuned); bars: 95% interval of the change from no ICD",
        "no ICD (fine-tuned FCD)", "Teacher"]


def test_ablation_figure_keeps_the_variants_readable_beside_a_distant_teacher():
    fig = exp.ablation_figure(_ablation_table(teacher_pos=0.88, teacher_tar=0.0965))
    top_left, top_right, bottom_left, _ = fig.axes
    low, high = top_left.get_ylim()
    # the axis spans the variants, their intervals and no ICD, not the teacher 0.038 below
    assert low < 0.910 - 0.0002 and high > 0.918 and low > 0.88
    for ax in (top_left, top_right):
        (note,) = ax.texts
        assert note.get_text() == "Teacher 0.880 ↓"
    (teacher,) = [line for line in top_left.lines if line.get_label() == exp.TEACHER]
    assert teacher.get_ydata()[0] == 0.88
    # a teacher inside the span is a line, without a note
    low, high = bottom_left.get_ylim()
    assert low < 0.0965 < high and len(bottom_left.texts) == 0
    above = exp.ablation_figure(_ablation_table(teacher_pos=0.95, teacher_tar=0.2))
    assert [t.get_text() for t in above.axes[2].texts] == ["Teacher 0.200 ↑"]


def test_ablation_figure_with_an_unmeasured_tar_row_still_draws():
    """At the smoke profile TAR@1e-3 can be unreportable (NaN) for every variant: the figure
    scales the similarity row and leaves the empty TAR row alone instead of failing."""
    table = _ablation_table(teacher_pos=0.88, teacher_tar=float("nan"))
    table["TAR@1e-3"] = float("nan")
    fig = exp.ablation_figure(table)
    low, high = fig.axes[0].get_ylim()
    assert np.isfinite([low, high]).all() and low < 0.910 < 0.918 < high
    fig.clear()
