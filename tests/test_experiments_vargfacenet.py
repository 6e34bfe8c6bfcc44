"""Notebook 02's experiment logic: specs, size tables against the published counts, latency
ratios, the per-generation tables and the claim wiring, on hand-made evaluations."""


import numpy as np
import pandas as pd
import pytest

from fkdlib.errors import ConfigError
from fkdlib.evaluation import evaluate_verification, profile_model, tar_at_far
from fkdlib.experiments import vargfacenet as exp
from fkdlib.evaluation.benchmark import FARS, Evaluation, face_benchmark
from fkdlib.zoo import teacher_spec
from fkdlib.profiles import get_profile
from fkdlib.report.references import load_reference

GEN = [exp.generation_label(k) for k in range(exp.GENERATIONS + 1)]


@pytest.fixture(scope="module")
def bench():
    return face_benchmark("smoke", seed=0)


# ----------------------------------------------------------------------------- specs


def test_cost_matched_width_is_the_brute_force_minimum():
    widths = np.arange(1, 7) / 16
    target = exp.model_cost("vargfacenet", input_size=32, width=0.125, embedding_size=128).macs
    gaps = [abs(exp.model_cost("mobilefacenet", input_size=32, width=float(w),
                               embedding_size=128).macs - target) for w in widths]
    chosen = exp.cost_matched_width("mobilefacenet", "vargfacenet", 32, 0.125, 128)
    assert chosen == widths[int(np.argmin(gaps))] == 0.25
    assert min(gaps) / target < 0.25  # "at similar cost"


def test_backbone_specs_share_the_teacher_and_its_recipe(bench):
    specs = exp.backbone_specs(bench)
    teacher = teacher_spec(bench)
    assert list(specs) == list(exp.BACKBONES)
    assert specs[exp.TEACHER].key == teacher.key
    for label, spec in specs.items():
        assert spec.backbone == exp.BACKBONES[label]
        assert (spec.head, spec.head_kwargs) == (teacher.head, teacher.head_kwargs)
        assert spec.train == teacher.train and spec.data == teacher.data
        assert spec.backbone_kwargs["embedding_size"] == teacher.backbone_kwargs["embedding_size"]
    profile = bench.profile
    assert specs[exp.MOBILE].backbone_kwargs["width"] == exp.cost_matched_width(
        "mobilefacenet", "vargfacenet", profile.resolution, profile.backbone_width,
        teacher.backbone_kwargs["embedding_size"])
    assert specs[exp.STUDENT].backbone_kwargs["width"] == profile.backbone_width
    assert len({spec.key for spec in specs.values()}) == len(specs)


def test_default_profile_trains_every_backbone_with_the_teachers_recipe():
    bench = face_benchmark(get_profile("default"))
    teacher = teacher_spec(bench)
    specs = exp.backbone_specs(bench)
    # Softmax pre-training for 24 epochs, then the margin for 12
    assert (teacher.init_from.train["epochs"], teacher.train["epochs"]) == (24, 12)
    assert exp.recursive_epochs(bench.profile) == 12
    for spec in specs.values():
        assert spec.train == teacher.train
        assert spec.init_from.train == teacher.init_from.train
        assert spec.init_from.backbone == spec.backbone and spec.init_from.head == "softmax"
    # IResNet-50 is the shared teacher itself: one cache entry
    assert specs[exp.TEACHER].key == teacher.key
    distilled = exp.distillation_specs(bench)
    assert [spec.train["epochs"] for spec in distilled] == [12, 12, 12]
    assert distilled[0].method_kwargs["teacher"] == teacher.to_dict()


