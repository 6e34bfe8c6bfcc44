"""fkdlib.experiments.srrl: the study's specs, the analyses' formulas, the tables beside the
thesis and the wiring of the claims; one tiny CIFAR study trained end to end."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from fkdlib.data.formats.cifar import write_cifar
from fkdlib.errors import ConfigError
from fkdlib.experiments import srrl
from fkdlib.zoo import teacher_spec
from fkdlib.profiles import get_profile


@pytest.fixture(scope="module")
def face_study():
    return srrl.build_study("smoke", 0, "synthface")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """A CIFAR-10 folder: 40 training and 20 test images, class k is a noisy copy of one
    random image per class."""
    root = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    prototypes = rng.integers(0, 256, size=(10, 3, 32, 32))

    def split(count):
        labels = np.arange(count) % 10
        noise = rng.integers(-20, 21, size=(count, 3, 32, 32))
        return np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8), labels

    write_cifar(root, 10, {"train": split(40), "test": split(20)})
    return root


def _entry(recipe, name):
    (entry,) = [e for e in recipe.losses if e["name"] == name]
    return entry


# --- rows and specs -------------------------------------------------------------------------

def test_face_rows_use_repdistiller_weights_and_the_srrl_terms():
    rows = srrl.recipes("face")
    assert list(rows)[:9] == ["Student", "KD", "FitNet", "AT", "RKD", "PKT", "L_FM", "L_SR",
                              "L_FM+L_SR"]
    assert rows["Student"].losses == ()
    assert (rows["KD"].ce_weight, _entry(rows["KD"], "kd")["weight"]) == (0.1, 0.9)
    assert _entry(rows["FitNet"], "fitnet") == {
        "name": "fitnet", "weight": 100.0,
        "kwargs": {"student_stage": "layer3", "teacher_stage": "layer3"}}
    assert _entry(rows["AT"], "at")["weight"] == 1000.0
    assert _entry(rows["RKD"], "rkd")["weight"] == 1.0
    assert _entry(rows["PKT"], "pkt")["weight"] == 30000.0
    weights = {name: (_entry(rows[name], "srrl")["kwargs"]["fm_weight"],
                      _entry(rows[name], "srrl")["kwargs"]["sr_weight"])
               for name in ("L_FM", "L_SR", "L_FM+L_SR")}
    assert weights == {"L_FM": (1.0, 0.0), "L_SR": (0.0, 1.0), "L_FM+L_SR": (1.0, 1.0)}


def test_ablation_rows_change_one_thing_each():
    rows = srrl.recipes("face")
    for stage in ("layer3", "layer2"):
        options = _entry(rows[f"L_FM @ {stage}"], "srrl")["kwargs"]
        assert (options["feature"], options["fm_weight"], options["sr_weight"]) == (stage, 1, 0)
    multi = rows["L_FM+L_SR + hint @ layer3"]
    assert _entry(multi, "srrl")["kwargs"]["feature"] == "embedding"
    assert _entry(multi, "fitnet")["weight"] == 1.0
    forms = {name: _entry(rows[f"L_FM+L_SR ({name})"], "srrl")["kwargs"]["sr_form"]
             for name in ("CE", "KL")}
    assert forms == {"CE": "ce", "KL": "kl"}
    assert rows["L_FM+L_SR (D+U)"].unlabeled and rows["L_FM+L_SR (D+U)"].group == "unlabeled"
    cifar = srrl.recipes("cifar")
    assert "L_FM+L_SR (D+U)" not in cifar and "L_FM @ layer1" in cifar
    assert _entry(cifar["AT"], "at")["kwargs"]["stages"] == ["layer1", "layer2", "layer3"]
    with pytest.raises(ConfigError, match="task must be"):
        srrl.recipes("imagenet")


def test_recipe_describes_its_objective():
    rows = srrl.recipes("face")
    assert rows["KD"].describe() == "0.1·CE + 0.9·kd"
    assert rows["L_FM @ layer2"].describe() == "1·CE + 1·srrl(fm 1, sr 0 l2, at layer2)"
    assert rows["L_FM+L_SR (D+U)"].describe().endswith("+ 1·KD(U) + 1·mixup KD(D,U)")


@pytest.mark.parametrize("epochs, expected", [(12, 5), (10, 4), (1, 1)])
def test_default_students_train_40_percent_of_the_epochs(epochs, expected):
    assert srrl.student_epochs(get_profile("default", epochs=epochs)) == expected
    assert srrl.student_epochs(get_profile("paper", epochs=epochs)) == epochs


def test_face_study_uses_the_shared_teacher_and_an_iresnet18_student(face_study):
    profile = face_study.profile
    teacher = face_study.teacher
    assert teacher == teacher_spec(face_study.bench)
    student = face_study.spec("Student")
    assert (student.backbone, student.head, student.head_kwargs, student.method) == (
        "iresnet18", teacher.head, teacher.head_kwargs, "classify")
    assert student.backbone_kwargs == {"input_size": profile.resolution,
                                       "width": profile.backbone_width,
                                       "embedding_size": profile.embedding_size}
    # the margin recipe: a Softmax pre-training as long as the teacher's, then a share of the
    # teacher's fine-tuning, at its learning rate
    assert student.init_from.head == "softmax"
    assert student.init_from.train == teacher.init_from.train
    assert student.train["epochs"] == srrl.student_epochs(profile, teacher.train["epochs"])
    assert student.train["lr"] == teacher.train["lr"]
    kd = face_study.spec("KD")
    assert kd.method == "distill" and kd.method_kwargs["teacher"] == face_study.teacher.to_dict()
    assert kd.replace(method="classify", method_kwargs={}, name="") == student.replace(name="")
    assert face_study.spec("Teacher") is face_study.teacher
    with pytest.raises(ConfigError, match="unknown row 'SP'"):
        face_study.spec("SP")


def test_unlabeled_and_heldout_sets_are_drawn_where_they_should_be(face_study):
    train = face_study.student.data
    unlabeled = face_study.spec("L_FM+L_SR (D+U)")
    assert unlabeled.method == "distill_unlabeled"
    data = unlabeled.method_kwargs["unlabeled"]
    assert data == {**train, "identity_offset": train["num_identities"]}
    assert face_study.heldout_data == {**train, "images_per_identity":
                                       train["images_per_identity"] + 4}


def test_plan_lists_every_row_with_its_size(face_study):
    plan = face_study.plan().set_index("row")
    profile = face_study.profile
    labeled = profile.train_identities * profile.train_images_per_identity
    assert len(plan) == 1 + len(face_study.recipes)
    teacher = face_study.teacher
    assert plan.loc["Teacher", "epochs"] == teacher.train["epochs"]
    assert (plan["pre-training epochs"] == profile.epochs).all()
    assert (plan.drop("Teacher")["epochs"] == srrl.student_epochs(
        profile, teacher.train["epochs"])).all()
    assert (plan["labeled images"] == labeled).all()
    assert plan["unlabeled images"].to_dict() == {
        row: (labeled if row == "L_FM+L_SR (D+U)" else 0) for row in plan.index}


def test_heldout_images_are_new_images_of_the_training_identities(face_study):
    from fkdlib.data import build_dataset

    images = srrl.analysis_images(face_study)
    # the smoke profile's 30 test identities are fewer than NMI_IDENTITIES: all are clustered
    assert np.array_equal(images.cluster_rows, np.arange(len(images.test)))
    profile = face_study.profile
    per_identity = profile.train_images_per_identity
    assert len(images.heldout) == profile.train_identities * 4
    assert images.fit is images.heldout
    assert np.array_equal(np.unique(images.heldout_labels), np.arange(profile.train_identities))
    # the first images of each identity are exactly the training images, the rest are new
    full = build_dataset(face_study.heldout_data).images_u8().reshape(
        profile.train_identities, per_identity + 4, 3, profile.resolution, profile.resolution)
    train = build_dataset(face_study.student.data).images_u8().reshape(
        profile.train_identities, per_identity, 3, profile.resolution, profile.resolution)
    assert np.array_equal(full[:, :per_identity], train)
    assert np.array_equal(images.heldout.numpy(), full[:, per_identity:].reshape(
        -1, 3, profile.resolution, profile.resolution))
    assert len(images.test) == len(images.test_labels) == (
        profile.test_identities * profile.test_images_per_identity)


# --- formulas -------------------------------------------------------------------------------

def test_nmi_bootstrap_centres_its_interval_on_the_mean_over_seeds():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(40), 9)
    random = [rng.integers(0, 40, labels.size) for _ in range(2)]
    perfect = [labels, labels]
    result = srrl.nmi_difference_bootstrap(random, perfect, labels, labels, n_boot=300)
    expected = np.mean([100 * normalized_mutual_info_score(labels, c) for c in random]) - 100
    assert result.effect == pytest.approx(expected)
    # repeated identities inflate an imperfect clustering's NMI: the raw resamples sit above
    # the effect, the centred interval holds it
    assert result.ci_low < result.effect < result.ci_high and result.se > 0
    assert result.ci_high < 0 and result.p_value < 0.05
    # the plain percentile interval of the same kind of resamples misses the effect
    from fkdlib.evaluation.clustering import _ResampledNMI
    from fkdlib.evaluation.uncertainty import hierarchical_bootstrap

    def nmi(clusters, y, weights=None):  # the bootstrap metric contract, clusters as scores
        score = _ResampledNMI(y, clusters.astype(int))
        if weights is None:
            return 100 * score(np.ones(y.size))
        return np.array([100 * score(row.astype(float)) for row in weights])

    plain = hierarchical_bootstrap(nmi, [c.astype(float) for c in random],
                                   [c.astype(float) for c in perfect], labels, labels,
                                   n_boot=300)
    assert plain.effect == pytest.approx(result.effect) and plain.ci_low > result.effect
    with pytest.raises(ConfigError, match="at least 2 units"):
        srrl.nmi_difference_bootstrap(random, perfect, labels, np.zeros(labels.size), 10)


def test_representation_takes_one_run_or_several_and_averages_the_seeds():
    one = srrl.Representation(kl={"A": np.array([1.0, 3.0])}, ce={"A": np.ones(2)},
                              l2={"A": np.zeros(2)}, clusters={"A": np.zeros(2, int)},
                              nmi={"A": 0.5}, test_labels=np.arange(2))
    assert len(one.kl["A"]) == 1 and one.nmi["A"] == [0.5]
    two = srrl.Representation(kl={"A": [np.array([1.0, 3.0]), np.array([5.0, 7.0])]},
                              ce={"A": [np.ones(2), np.ones(2)]},
                              l2={"A": [np.zeros(2), np.ones(2)]},
                              clusters={"A": [np.zeros(2, int)] * 2}, nmi={"A": [0.5, 0.7]},
                              test_labels=np.arange(2), cluster_rows=np.array([1]))
    row = two.table().set_index("row").loc["A"]
    assert (row["KL with teacher"], row["L2 distance"], row["seeds"]) == (4.0, 0.5, 2)
    assert row["NMI (%)"] == pytest.approx(60.0)
    assert np.array_equal(two.cluster_labels, [1])


# --- tables and claims on hand-made evaluations ---------------------------------------------

def _face_eval(rank1_hits, lfw=90.0, tar=0.5):
    """What the tables and claims read from a face Evaluation."""
    ranks = np.where(np.asarray(rank1_hits, bool), 1, 5)
    summary = {"LFW-like acc": lfw, "CFP-FP-like acc": lfw - 10, "AgeDB-like acc": lfw - 5,
               "IJB-like TAR@0.001": tar, "rank-1": 100 * float((ranks == 1).mean())}
    return SimpleNamespace(
        identification=SimpleNamespace(probe_ranks=ranks,
                                       rank_accuracies={1: float((ranks == 1).mean())}),
        tar={"ijb": {1e-3: tar / 2}}, summary=lambda: summary, name="fake")


def test_face_tables_put_the_thesis_numbers_beside_ours():
    evaluations = {row: _face_eval([1, 0, 1, 1], lfw=80.0 + i)
                   for i, row in enumerate(["Student", "KD", "L_FM+L_SR", "Teacher"])}
    table = srrl.table_4_12(evaluations).set_index("row")
    assert list(table.index) == ["Student", "KD", "L_FM+L_SR", "Teacher"]
    assert table.loc["L_FM+L_SR", "thesis row"] == "Ours"
    assert table.loc["L_FM+L_SR", "Ver TAR@1e-6 (thesis, %)"] == 94.17
    assert table.loc["KD", "Id rank-1 (thesis, %)"] == 90.91
    assert table.loc["Student", "IJB-like TAR@1e-3 (ours, %)"] == 25.0
    assert table.loc["Student", "rank-1 (ours, %)"] == 75.0
    verification = srrl.table_4_13(evaluations).set_index("row")
    assert verification.loc["Teacher", "LFW-like (ours)"] == 83.0
    assert verification.loc["Teacher", "CPLFW (thesis)"] == 93.30
    unlabeled = srrl.table_4_19(evaluations).set_index("row")
    assert list(unlabeled.index) == ["Student", "L_FM+L_SR", "Teacher"]
    assert unlabeled.loc["L_FM+L_SR", "CFP-FP (thesis)"] == 91.34


def test_face_tables_average_the_seeds():
    runs = {row: [_face_eval([1, 0, 1, 1], lfw=80.0, tar=0.4),
                  _face_eval([1, 1, 1, 1], lfw=90.0, tar=0.6)]
            for row in ["Student", "L_FM+L_SR", "Teacher"]}
    table = srrl.table_4_12(runs).set_index("row")
    assert table.loc["Student", "rank-1 (ours, %)"] == pytest.approx((75.0 + 100.0) / 2)
    assert table.loc["Student", "IJB-like TAR@1e-3 (ours, %)"] == pytest.approx(25.0)
    assert set(table["seeds"]) == {2}
    verification = srrl.table_4_13(runs).set_index("row")
    assert verification.loc["Teacher", "LFW-like (ours)"] == pytest.approx(85.0)
    results = srrl.results_table(runs)
    assert results.loc["L_FM+L_SR", "rank-1"] == pytest.approx(87.5)
    assert results["seeds"].tolist() == [2, 2, 2]


ROWS = ["Teacher", "Student", "KD", "FitNet", "AT", "RKD", "PKT", "L_FM", "L_SR", "L_FM+L_SR",
        "L_FM @ layer3", "L_FM @ layer2", "L_FM+L_SR (D+U)"]
RATES = dict(zip(ROWS, [0.99, 0.5, 0.55, 0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.85, 0.4, 0.45, 0.95]))
IDENTITIES, PROBES = 20, 20


def _with_probes(study, labels):
    """The study with an identification split whose probes have these identities."""
    return replace(study, bench=SimpleNamespace(
        identification=SimpleNamespace(probe_labels=np.asarray(labels))))


def _claim_inputs(rates=RATES, seeds=1, clustered=False, seed=4):
    """Hand-made runs of every row (``seeds`` per row) over IDENTITIES x PROBES probes and the
    same number of test / held-out images, with the thesis's pattern built in. One uniform
    draw per probe (or, ``clustered``, per identity: all its probes hit or miss together) is
    shared by the rows, so better rows hit wherever worse ones do."""
    rng = np.random.default_rng(seed)
    n = IDENTITIES * PROBES
    labels = np.repeat(np.arange(IDENTITIES), PROBES)
    evaluations = {row: [] for row in rates}
    draws = []
    for _ in range(seeds):
        draw = (np.repeat(rng.random(IDENTITIES), PROBES) if clustered else rng.random(n))
        draws.append(draw)
        for row, rate in rates.items():
            evaluations[row].append(_face_eval(draw < rate))
    distance = {row: [np.full(n, 1.0)] * seeds for row in rates}
    distance["L_SR"] = [np.full(n, 0.8)] * seeds
    distance["L_FM+L_SR"] = [np.full(n, 0.5) + rng.normal(0, 0.01, n) for _ in range(seeds)]
    kl = {row: [np.full(n, 2.0) + rng.normal(0, 0.01, n) for _ in range(seeds)]
          for row in rates}
    kl["KD"] = [np.full(n, 1.0)] * seeds
    clusters = {row: [rng.integers(0, IDENTITIES, n) for _ in range(seeds)] for row in rates}
    clusters["L_FM+L_SR"] = [labels] * seeds
    representation = srrl.Representation(
        kl=kl, ce=kl, l2=distance, clusters=clusters,
        nmi={row: [normalized_mutual_info_score(labels, c) for c in runs]
             for row, runs in clusters.items()},
        test_labels=labels, heldout_labels=labels)
    return evaluations, representation, labels, draws


def test_claims_compare_the_right_rows(face_study):
    evaluations, representation, labels, (draw,) = _claim_inputs()
    study = _with_probes(face_study, labels)
    table = srrl.check_claims(study, evaluations, representation, n_boot=300,
                              assess=True).set_index("id")
    assert len(table) == 14 and table.index[0] == srrl.PREMISE
    assert all(claim.requires == (srrl.PREMISE,) for claim in srrl.claims(study)[1:])
    hits = {row: 100 * (draw < rate) for row, rate in RATES.items()}
    assert table.loc["L_SR>L_FM", "effect"] == pytest.approx(hits["L_SR"].mean()
                                                             - hits["L_FM"].mean())
    assert "L_FM+L_SR − L_SR" in table.loc["L_FM+L_SR:best-of-three", "evidence"]
    assert "probe identities resampled" in table.loc["L_SR>L_FM", "evidence"]
    assert "L_FM − L_FM @ layer2" in table.loc["last>earlier", "evidence"]
    assert "L_FM+L_SR − L_SR, fitted L2" in table.loc["L2:smallest", "evidence"]
    assert table.loc["L2:smallest", "effect"] == pytest.approx(
        representation.l2["L_FM+L_SR"][0].mean() - 0.8)
    assert "L_FM+L_SR − KD, KL" in table.loc["KL:smallest", "evidence"]
    assert table.loc["KL:smallest", "status"] == "contradicted"
    assert table.loc["NMI:highest", "status"] == "holds"
    assert table.loc["NMI:highest", "effect"] == pytest.approx(
        100 * (1 - max(representation.nmi[row][0] for row in
                       ("Student", "KD", "FitNet", "AT", "RKD", "PKT", "L_FM", "L_SR"))))
    for claim in (srrl.PREMISE, "L_SR>L_FM", "L_FM+L_SR:best-of-three", "L_FM+L_SR>Student",
                  "L_FM+L_SR>PKT", "L2:smallest", "last>earlier", "D+U>D"):
        assert table.loc[claim, "status"] == "holds", claim
    # every test resamples the 20 identities (probes, test or held-out images) and the seed
    assert table["n"].eq(IDENTITIES * PROBES).all()
    assert table["identities"].eq(IDENTITIES).all() and table["seeds"].eq(1).all()
    assert table["mde"].gt(0).all()
    # the thesis's own effects where Table 4.12 holds both rows (rank-1 identification, %)
    assert table.loc[srrl.PREMISE, "paper_effect"] == pytest.approx(98.82 - 92.28)
    assert table.loc["L_FM+L_SR>KD", "paper_effect"] == pytest.approx(93.26 - 90.91)
    assert table.loc["L_FM+L_SR>Student", "paper_effect"] == pytest.approx(93.26 - 92.28)
    assert np.isnan(table.loc["L_FM+L_SR>FitNet", "paper_effect"])  # no FitNet row
    assert np.isnan(table.loc["L_SR>L_FM", "paper_effect"])  # a CIFAR table only
    with pytest.raises(ConfigError, match="400 probe results but the identification split"):
        srrl.check_claims(_with_probes(face_study, labels[:10]), evaluations, representation,
                          n_boot=10, assess=True)


def test_effects_are_means_over_seeds_and_the_seeds_are_counted(face_study):
    evaluations, representation, labels, draws = _claim_inputs(seeds=2)
    study = _with_probes(face_study, labels)
    table = srrl.check_claims(study, evaluations, representation, n_boot=200,
                              assess=True).set_index("id")
    expected = np.mean([100 * ((d < RATES["L_SR"]).mean() - (d < RATES["L_FM"]).mean())
                        for d in draws])
    assert table.loc["L_SR>L_FM", "effect"] == pytest.approx(expected)
    l2 = representation.l2["L_FM+L_SR"]
    assert table.loc["L2:smallest", "effect"] == pytest.approx(
        np.mean([run.mean() for run in l2]) - 0.8)
    assert table["seeds"].eq(2).all()
    # the one-seed runs' effect differs: the second seed counts
    first = {row: runs[:1] for row, runs in evaluations.items()}
    one = srrl.check_claims(study, first, representation, n_boot=50,
                            assess=True).set_index("id")
    assert one.loc["L_SR>L_FM", "effect"] == pytest.approx(
        100 * ((draws[0] < RATES["L_SR"]).mean() - (draws[0] < RATES["L_FM"]).mean()))


def test_intervals_widen_when_the_hits_cluster_by_identity(face_study):
    evaluations, representation, labels, _ = _claim_inputs(clustered=True, seed=7)
    by_identity = srrl.check_claims(_with_probes(face_study, labels), evaluations,
                                    representation, n_boot=400, assess=True).set_index("id")
    # the same hits with every probe its own unit: the probe bootstrap
    by_probe = srrl.check_claims(_with_probes(face_study, np.arange(labels.size)),
                                 evaluations, representation, n_boot=400,
                                 assess=True).set_index("id")
    claim = "L_FM+L_SR>Student"
    assert by_identity.loc[claim, "effect"] == pytest.approx(by_probe.loc[claim, "effect"])

    def width(table):
        return table.loc[claim, "ci_high"] - table.loc[claim, "ci_low"]

    assert width(by_identity) > 2.5 * width(by_probe)
    assert by_identity.loc[claim, "mde"] > 2.5 * by_probe.loc[claim, "mde"]
    assert (by_identity.loc[claim, "identities"], by_probe.loc[claim, "identities"]) == (
        IDENTITIES, IDENTITIES * PROBES)


def test_a_teacher_no_better_than_the_student_leaves_nothing_assessed(face_study):
    rates = dict(RATES, Teacher=0.3)
    evaluations, representation, labels, _ = _claim_inputs(rates)
    table = srrl.check_claims(_with_probes(face_study, labels), evaluations, representation,
                              n_boot=200, assess=True)
    assert table.status.iloc[0] == "contradicted"
    assert set(table.status.iloc[1:]) == {"not assessed"}
    assert set(table.reason.iloc[1:]) == {f"premise {srrl.PREMISE!r} is contradicted"}
    assert table.effect.notna().all()  # the effects are still recorded


def test_claims_on_an_unhealthy_row_are_not_assessed(face_study):
    evaluations, representation, labels, _ = _claim_inputs()
    reason = "seed 0: training top-1 50.0% < 90%"
    table = srrl.check_claims(_with_probes(face_study, labels), evaluations, representation,
                              n_boot=200, assess=True,
                              unhealthy={"L_FM+L_SR": reason}).set_index("id")
    involving = [c.id for c in srrl.claims(face_study) if "L_FM+L_SR" in c.models]
    assert len(involving) == 11
    for claim in involving:
        assert table.loc[claim, "status"] == "not assessed", claim
        assert reason in table.loc[claim, "reason"]
    for claim in (srrl.PREMISE, "L_SR>L_FM", "last>earlier"):
        assert table.loc[claim, "status"] == "holds", claim
    smoke = srrl.check_claims(_with_probes(face_study, labels), evaluations, representation,
                              n_boot=50, assess=False)
    assert set(smoke.status) == {"not assessed"}


def test_cluster_table_scores_every_seed_of_the_main_rows(face_study):
    import pandas as pd
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    identities = np.repeat(np.arange(10), 6)
    metadata = pd.DataFrame({"identity": identities, "gender": identities % 2})
    centres = rng.normal(size=(10, 16))

    def run(noise):
        return SimpleNamespace(embeddings={"test": centres[identities]
                                           + noise * rng.normal(size=(60, 16))})

    evaluations = {"Teacher": [run(0.01), run(0.01)], "Student": [run(3.0), run(3.0)],
                   "L_FM @ layer2": [run(0.01), run(0.01)]}
    study = replace(face_study, bench=SimpleNamespace(test_metadata=metadata))
    table = srrl.cluster_table(study, evaluations, seed=0)
    assert set(table.model) == {"Teacher", "Student"}  # the ablations stay out of the figure
    assert set(table.target) == {"identity", "gender"} and table["seeds"].eq(2).all()
    identity = table[(table.target == "identity") & (table.method == "kmeans")].set_index(
        "model")
    assert identity.loc["Teacher", "ami"] == pytest.approx(1.0)
    assert identity.loc["Student", "ami"] < identity.loc["Teacher", "ami"]
    assert isinstance(srrl.cluster_figure(table), Figure)
    with pytest.raises(ConfigError, match="CIFAR"):
        srrl.cluster_table(replace(face_study, task="cifar"), evaluations)


def test_cifar_claims_take_the_thesis_effects_of_tables_4_2_to_4_5():
    study = SimpleNamespace(is_face=False)
    assert srrl.paper_effect(study, "L_SR>L_FM", "L_SR", "L_FM") == pytest.approx(79.1 - 78.05)
    assert srrl.paper_effect(study, "L_FM+L_SR>KD", "L_FM+L_SR", "KD") == pytest.approx(
        79.58 - 78.35)
    assert srrl.paper_effect(study, "KL:smallest", "L_FM+L_SR", "L_SR") == pytest.approx(
        0.4597 - 0.4828)
    assert srrl.paper_effect(study, "NMI:highest", "L_FM+L_SR", "L_SR") == pytest.approx(
        79.85 - 79.35)
    assert srrl.paper_effect(study, "L_FM+L_SR>PKT", "L_FM+L_SR", "PKT") is None
    assert srrl.paper_effect(study, srrl.PREMISE, "Teacher", "Student") == pytest.approx(
        79.5 - 76.97)


# --- the CIFAR path -------------------------------------------------------------------------

def test_cifar_study_trains_every_row_once_per_seed_and_fills_table_4_2(cifar_root, tmp_path):
    profile = get_profile("smoke", batch_size=20)
    study = srrl.build_study(profile, 0, f"cifar10:{cifar_root}")
    assert study.task == "cifar" and not study.is_face
    assert (study.teacher.backbone, study.teacher.backbone_kwargs, study.teacher.head) == (
        "wide_resnet", {"depth": 16, "widen": 2}, "softmax")
    assert study.student.backbone_kwargs == {"depth": 10, "widen": 1}
    assert study.student.data == {"kind": "cifar", "path": str(cifar_root), "variant": 10,
                                  "split": "train"}
    assert study.teacher.train["grad_clip"] is None and study.teacher.train["lr"] == 0.05
    rows = ["Student", "L_FM+L_SR", "L_FM @ layer1"]
    models = srrl.train(study, cache_dir=tmp_path, names=rows, log=lambda _: None, seeds=2)
    assert list(models) == ["Teacher", *rows] and all(len(r) == 2 for r in models.values())
    # seed s of a distilled row is trained with seed s and distilled from the teacher of seed s
    distilled = models["L_FM+L_SR"]
    assert [m.spec.train["seed"] for m in distilled] == [0, 1]
    assert [m.spec.method_kwargs["teacher"]["train"]["seed"] for m in distilled] == [0, 1]
    assert [m.spec.train["seed"] for m in models["Teacher"]] == [0, 1]
    evaluations = srrl.evaluate(models, study)
    assert all(len(runs) == 2 for runs in evaluations.values())
    assert evaluations["Student"][0].features.shape[0] == 20
    table = srrl.table_4_2(study, evaluations).set_index("row")
    assert list(table.index) == ["Student", "L_FM+L_SR", "L_FM @ layer1", "Teacher"]
    assert table.loc["L_FM @ layer1", "thesis row"] == "L_FM+L_SR @ conv2"
    assert table.loc["L_FM @ layer1", "thesis Top-1 (%)"] == 77.03
    assert table.loc["Teacher", "thesis Top-1 (%)"] == 79.5
    assert set(table["seeds"]) == {2}
    for row, runs in evaluations.items():
        assert table.loc[row, "Top-1 (ours, %)"] == pytest.approx(
            100 * np.mean([ev.correct.mean() for ev in runs]))
    health = srrl.training_health(study, models, evaluations)
    assert list(zip(health.model, health.seed)) == [
        (row, s) for row in ["Teacher", *rows] for s in (0, 1)]
    assert health["effective_dim"].gt(0).all()
    images = srrl.analysis_images(study)
    assert images.heldout is images.test and len(images.fit) == 40
    assert images.cluster_rows is None
    features = srrl.collect_features(models, images)
    representation = srrl.representation_analysis(features, images)
    for kl in representation.kl["Teacher"]:  # each seed against the teacher of its seed
        assert kl == pytest.approx(np.zeros(20), abs=1e-12)
    assert set(representation.nmi) == {"Teacher", *rows}
    assert all(len(v) == 2 for v in representation.nmi.values())
    # CIFAR units are the test images themselves
    study_rows = {row: evaluations[row] for row in ("Teacher", "Student")}
    tests = srrl.claim_tests(study, study_rows, representation, n_boot=50)
    premise = srrl.claims(study)[0]
    evidence = tests["success"](premise)
    assert (evidence.seeds, evidence.identities, evidence.n) == (2, 20, 20)
    assert evidence.effect == pytest.approx(
        100 * (np.mean([ev.correct.mean() for ev in evaluations["Teacher"]])
               - np.mean([ev.correct.mean() for ev in evaluations["Student"]])))


