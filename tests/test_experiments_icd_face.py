"""Notebook 04 (ICD-Face) experiment logic: specs, tables, claim wiring and figures, on tiny
hand-made evaluations with known answers."""

from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import pair_evaluation

from fkdlib.distill.icd import FeatureBank
from fkdlib.errors import ConfigError
from fkdlib.evaluation import count_parameters
from fkdlib.evaluation.benchmark import (
    FaceBenchmark,
    identity_sample_rows,
    synthface_data_spec,
)
from fkdlib.experiments import icd_face as exp
from fkdlib.models import create_model
from fkdlib.profiles import get_profile
from fkdlib.report.claims import claims_beside_paper
from fkdlib.zoo import teacher_spec


@pytest.fixture(scope="module")
def bench():
    """A benchmark with the smoke profile's training spec and no image pools (specs only)."""
    profile = get_profile("smoke")
    return FaceBenchmark(profile, 3, synthface_data_spec(profile, "train", 3), pools={},
                         verification={})


_evaluation = partial(pair_evaluation, clip=False)


# ----------------------------------------------------------------------------- specs


def test_loss_entries_spell_out_the_published_choices():
    assert exp.fcd_loss() == {"name": "fcd", "weight": 7.0}
    assert exp.icd_loss() == {"name": "icd", "weight": 1.0, "kwargs": {
        "slots_per_class": 8, "bins": 41, "bandwidth": 0.05}}
    assert exp.icd_loss(16, 0.1)["kwargs"] == {"slots_per_class": 16, "bins": 41,
                                               "bandwidth": 0.1}
    with pytest.raises(ConfigError, match="slots_per_class"):
        exp.icd_loss(0)
    with pytest.raises(ConfigError, match="bandwidth"):
        exp.icd_loss(8, -0.1)


def test_student_specs_use_the_shared_teacher_and_its_head(bench):
    teacher = teacher_spec(bench)
    specs = exp.method_specs(bench)
    assert list(specs) == ["Teacher", "Student", "FCD", "FCD+ICD"]
    assert specs["Teacher"] == teacher
    alone = specs["Student"]
    assert (alone.backbone, alone.method, alone.method_kwargs) == ("iresnet18", "classify", {})
    pretraining = alone.init_from
    assert (pretraining.backbone, pretraining.head, pretraining.init_from) == (
        "iresnet18", "softmax", None)
    assert pretraining.train["epochs"] == bench.profile.epochs
    for name in ("Student", "FCD", "FCD+ICD"):
        spec = specs[name]
        assert (spec.head, spec.head_kwargs) == (teacher.head, teacher.head_kwargs)
        assert spec.backbone_kwargs == {"input_size": 16, "width": 0.125,
                                        "embedding_size": teacher.backbone_kwargs["embedding_size"]}
        # one recipe for teacher and students: the same fine-tuning from their own pre-training
        assert spec.train == teacher.train and spec.data == teacher.data
        assert spec.init_from == pretraining
        assert teacher.init_from.train == pretraining.train
    assert specs["FCD"].method_kwargs == {"teacher": teacher.to_dict(),
                                          "losses": [exp.fcd_loss()], "ce_weight": 1.0}
    assert specs["FCD+ICD"].method_kwargs["losses"] == [exp.fcd_loss(), exp.icd_loss(8, 0.05)]
    assert len({spec.key for spec in specs.values()}) == 4


