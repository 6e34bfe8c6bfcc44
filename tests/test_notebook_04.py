"""Notebook 04 (ICD-Face) runs end to end through papermill on the smoke profile."""

import json

import pandas as pd
import pytest

from fkdlib.distill.icd import FeatureBank


@pytest.mark.slow
def test_notebook_04_runs_on_the_smoke_profile(smoke_notebook, tmp_path):
    results = smoke_notebook("04_icd_face")

    claims = pd.read_csv(results / "claims.csv")
    assert list(claims.id) == ["premise:teacher-compact", "FCD:neg-match", "FCD:pos-lower",
                               "ICD:pos-higher", "ICD:pos-closer", "ICD:TAR"]
    assert set(claims.status) == {"not assessed"} and claims.effect.notna().all()
    beside = pd.read_csv(results / "claims_beside_paper.csv")
    assert list(beside.id) == list(claims.id) and beside["paper says"].notna().all()

    verification = pd.read_csv(results / "verification.csv")
    assert list(verification.method) == ["Teacher", "Student", "FCD", "FCD+ICD"]
    assert verification["LFW-like acc"].between(0, 100).all()
    similarity = pd.read_csv(results / "similarity_stats.csv").set_index("method")
    assert similarity.loc["Teacher", "Δ pos vs teacher"] == 0
    assert similarity[["mean pos", "mean neg"]].abs().le(1).all().all()
    tar = pd.read_csv(results / "tar_at_far.csv")
    assert len(tar) == 4 and tar["TAR@0.1"].between(0, 1).all()
    health = pd.read_csv(results / "training_health.csv")
    assert list(health.model) == ["Teacher", "Student", "FCD", "FCD+ICD"]
    assert set(pd.read_csv(results / "protocols.csv")["key"]) == {"lfw", "cfp_fp", "agedb", "ijb"}
    clusters = pd.read_csv(results / "cluster_quality.csv")
    assert set(clusters.model) == {"Teacher", "Student", "FCD", "FCD+ICD"}

    ablation = pd.read_csv(results / "ablation.csv")
    assert list(ablation.variant) == ["no ICD", "K=2, σ=0.05", "K=4, σ=0.05", "K=8, σ=0.05",
                                      "K=16, σ=0.05", "K=8, σ=0.025", "K=8, σ=0.1", "Teacher"]
    assert ablation.set_index("variant").loc["K=16, σ=0.05", "paper-scale MiB per bank"] == \
        pytest.approx(FeatureBank.estimate_bytes(16) / 2**20)
    memory = pd.read_csv(results / "bank_memory.csv").set_index("K")
    assert memory.loc[8, "bytes per bank"] == 703_770_336
    sizes = pd.read_csv(results / "model_sizes.csv")
    assert list(sizes.role) == ["teacher", "student", "teacher", "student"]

    for figure in ("training_curves", "similarity_distributions", "roc", "tsne", "ablation",
                   "cluster_quality"):
        for ext in ("png", "pdf", "svg"):
            assert (tmp_path / "figures" / "04_icd_face" / f"{figure}.{ext}").exists()
    provenance = json.loads((results / "provenance.json").read_text())
    assert provenance["profile"]["name"] == "smoke" and provenance["runtime_s"] > 0
    assert set(provenance["timings_s"]) == {"training", "evaluation", "t-SNE", "clustering",
                                            "claims", "ablation"}
    assert "04_icd_face" in (tmp_path / "results" / "CLAIMS.md").read_text()
