"""Notebook 05 (FAN-Face) experiment logic: the size and cost table against hand counts, the
specs, the FAN premise, the pose-gain test and the claims, on hand-made inputs."""

import numpy as np
import pandas as pd
import pytest
from conftest import pair_evaluation

from fkdlib.data.synthface.sizes import synthface_data_spec
from fkdlib.errors import ConfigError
from fkdlib.evaluation.benchmark import FaceBenchmark
from fkdlib.evaluation.similarity import best_threshold_accuracy
from fkdlib.experiments import fan_face as exp
from fkdlib.experiments.fan_face import complexity_table
from fkdlib.profiles import get_profile

STAGES = ((64, 56), (128, 28), (256, 14), (512, 7))  # IResNet channels and sides at 112 px
H2_PARAMS = 51 * 64 * 9  # the first convolution also reads the 51 heatmaps
H2_MACS = H2_PARAMS * 112 * 112


@pytest.fixture(scope="module")
def table():
    return complexity_table(112).set_index(["network", "variant"])


def test_baselines_are_insightfaces_iresnets_and_the_thesis_numbers_sit_beside_them(table):
    r34 = table.loc[("ResNet34", "ArcFace (baseline)")]
    assert r34["params_M"] == pytest.approx(34.14, abs=0.005)
    assert r34["GMACs"] == pytest.approx(4.46, abs=0.005)
    assert r34["thesis_params_M"] == 31.8 and r34["thesis_GFLOPs"] == 3.71
    bl50 = table.loc[("ResNet50", "H2, 1-1, BL")]
    assert bl50["thesis_params_added_M"] == pytest.approx(0.4)
    assert bl50["thesis_GFLOPs_added"] == pytest.approx(0.54)


def test_basic_layer_increments_counted_by_hand(table):
    # per stage: BN(256) + 1x1 256->c + 1x1 2c->c + BN(c) + PReLU(c); the FAN is left out
    params = H2_PARAMS + sum(2 * 256 + 256 * c + 2 * c * c + 3 * c for c, _ in STAGES)
    macs = H2_MACS + sum((256 * c + 2 * c * c) * side * side for c, side in STAGES)
    for network in ("ResNet34", "ResNet50"):
        row = table.loc[(network, "H2, 1-1, BL")]
        assert row["params_added_M"] * 1e6 == pytest.approx(params, abs=0.5)
        assert row["GMACs_added"] * 1e9 == pytest.approx(macs, abs=0.5)


def test_simple_layer_adds_only_the_alignment(table):
    macs = H2_MACS + sum(256 * c * side * side for c, side in STAGES)
    assert table.loc[("ResNet34", "H2, 1-1, SL"), "GMACs_added"] * 1e9 == pytest.approx(macs,
                                                                                        abs=0.5)


# ----------------------------------------------------------------------------- specs


@pytest.fixture(scope="module")
def bench():
    """The default profile's unaligned training spec, no image pools (specs only)."""
    profile = get_profile("default")
    return FaceBenchmark(profile, 2, synthface_data_spec(profile, "train", 2, aligned=False),
                         pools={}, verification={})


def test_the_fan_sees_faces_at_twice_the_frns_side_in_multiples_of_64():
    # 112 px faces: the published FAN's 256 px
    assert [exp.fan_input_size(side) for side in (16, 32, 48, 64, 112)] == [64, 64, 128, 128,
                                                                           256]
    with pytest.raises(ConfigError, match="positive integer"):
        exp.fan_input_size(0)


def test_the_fan_is_twice_the_frns_width_on_synthfaces_unaligned_faces(bench):
    fan = exp.fan_spec(bench)
    assert (fan.backbone, fan.head, fan.method) == ("fan", "", "landmarks")
    assert fan.backbone_kwargs == {"stacks": 2, "width": 0.25, "depth": 4, "input_size": 64,
                                   "num_landmarks": 51}
    assert fan.method_kwargs == {"sigma": 1.0}
    assert fan.data == synthface_data_spec(bench.profile, "train", 2, aligned=False)
    assert (fan.train["optimizer"], fan.train["lr"], fan.train["schedule"]) == ("adamw", 1e-3,
                                                                               "cosine")
    assert fan.train["epochs"] == bench.profile.epochs and fan.train["seed"] == 2
    # the FAN of a real-data benchmark is the same SynthFace FAN
    real = FaceBenchmark(bench.profile, 2, {"kind": "folder", "path": "/x/train",
                                            "image_size": 32}, pools={}, verification={})
    assert exp.fan_spec(real) == fan