def test_ablation_fine_tunes_the_fcd_student_over_the_grid(bench):
    assert exp.ablation_grid() == [(2, 0.05), (4, 0.05), (8, 0.05), (16, 0.05), (8, 0.025),
                                   (8, 0.1)]
    specs = exp.ablation_specs(bench)
    assert list(specs) == ["no ICD", "K=2, σ=0.05", "K=4, σ=0.05", "K=8, σ=0.05",
                           "K=16, σ=0.05", "K=8, σ=0.025", "K=8, σ=0.1"]
    fcd = exp.method_specs(bench)["FCD"]
    for name, spec in specs.items():
        assert spec.init_from == fcd
        assert spec.train["epochs"] == 1  # the smoke profile's single epoch caps it
        assert spec.train["lr"] == pytest.approx(bench.profile.lr * 0.1)
        assert spec.train["milestones"] == [0.5]
        losses = spec.method_kwargs["losses"]
        assert losses[0] == exp.fcd_loss()
        if name == "no ICD":
            assert len(losses) == 1
        else:
            k, sigma = losses[1]["kwargs"]["slots_per_class"], losses[1]["kwargs"]["bandwidth"]
            assert name == exp.ablation_label(k, sigma)
    assert len({spec.key for spec in specs.values()}) == len(specs)
    default = FaceBenchmark(get_profile("default"), 0, {}, pools={}, verification={})
    assert exp.ablation_train_overrides(default) == {
        "epochs": exp.ABLATION_EPOCHS, "lr": 0.01, "schedule": "multistep", "milestones": [0.5]}


def test_model_sizes_match_the_networks_and_the_published_counts(bench):
    frame = exp.model_sizes(bench)
    teacher = teacher_spec(bench)
    options = ", ".join(f"{k}={v:g}" for k, v in teacher.head_kwargs.items())
    assert list(frame["head"]) == [f"{teacher.head} ({options})"] * 2 + ["", ""]
    sizes = frame.set_index(["role", "backbone", "input"])
    student = create_model("iresnet18", input_size=16, width=0.125, embedding_size=32)
    ours = sizes.xs("16 px, 32-d", level="input")
    assert ours.loc[("student", "iresnet18"), "params (M)"] == pytest.approx(
        count_parameters(student) / 1e6)
    paper = sizes.xs("112 px, 512-d", level="input")
    # insightface_model_sizes: IResNet-50 43.59M / 6.31 GMACs, MobileFaceNet 2.06M / 0.44
    assert paper.loc[("teacher", "iresnet50"), "params (M)"] == pytest.approx(43.59, rel=0.01)
    assert paper.loc[("teacher", "iresnet50"), "MMACs"] == pytest.approx(6310, rel=0.01)
    assert paper.loc[("student", "mobilefacenet"), "params (M)"] == pytest.approx(2.06, rel=0.01)
    assert paper.loc[("student", "mobilefacenet"), "MMACs"] == pytest.approx(440, rel=0.01)


def test_bank_memory_at_the_paper_scale():
    table = exp.bank_memory().set_index("K")
    assert list(table.index) == [2, 4, 8, 16]
    # 85,742 classes x 8 slots x 512 dims x 2 bytes, plus the pointer (int64) and valid flags
    assert table.loc[8, "bytes per bank"] == 85742 * 8 * 512 * 2 + 85742 * 8 + 85742 * 8
    assert table.loc[8, "bytes per bank"] == 703_770_336
    assert table.loc[16, "GiB for both banks"] == pytest.approx(
        2 * FeatureBank.estimate_bytes(16) / 2**30)
    assert set(table["dtype"]) == {"float16"}
    small = exp.bank_memory([3], num_classes=10, dim=4, dtype=torch.float32)
    assert small.loc[0, "bytes per bank"] == 10 * 3 * 4 * 4 + 10 * 8 + 10 * 3


# ----------------------------------------------------------------------------- tables


def _four_methods(fcd_negative_shift=0.01, icd_gain=0.1, seed=0, student_gap=0.4):
    """Teacher, student, FCD and FCD+ICD with the paper's pattern built in: the student's
    positives ``student_gap`` below the teacher's, FCD's negatives on the teacher's, its
    positives 0.2 lower; ICD raises the positives by ``icd_gain``."""
    rng = np.random.default_rng(seed)
    pos = np.clip(rng.normal(0.7, 0.1, 400), -1, 1)
    neg = np.clip(rng.normal(0.0, 0.1, 12_000), -1, 1)
    return {
        "Teacher": _evaluation("Teacher", pos, neg),
        "Student": _evaluation("Student", pos - student_gap, neg + 0.1),
        "FCD": _evaluation("FCD", pos - 0.2, neg + fcd_negative_shift),
        "FCD+ICD": _evaluation("FCD+ICD", pos - 0.2 + icd_gain, neg + fcd_negative_shift),
    }