def test_distillation_specs_chain_the_generations(bench):
    specs = exp.distillation_specs(bench)
    teacher = teacher_spec(bench)
    assert len(specs) == exp.GENERATIONS + 1 == 3
    # generation 0 starts from VarGFaceNet's Softmax pre-training, as the scratch row does
    scratch = exp.backbone_specs(bench)[exp.STUDENT]
    assert specs[0].init_from == scratch.init_from
    for k, spec in enumerate(specs):
        assert spec.backbone == "vargfacenet" and spec.method == "distill"
        assert spec.method_kwargs["teacher"] == teacher.to_dict()
        assert spec.method_kwargs["losses"] == [{"name": "angular", "weight": 7.0}]
        assert spec.method_kwargs["ce_weight"] == 1.0
        if k:
            assert spec.init_from == specs[k - 1]
            assert spec.name.endswith(f"-gen{k}")
            assert spec.train == {**specs[0].train,
                                  "epochs": exp.recursive_epochs(bench.profile)}
    # generation 0 differs from the margin-only VarGFaceNet only by the distillation method
    assert specs[0].replace(method="classify", method_kwargs={}, name=scratch.name) == scratch
    assert len({spec.key for spec in specs}) == 3


# ----------------------------------------------------------------------------- sizes


def test_model_cost_is_profile_model_remembered():
    options = {"input_size": 16, "width": 0.125, "embedding_size": 32}
    first = exp.model_cost("iresnet18", **options)
    assert first == profile_model("iresnet18", **options)
    assert exp.model_cost("iresnet18", **dict(reversed(options.items()))) is first


def test_published_complexity_matches_the_papers_counts():
    table = exp.complexity_table(exp.published_options()).set_index("backbone")
    assert (table[exp.FLOPS_COL] == 2 * table[exp.MACS_COL]).all()
    assert table.loc[exp.TEACHER, exp.MACS_COL] == pytest.approx(6310, rel=0.01)
    assert table.loc[exp.STUDENT, exp.PARAMS_COL] == pytest.approx(5.20, rel=0.01)
    assert table.loc[exp.STUDENT, exp.FLOPS_COL] == pytest.approx(1022, rel=0.01)
    assert table.loc[exp.DEPTHWISE, exp.MACS_COL] < table.loc[exp.STUDENT, exp.MACS_COL]


def test_paper_size_comparison_prints_the_reference_values():
    table = exp.paper_size_comparison().set_index("backbone")
    sizes = load_reference("insightface_model_sizes")
    r50 = sizes[sizes.method == "IResNet-50"].set_index("metric")["value"]
    assert table.loc[exp.TEACHER, "params (M) (paper)"] == r50["params"]
    assert table.loc[exp.TEACHER, "multiply-adds (G) (paper)"] == r50["MACs"]
    assert np.isnan(table.loc[exp.TEACHER, "FLOPs (G, 2 per multiply-add) (paper)"])
    assert table.loc[exp.STUDENT, "FLOPs (G, 2 per multiply-add) (paper)"] == 1.02
    assert table.loc["VarGFaceNet (without SE)", "params (M) (paper)"] == 4.96
    for ours, paper in (("params (M) (ours)", "params (M) (paper)"),
                        ("multiply-adds (G) (ours)", "multiply-adds (G) (paper)"),
                        ("FLOPs (G, 2 per multiply-add) (ours)",
                         "FLOPs (G, 2 per multiply-add) (paper)")):
        known = table[paper].notna()
        np.testing.assert_allclose(table.loc[known, ours], table.loc[known, paper], rtol=0.012)


# ----------------------------------------------------------------------------- latency


def test_efficiency_table_maps_latency_to_rows(bench, monkeypatch, sleeper):
    seconds = {"iresnet50": 0.04, "vargfacenet": 0.01}
    monkeypatch.setattr(exp, "create_model",
                        lambda name, **kwargs: sleeper(seconds.get(name, 0.02)))
    table = exp.efficiency_table(bench, repeats=1, batch_sizes=(1,))
    profile_setting = f"profile ({bench.profile.resolution} px)"
    assert list(table.setting.unique()) == ["published (112 px)", profile_setting]
    for _, rows in table.groupby("setting"):
        ratio = rows.set_index("backbone")[f"latency b=1 / {exp.TEACHER}"]
        assert ratio[exp.TEACHER] == 1.0
        assert ratio[exp.STUDENT] == pytest.approx(0.25, abs=0.15)
        assert ratio[exp.MOBILE] == pytest.approx(0.5, abs=0.2)
    profile_rows = table[table.setting == profile_setting].set_index("backbone")
    assert profile_rows.loc[exp.MOBILE, "width"] == exp.backbone_specs(bench)[
        exp.MOBILE].backbone_kwargs["width"]