def test_variants_differ_only_in_what_they_take_from_the_fan(bench):
    specs = exp.specs(bench)
    assert list(specs) == list(exp.THESIS_ROWS)
    fan = exp.fan_spec(bench).to_dict()
    base = specs[exp.BASELINE]
    assert (base.backbone, base.head, base.method) == ("iresnet18", "cosface", "classify")
    assert base.head_kwargs == {"s": 64.0, "m": 0.35} and base.data == fan["data"]
    face = specs[exp.FAN_FACE]
    assert (face.backbone, face.method, face.method_kwargs) == ("fan_face", "fan_guided",
                                                                {"fan": fan})
    assert face.backbone_kwargs == {
        "input_size": 32, "width": 0.125, "embedding_size": 128, "depth": 18, "heatmaps": "h2",
        "integration": "basic", "connectivity": "1-1", "fan_half": "h2l", "fan_stacks": 2,
        "fan_width": 0.25, "fan_depth": 4, "fan_input_size": 64, "num_landmarks": 51}
    for name, spec in specs.items():
        assert spec.train == base.train and spec.data == base.data
    changed = {name: {k: v for k, v in spec.backbone_kwargs.items()
                      if face.backbone_kwargs.get(k) != v}
               for name, spec in specs.items() if spec.backbone == "fan_face"}
    assert changed[exp.BL_L2H] == {"fan_half": "l2h"}
    assert changed[exp.AL] == {"integration": "advanced"}
    assert changed[exp.SL] == {"integration": "simple"}
    assert changed[exp.ONE_TO_MANY] == {"connectivity": "1-M"}
    assert changed[exp.H2] == {"integration": None}
    assert changed[exp.H2_PLUS] == {"integration": None, "heatmaps": "h2+"}
    assert changed[exp.SOFTMAX_FAN_FACE] == {}
    assert specs[exp.SOFTMAX_FAN_FACE].head == "softmax"
    assert specs[exp.SOFTMAX_BASELINE].head == "softmax"
    multitask = specs[exp.MULTITASK]
    assert (multitask.method, multitask.method_kwargs) == ("landmark_multitask", {"fan": fan})
    assert changed[exp.MULTITASK] == {"heatmaps": "none", "integration": None,
                                      "multitask": True}
    assert len({spec.key for spec in specs.values()}) == len(specs)
    with pytest.raises(ConfigError, match="unknown FAN-Face variant"):
        exp.variant_spec(bench, "H3")


# ----------------------------------------------------------------------------- FAN premise


def _nme(all_percent):
    return pd.DataFrame({"pose": ["|yaw| 0-30", "all"], "nme_percent": [1.0, all_percent]})


def test_fan_gate_fails_every_fan_using_model_but_not_the_others():
    assert exp.fan_gate(_nme(9.9)) == "" and exp.fan_unhealthy("") == {}
    reason = exp.fan_gate(_nme(12.5))
    assert "12.5%" in reason and "10% failure threshold" in reason
    sick = exp.fan_unhealthy(reason)
    assert set(sick) == set(exp.VARIANTS) - {exp.BASELINE, exp.SOFTMAX_BASELINE, exp.MULTITASK}
    assert set(sick.values()) == {reason}
    # on real faces the multi-task network learns the landmarks the FAN finds
    assert set(exp.fan_unhealthy(reason, synthetic=False)) == set(sick) | {exp.MULTITASK}


# ----------------------------------------------------------------------------- pose gain


def test_pose_gain_metric_is_the_large_pose_accuracy_minus_the_small_pose_accuracy():
    rng = np.random.default_rng(0)
    issame = rng.random(200) < 0.5
    large = rng.random(200) < 0.4
    scores = rng.normal(size=200) + issame * np.where(large, 0.5, 2.0)
    codes = exp.pose_codes(issame, np.where(large, 70.0, 10.0))
    assert set(np.unique(codes)) == {0, 1, 2, 3}
    expected = (best_threshold_accuracy(scores[large], issame[large])
                - best_threshold_accuracy(scores[~large], issame[~large]))
    assert exp.pose_gain_metric(scores, codes) == pytest.approx(expected)
    # bootstrap weights: a pair drawn twice counts twice
    counts = rng.integers(0, 3, size=(4, 200))
    for row, weights in zip(exp.pose_gain_metric(scores, codes, counts), counts):
        repeat = np.repeat(np.arange(200), weights)
        big = large[repeat]
        assert row == pytest.approx(
            best_threshold_accuracy(scores[repeat][big], issame[repeat][big])
            - best_threshold_accuracy(scores[repeat][~big], issame[repeat][~big]))


# ----------------------------------------------------------------------------- tables, claims


def test_ablation_table_sets_ours_beside_the_thesis():
    negatives = np.linspace(-0.5, 0.5, 20_000)
    evaluations = {exp.BASELINE: [pair_evaluation("a", [0.9] * 200, negatives)] * 2,
                   exp.MULTITASK: pair_evaluation("b", [0.2] * 100 + [0.9] * 100, negatives)}
    table = exp.ablation_table(evaluations).set_index("variant")
    assert table.loc[exp.BASELINE, "runs"] == 2
    assert table.loc[exp.BASELINE, "TAR@0.001"] == 1.0
    assert table.loc[exp.MULTITASK, "TAR@0.01"] == 0.5
    assert table.loc[exp.BASELINE, "thesis TAR@1e-05"] == 0.747
    assert table.loc[exp.MULTITASK, "thesis TAR@0.0001"] == 0.731


def test_claims_carry_the_thesis_gaps_at_the_claims_far():
    claims = {claim.id: claim for claim in exp.claims("ijb", "lfw")}
    assert list(claims) == ["H2>Baseline", "FAN-Face>Baseline", "h2l>l2h", "BL>SL",
                            "AL-not-better", "1-M-not-better", "Multi-task<Baseline",
                            "gain-at-large-pose", "frontal-profile-closer"]
    assert claims["BL>SL"].paper_effect == pytest.approx(0.933 - 0.924)
    assert claims["Multi-task<Baseline"].paper_effect == pytest.approx(0.843 - 0.929)
    assert claims["Multi-task<Baseline"].direction == "less"
    assert (claims["AL-not-better"].direction, claims["AL-not-better"].bound) == ("less", 0.01)
    assert claims["frontal-profile-closer"].protocol == "cfp_fp"
    assert "gain-at-large-pose" not in {c.id for c in exp.claims("ijb", None)}