def test_similarity_table_values():
    evaluations = _four_methods()
    table = exp.similarity_table(evaluations).set_index("method")
    teacher = evaluations["Teacher"]
    assert table.loc["Teacher", "mean pos"] == pytest.approx(teacher.positives("ijb").mean())
    assert table.loc["FCD", "Δ pos vs teacher"] == pytest.approx(-0.2)
    assert table.loc["FCD", "Δ neg vs teacher"] == pytest.approx(0.01)
    # a constant shift moves every quantile by the shift: W1 equals it
    assert table.loc["FCD", "W1 pos to teacher"] == pytest.approx(0.2)
    assert table.loc["Student", "W1 neg to teacher"] == pytest.approx(0.1)
    assert table.loc["Teacher", "W1 pos to teacher"] == 0
    with pytest.raises(ConfigError, match="reference method"):
        exp.similarity_table({"FCD": evaluations["FCD"]})


def test_tar_table_reads_every_far():
    evaluations = _four_methods()
    table = exp.tar_table(evaluations).set_index("method")
    assert list(table.columns) == ["TAR@0.001", "TAR@0.01", "TAR@0.1"]
    assert table.loc["FCD", "TAR@0.001"] == evaluations["FCD"].tar["ijb"][1e-3]


def test_claims_hold_on_the_papers_pattern_and_fail_when_it_is_absent():
    claims = exp.claims()
    assert [claim.id for claim in claims] == [exp.PREMISE, "FCD:neg-match", "FCD:pos-lower",
                                             "ICD:pos-higher", "ICD:pos-closer", "ICD:TAR"]
    assert all(claim.requires == (exp.PREMISE,) for claim in claims[1:])
    frame = exp.check_claims(_four_methods(), n_boot=200, assess=True)
    assert dict(zip(frame.id, frame.status)) == {
        exp.PREMISE: "holds", "FCD:neg-match": "holds", "FCD:pos-lower": "holds", "ICD:pos-higher": "holds",
        "ICD:pos-closer": "holds", "ICD:TAR": "holds"}
    row = frame.set_index("id")
    assert row.loc["FCD:neg-match", "effect"] == pytest.approx(abs(0.01) - 0.05, abs=1e-9)
    assert row.loc["FCD:pos-lower", "effect"] == pytest.approx(-0.2 + 0.05)
    assert row.loc["ICD:pos-higher", "effect"] == pytest.approx(0.1)
    assert row.loc["ICD:pos-closer", "effect"] == pytest.approx(0.1 - 0.2)
    assert list(row.n) == [400, 12_000, 400, 400, 400, 12_400]  # pairs behind each interval
    ev = _four_methods()
    expected_tar = ev["FCD+ICD"].tar["ijb"][1e-3] - ev["FCD"].tar["ijb"][1e-3]
    assert row.loc["ICD:TAR", "effect"] == pytest.approx(expected_tar)

    shifted = exp.check_claims(_four_methods(fcd_negative_shift=0.12, icd_gain=-0.05),
                               n_boot=200, assess=True)
    assert dict(zip(shifted.id, shifted.status)) == {
        exp.PREMISE: "holds", "FCD:neg-match": "contradicted", "FCD:pos-lower": "holds",
        "ICD:pos-higher": "contradicted", "ICD:pos-closer": "contradicted",
        "ICD:TAR": "contradicted"}
    # a student more compact than its teacher: nothing for ICD to transfer, nothing assessed
    backwards = exp.check_claims(_four_methods(student_gap=-0.1), n_boot=200, assess=True)
    assert backwards.status.iloc[0] == "contradicted"
    assert set(backwards.status.iloc[1:]) == {"not assessed"}
    assert set(backwards.reason.iloc[1:]) == {f"premise {exp.PREMISE!r} is contradicted"}
    sick = exp.check_claims(_four_methods(), n_boot=50, assess=True,
                            unhealthy={"FCD+ICD": "seed 0: training top-1 50.0% < 90%"})
    assert list(sick.status) == ["holds"] * 3 + ["not assessed"] * 3
    smoke = exp.check_claims(_four_methods(), n_boot=50, assess=False)
    assert set(smoke.status) == {"not assessed"}
    with pytest.raises(ConfigError, match="missing FCD"):
        exp.check_claims({k: v for k, v in _four_methods().items() if k != "FCD"}, n_boot=10,
                         assess=True)


