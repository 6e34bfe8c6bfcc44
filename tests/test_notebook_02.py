"""Notebook 02 (VarGFaceNet) runs end to end through papermill on the smoke profile."""

import json

import numpy as np
import pandas as pd
import pytest


NAME = "02_vargfacenet"
FIGURES = ("efficiency", "training_curves", "generations", "accuracy_vs_cost",
           "similarity_distributions", "roc", "projections", "cluster_quality")


@pytest.mark.slow
def test_notebook_02_runs_on_the_smoke_profile(smoke_notebook, tmp_path):
    results = smoke_notebook(NAME)

    claims = pd.read_csv(results / "claims.csv")
    assert len(claims) == 14 and set(claims.status) == {"not assessed"}
    assert claims.set_index("id").loc["premise:variable-groups", "effect"] == 1 - 1.5
    exact = claims.set_index("id").loc["VarGFaceNet<IR50:params"]
    assert exact.effect < 0 and exact.ci_low == exact.ci_high == exact.effect

    verification = pd.read_csv(results / "verification.csv")
    assert list(verification.model) == ["Teacher (IResNet-50)", "IResNet-18", "IResNet-34",
                                        "IResNet-50",
                                        "MobileFaceNet", "VarGFaceNet", "VarGFaceNet (S=1)"]
    assert verification["LFW-like acc"].between(0, 100).all()

    health = pd.read_csv(results / "training_health.csv")
    assert "VarGFaceNet from scratch, as long as gen 1" in set(health.model)
    assert set(pd.read_csv(results / "protocols.csv")["key"]) == {"lfw", "cfp_fp", "agedb", "ijb"}

    generations = pd.read_csv(results / "generations.csv")
    assert generations.generation.dropna().tolist() == [0, 1, 2]
    teacher = generations.set_index("model").loc["Teacher (IResNet-50)",
                                                 "cosine to Teacher (IResNet-50)"]
    assert teacher == pytest.approx(1.0)

    official = pd.read_csv(results / "official_comparison.csv")
    assert official["LFW (paper)"].tolist() == [99.683, 99.783, 99.833]

    sizes = pd.read_csv(results / "paper_sizes.csv").set_index("backbone")
    assert sizes.loc["IResNet-50", "params (M) (ours)"] == pytest.approx(43.59, abs=0.01)
    assert sizes.loc["VarGFaceNet", "FLOPs (G, 2 per multiply-add) (ours)"] == pytest.approx(
        1.02, rel=0.01)

    efficiency = pd.read_csv(results / "efficiency.csv")
    assert len(efficiency) == 12
    teacher_rows = efficiency[efficiency.backbone == "IResNet-50"]
    np.testing.assert_allclose(teacher_rows["latency b=1 / IResNet-50"], 1.0)
    np.testing.assert_allclose(efficiency[
        "FLOPs (M, 2 per multiply-add)"], 2 * efficiency["multiply-adds (M)"])

    for figure in FIGURES:
        for ext in ("png", "pdf", "svg"):
            assert (tmp_path / "figures" / NAME / f"{figure}.{ext}").exists()
    provenance = json.loads((results / "provenance.json").read_text())
    assert provenance["profile"]["name"] == "smoke" and provenance["runtime_s"] > 0
    assert NAME in (tmp_path / "results" / "CLAIMS.md").read_text()