def test_generation_epochs_are_the_margin_fine_tunings_and_at_least_one():
    assert exp.recursive_epochs(get_profile("default", epochs=12)) == 6
    assert exp.recursive_epochs(get_profile("default", epochs=14)) == 7
    assert exp.recursive_epochs(get_profile("paper", epochs=10)) == 5
    assert exp.recursive_epochs(get_profile("smoke", epochs=1)) == 1


def test_latency_plan_by_profile():
    assert exp.latency_plan(get_profile("default")) == ((1, 32), 3)
    assert exp.latency_plan(get_profile("smoke")) == ((1, 4), 1)


# ----------------------------------------------------------------------------- evaluations

LFW_PAIRS, IJB_POS, IJB_NEG = 600, 300, 10000


def _pair_embeddings(cosines: np.ndarray) -> np.ndarray:
    """Unit 2-D pairs whose cosine is exactly ``cosines``."""
    angles = np.arccos(np.clip(cosines, -1, 1))
    emb = np.zeros((2 * cosines.size, 2))
    emb[0::2, 0] = 1.0
    emb[1::2] = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return emb


def fake_evaluation(name: str, quality: float, seed: int = 0, test_embeddings=None):
    """Positive pairs score around ``quality``, negatives around 0 (noise 0.2)."""
    rng = np.random.default_rng(seed)
    lfw_same = np.arange(LFW_PAIRS) % 2 == 0
    lfw = np.clip(np.where(lfw_same, quality, 0.0) + rng.normal(0, 0.2, LFW_PAIRS), -1, 1)
    ijb_same = np.r_[np.ones(IJB_POS, bool), np.zeros(IJB_NEG, bool)]
    ijb = np.clip(np.where(ijb_same, quality, 0.0) + rng.normal(0, 0.2, ijb_same.size), -1, 1)
    verification = {"lfw": evaluate_verification(_pair_embeddings(lfw), lfw_same)}
    tar = {"ijb": {far: float(tar_at_far(ijb, ijb_same, far=far)) for far in FARS}}
    embeddings = {"test": test_embeddings if test_embeddings is not None
                  else np.eye(4)[rng.integers(0, 4, 10)]}
    return Evaluation(name, verification, {"lfw": lfw, "ijb": ijb},
                      {"lfw": lfw_same, "ijb": ijb_same}, tar, embeddings)


QUALITY = {"IResNet-18": 0.7, "IResNet-34": 0.75, exp.TEACHER: 0.9, exp.MOBILE: 0.2,
           exp.STUDENT: 0.5, exp.DEPTHWISE: 0.3, GEN[0]: 0.65, GEN[1]: 0.8, GEN[2]: 0.8,
           exp.DISTILLATION_TEACHER: 0.95, exp.matched_label(1): 0.55}


@pytest.fixture(scope="module")
def evaluations():
    return {name: fake_evaluation(name, q, seed=i) for i, (name, q) in enumerate(QUALITY.items())}


def complexity_frame() -> pd.DataFrame:
    rows = {"IResNet-18": (0.2, 3.5), "IResNet-34": (0.37, 5.9), exp.TEACHER: (0.52, 8.3),
            exp.MOBILE: (0.14, 2.6), exp.STUDENT: (0.19, 2.8), exp.DEPTHWISE: (0.09, 1.0)}
    return pd.DataFrame([{"backbone": k, "input": "32 px", exp.PARAMS_COL: p, exp.MACS_COL: m,
                          exp.FLOPS_COL: 2 * m} for k, (p, m) in rows.items()])


