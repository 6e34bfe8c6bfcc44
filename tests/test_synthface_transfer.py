"""SynthFace -> real LFW transfer: the specs reuse notebook 01's zoo entry, variants change only
the data, the summary's paired intervals match an independent computation, and the whole
measurement runs end to end on a fake LFW cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fkdlib.evaluation.benchmark import FaceBenchmark
from fkdlib.experiments import arcface
from fkdlib import synthface_transfer as T
from fkdlib.profiles import get_profile

SMALL = {"train_identities": 6, "train_images_per_identity": 3, "verification_folds": 2,
         "protocol_scale": 0.002, "epochs": 1, "batch_size": 8}


def test_the_standard_model_is_notebook_01s_pretraining():
    profile = get_profile("default")
    spec = T.transfer_spec(profile, 1)
    bench = FaceBenchmark(profile, 1, dict(spec.data), pools={}, verification={})
    assert spec.key == arcface.pretrain_spec(bench).key  # one zoo entry for both
    assert (spec.backbone, spec.head) == ("iresnet18", "softmax")


def test_variants_change_only_the_training_data():
    profile = get_profile("default")
    standard = T.transfer_spec(profile, 0)
    fixed = T.transfer_spec(profile, 0, "hair_fixed")
    assert "variant" not in standard.data and fixed.data["variant"] == "hair_fixed"
    assert {k: v for k, v in fixed.data.items() if k != "variant"} == standard.data
    assert (fixed.train, fixed.backbone_kwargs) == (standard.train, standard.backbone_kwargs)
    assert fixed.key != standard.key


def test_summary_pairs_variants_by_seed():
    runs = pd.DataFrame({"variant": ["standard"] * 3 + ["flat_shading"] * 3,
                         "seed": [0, 1, 2] * 2,
                         "accuracy": [70.0, 72.0, 68.0, 66.0, 69.0, 65.5],
                         "fold_std": [1.0] * 6})
    table = T.transfer_summary(runs)
    assert table.loc["standard", "accuracy"] == pytest.approx(70.0)
    assert table.loc["standard", "seed_sd"] == pytest.approx(2.0)
    diff = np.array([-4.0, -3.0, -2.5])
    half = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)
    row = table.loc["flat_shading"]
    assert row["vs standard"] == pytest.approx(diff.mean())
    assert (row["ci low"], row["ci high"]) == pytest.approx((diff.mean() - half,
                                                             diff.mean() + half))
    assert np.isnan(table.loc["standard", "vs standard"])


def test_measure_transfer_end_to_end_on_a_fake_lfw(sklearn_lfw_home, tmp_path):
    profile = get_profile("smoke", **SMALL)
    runs = T.measure_transfer(profile, ["standard", "hair_fixed"], seeds=1,
                              cache_dir=tmp_path / "zoo", data_home=str(sklearn_lfw_home))
    assert runs["variant"].tolist() == ["standard", "hair_fixed"]
    assert runs["seed"].tolist() == [0, 0]
    assert runs["accuracy"].between(0, 100).all() and runs["fold_std"].ge(0).all()
    assert len(list((tmp_path / "zoo").iterdir())) == 2  # one zoo entry per variant