def test_paper_side_covers_every_claim():
    claims = exp.claims()
    frame = exp.check_claims(_four_methods(), n_boot=50, assess=False)
    beside = claims_beside_paper(claims, frame)
    assert list(beside.id) == [claim.id for claim in claims]
    assert beside["paper says"].str.len().min() > 40 and beside["where"].str.contains(
        "ICD-Face").all()
    assert "lower than the intra-class similarities of the teacher model a lot" in \
        beside.set_index("id").loc["FCD:pos-lower", "paper says"]


def test_ablation_table_rows_and_values():
    rng = np.random.default_rng(1)
    pos, neg = rng.uniform(0.2, 0.8, 300), rng.uniform(-0.3, 0.3, 11_000)
    evaluations = {"no ICD": _evaluation("no ICD", pos, neg)}
    for index, (k, sigma) in enumerate(exp.ablation_grid()):
        evaluations[exp.ablation_label(k, sigma)] = _evaluation("v", pos + 0.01 * index, neg)
    teacher = _evaluation("Teacher", pos + 0.3, neg)
    table = exp.ablation_table(evaluations, teacher, n_boot=100).set_index("variant")
    assert list(table.index) == list(evaluations) + ["Teacher"]
    assert table.loc["K=16, σ=0.05", "K"] == 16 and table.loc["K=8, σ=0.1", "σ"] == 0.1
    assert pd.isna(table.loc["no ICD", "K"]) and pd.isna(table.loc["Teacher", "K"])
    assert table.loc["K=4, σ=0.05", "Δ pos vs no ICD"] == pytest.approx(0.01)
    assert table.loc["K=8, σ=0.025", "ci_low"] == pytest.approx(0.04)  # constant shift
    assert table.loc["K=2, σ=0.05", "paper-scale MiB per bank"] == pytest.approx(
        FeatureBank.estimate_bytes(2) / 2**20)
    assert table.loc["Teacher", "mean pos"] == pytest.approx(pos.mean() + 0.3)
    assert table.loc["K=2, σ=0.05", "TAR@1e-3"] == evaluations["K=2, σ=0.05"].tar["ijb"][1e-3]
    with pytest.raises(ConfigError, match="no ICD"):
        exp.ablation_table({"K=2, σ=0.05": evaluations["K=2, σ=0.05"]}, teacher, n_boot=10)
    # two runs per variant: every value is the mean over the runs
    second = {name: _evaluation(name, ev.positives("ijb") + 0.02, ev.negatives("ijb"))
              for name, ev in evaluations.items()}
    runs = {name: [ev, second[name]] for name, ev in evaluations.items()}
    two = exp.ablation_table(runs, [teacher, teacher], n_boot=100).set_index("variant")
    assert two.loc["K=4, σ=0.05", "mean pos"] == pytest.approx(pos.mean() + 0.01 + 0.01)
    assert two.loc["K=4, σ=0.05", "Δ pos vs no ICD"] == pytest.approx(0.01)


def test_seed_average_of_a_one_run_table():
    from fkdlib.evaluation.benchmark import seed_average

    one, two = _four_methods(seed=0), _four_methods(seed=1)
    runs = {name: [one[name], two[name]] for name in one}
    table = seed_average(exp.similarity_table, runs).set_index("method")
    first = exp.similarity_table(one).set_index("method")
    second = exp.similarity_table(two).set_index("method")
    assert table.loc["FCD", "W1 pos to teacher"] == pytest.approx(
        (first.loc["FCD", "W1 pos to teacher"] + second.loc["FCD", "W1 pos to teacher"]) / 2)
    assert table.loc["Student", "mean pos"] == pytest.approx(
        (first.loc["Student", "mean pos"] + second.loc["Student", "mean pos"]) / 2)
    assert set(table["seeds"]) == {2}