def test_teacher_headroom_is_the_accuracy_difference(evaluations):
    table = exp.teacher_headroom(evaluations, students=[exp.STUDENT, "IResNet-34"])
    teacher = 100 * evaluations[exp.DISTILLATION_TEACHER].verification["lfw"].accuracy_mean
    for _, row in table.iterrows():
        student = 100 * evaluations[row.student].verification["lfw"].accuracy_mean
        assert row["headroom (points)"] == pytest.approx(teacher - student)


def test_teacher_agreement_is_the_mean_cosine():
    reference = np.eye(3)
    evals = {exp.DISTILLATION_TEACHER: fake_evaluation("teacher", 0.9,
                                                       test_embeddings=reference),
             "same": fake_evaluation("same", 0.5, test_embeddings=reference),
             "flipped": fake_evaluation("flipped", 0.5, test_embeddings=-reference),
             "half": fake_evaluation("half", 0.5, test_embeddings=np.array(
                 [[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])),
             "other size": fake_evaluation("other size", 0.5, test_embeddings=np.eye(2))}
    agreement = exp.teacher_agreement(evals)
    assert agreement["same"] == 1.0 and agreement["flipped"] == -1.0
    assert agreement["half"] == pytest.approx(1 / 3)
    assert np.isnan(agreement["other size"])


def test_generation_and_official_tables(evaluations):
    table = exp.generation_table(evaluations)
    assert list(table.model) == [exp.DISTILLATION_TEACHER, exp.STUDENT, *GEN]
    assert table.generation.tolist()[2:] == [0, 1, 2] and table.generation.isna().sum() == 2
    assert table.set_index("model").loc[GEN[1], "LFW-like acc"] == pytest.approx(
        100 * evaluations[GEN[1]].verification["lfw"].accuracy_mean)
    official = exp.official_comparison(evaluations)
    reference = load_reference("vargfacenet_official")
    lfw = reference[reference.metric == "LFW"].set_index("method")["value"]
    assert official["LFW (paper)"].tolist() == [lfw["from scratch"], lfw["recursive 1"],
                                                lfw["recursive 2"]]
    assert official["DeepGlint-light TPR@FPR=1e-8 (paper)"].tolist() == [0.855, 0.88334, 0.88784]
    assert np.isnan(official["CFP-FP-like (ours)"]).all()  # no CFP-FP-like list in the fakes
    assert official["IJB-like TAR@0.001 (ours)"].tolist() == [
        evaluations[g].tar["ijb"][1e-3] for g in GEN]


def test_accuracy_vs_cost_prices_distilled_models_as_vargfacenet(evaluations):
    table = exp.accuracy_vs_cost(evaluations, complexity_frame()).set_index("model")
    assert (table.loc[GEN, exp.FLOPS_COL] == 5.6).all()
    assert table.loc[exp.TEACHER, exp.PARAMS_COL] == 0.52
    assert table.loc[exp.DISTILLATION_TEACHER, exp.PARAMS_COL] == 0.52  # an IResNet-50
    assert table.loc[exp.MOBILE, "IJB-like TAR@0.001"] == evaluations[exp.MOBILE].tar["ijb"][1e-3]


def test_claims_follow_the_evidence(evaluations):
    table = exp.check_claims(evaluations, complexity_frame(), n_boot=200, assess=True,
                             groups=[2, 3, 5, 10]).set_index("id")
    assert table.loc["VarGFaceNet<IR50:params", "effect"] == pytest.approx(0.19 - 0.52)
    assert table.loc["depthwise<VarGFaceNet:FLOPs", "effect"] == pytest.approx(1.0 - 2.8)
    exact = table.loc[["VarGFaceNet<IR50:params", "VarGFaceNet<IR50:FLOPs",
                       "depthwise<VarGFaceNet:FLOPs"]]
    assert (exact.ci_low == exact.effect).all() and (exact.ci_high == exact.effect).all()
    # quality: VarGFaceNet 0.5 > MobileFaceNet 0.2, gen0 0.65 > scratch, gen1 0.8 > gen0 and
    # > its matched control 0.55, depthwise 0.3 < VarGFaceNet: every claim holds on these fakes
    assert set(table.status) == {"holds"}, table[["status", "effect", "ci_low", "ci_high"]]
    assert table.loc[exp.PREMISE_GROUPS, "effect"] == 2 - 1.5  # fewest groups from the bound
    assert table.loc["distilled>scratch:LFW", "effect"] == pytest.approx(
        _best_accuracy(evaluations[GEN[0]]) - _best_accuracy(evaluations[exp.STUDENT]))
    # swap the roles: the depthwise net better than VarGFaceNet contradicts the claim
    swapped = dict(evaluations)
    swapped[exp.DEPTHWISE], swapped[exp.STUDENT] = evaluations[GEN[1]], evaluations[exp.DEPTHWISE]
    again = exp.check_claims(swapped, complexity_frame(), n_boot=200, assess=True,
                             groups=[2, 3, 5, 10]).set_index("id")
    assert again.loc["depthwise<VarGFaceNet:LFW", "status"] == "contradicted"
    # one-group stages (a narrow VarGFaceNet): the S = 8 vs S = 1 accuracy claim is not assessed
    narrow = exp.check_claims(evaluations, complexity_frame(), n_boot=50, assess=True,
                              groups=[1, 1, 3, 5]).set_index("id")
    assert narrow.loc[exp.PREMISE_GROUPS, "status"] == "contradicted"
    assert narrow.loc["depthwise<VarGFaceNet:LFW", "status"] == "not assessed"
    assert narrow.loc["depthwise<VarGFaceNet:FLOPs", "status"] == "holds"
    # a teacher no better than the student: no distillation claim is assessed
    weak = dict(evaluations)
    weak[exp.DISTILLATION_TEACHER] = evaluations[exp.MOBILE]
    gated = exp.check_claims(weak, complexity_frame(), n_boot=50, assess=True,
                             groups=[2, 3, 5, 10]).set_index("id")
    assert gated.loc[exp.PREMISE_TEACHER, "status"] == "contradicted"
    assert set(gated.loc[["distilled>scratch:LFW", "gen1>gen0:TAR", "gen1>matched:LFW"],
                         "status"]) == {"not assessed"}
    smoke = exp.check_claims(evaluations, complexity_frame(), n_boot=50, assess=False,
                             groups=[2, 3, 5, 10])
    assert set(smoke.status) == {"not assessed"} and len(smoke) == 14
    # the paper's own effect, from its stored tables: generation 1 − 0 on LFW, as a fraction
    assert table.loc["gen1>gen0:LFW", "paper_effect"] == pytest.approx((99.783 - 99.683) / 100)


def _best_accuracy(ev: Evaluation) -> float:
    from fkdlib.evaluation import best_threshold_accuracy

    return best_threshold_accuracy(ev.scores["lfw"], ev.issame["lfw"])


def test_matched_control_trains_as_long_as_generation_1(bench):
    specs = exp.specs(bench)
    control = specs[exp.matched_label(1)]
    scratch = specs[exp.STUDENT]
    assert control.train == {**scratch.train, "epochs": scratch.train["epochs"]
                             + exp.recursive_epochs(bench.profile)}
    assert control.init_from == scratch.init_from
    assert control.replace(train=scratch.train).key == scratch.key


def test_stage_groups_count_s_channels_per_stage(bench):
    # width 0.125: VarGFaceNet's 40/80/160/320 channels become 8/8/24/40 (multiples of 8)
    assert exp.stage_groups(bench) == [c // 8 for c in (8, 8, 24, 40)]


def test_model_colors_are_distinct_and_unknown_names_fail():
    names = [*exp.BACKBONES, *GEN]
    assert len({exp.model_color(name) for name in names}) == len(names)
    with pytest.raises(ConfigError, match="no colour"):
        exp.model_color("ResNet-1000")


def test_unknown_backbone_is_refused(bench):
    with pytest.raises(ConfigError, match="unknown model"):
        exp.train(bench, names=["ResNet-1000"])
    with pytest.raises(ConfigError, match="unknown backbone"):
        exp.complexity_table({"ResNet-1000": {"input_size": 32}})