# ----------------------------------------------------------------------------- figures


def test_similarity_figure_marks_every_mean():
    evaluations = _four_methods()
    fig = exp.similarity_figure(evaluations)
    left, positive, negative = fig.axes
    vertical = {round(line.get_xdata()[0], 9) for line in left.lines}
    for ev in evaluations.values():
        assert round(ev.positives("ijb").mean(), 9) in vertical
        assert round(ev.negatives("ijb").mean(), 9) in vertical
    for ax, means in ((positive, [ev.positives("ijb").mean() for ev in evaluations.values()]),
                      (negative, [ev.negatives("ijb").mean() for ev in evaluations.values()])):
        assert [tick.get_text() for tick in ax.get_yticklabels()] == list(exp.METHODS)
        np.testing.assert_allclose([line.get_xdata()[0] for line in ax.lines], means)
        band = ax.patches[0].get_x(), ax.patches[0].get_x() + ax.patches[0].get_width()
        np.testing.assert_allclose(band, [means[0] - 0.05, means[0] + 0.05])
    plt.close(fig)


def test_ablation_figure_plots_the_table():
    rng = np.random.default_rng(2)
    pos, neg = rng.uniform(0.2, 0.8, 300), rng.uniform(-0.3, 0.3, 11_000)
    evaluations = {"no ICD": _evaluation("no ICD", pos, neg)}
    for index, (k, sigma) in enumerate(exp.ablation_grid()):
        evaluations[exp.ablation_label(k, sigma)] = _evaluation("v", pos + 0.01 * index, neg)
    table = exp.ablation_table(evaluations, _evaluation("T", pos + 0.3, neg), n_boot=20)
    fig = exp.ablation_figure(table)
    top_left = fig.axes[0]
    lines = {line.get_label(): line for line in top_left.lines}
    curve = top_left.lines[0]
    np.testing.assert_allclose(curve.get_xdata(), [2, 4, 8, 16])
    np.testing.assert_allclose(curve.get_ydata(), pos.mean() + 0.01 * np.arange(4))
    assert lines["no ICD (fine-tuned FCD)"].get_ydata()[0] == pytest.approx(pos.mean())
    assert lines["Teacher"].get_ydata()[0] == pytest.approx(pos.mean() + 0.3)
    # constant shifts: each interval is a single point, so the bars have zero length
    bars = top_left.containers[0].lines[2][0].get_segments()
    np.testing.assert_allclose([segment[:, 1] for segment in bars],
                               [[y, y] for y in pos.mean() + 0.01 * np.arange(4)])
    sigma_curve = fig.axes[1].lines[0]
    np.testing.assert_allclose(sigma_curve.get_xdata(), [0.025, 0.05, 0.1])
    np.testing.assert_allclose(sigma_curve.get_ydata(), pos.mean() + 0.01 * np.array([4, 2, 5]))
    plt.close(fig)


def test_identity_sample_rows_take_whole_identities():
    """The t-SNE figure's rows (:func:`identity_sample_rows`): every image of a seeded sample
    of identities, in pool order; the same rows as the notebooks' former inline code."""
    metadata = pd.DataFrame({"identity": np.repeat(np.arange(30), 5)})
    rows = identity_sample_rows(metadata, identities=4, seed=7)
    chosen = np.unique(metadata.identity.to_numpy()[rows])
    assert chosen.size == 4 and rows.size == 20 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, identity_sample_rows(metadata, identities=4, seed=7))
    np.testing.assert_array_equal(rows, identity_sample_rows(metadata.identity.to_numpy(), 4,
                                                             seed=7))
    assert identity_sample_rows(metadata, identities=4, max_points=7, seed=7).size == 7
    assert identity_sample_rows(metadata, identities=99).size == 150
    rng = np.random.default_rng(7)  # what notebooks 01 and 02 computed inline
    inline = np.sort(rng.choice(metadata.identity.unique(), size=4, replace=False))
    np.testing.assert_array_equal(rows, np.flatnonzero(metadata.identity.isin(inline)))
    with pytest.raises(ConfigError, match="positive integer"):
        identity_sample_rows(metadata, identities=0)

