"""Notebook 05 (FAN-Face) runs end to end through papermill on the smoke profile."""

import json

import pandas as pd
import pytest

from fkdlib.experiments import fan_face as exp


@pytest.mark.slow
def test_notebook_05_runs_on_the_smoke_profile(smoke_notebook, tmp_path):
    results = smoke_notebook("05_fan_face")

    claims = pd.read_csv(results / "claims.csv")
    assert list(claims.id) == [claim.id for claim in exp.claims("ijb", "lfw")]
    assert set(claims.status) == {"not assessed"}
    beside = pd.read_csv(results / "claims_beside_paper.csv")
    assert list(beside.id) == list(claims.id)

    variants = list(exp.VARIANTS)
    assert list(pd.read_csv(results / "verification.csv").method) == variants
    ablation = pd.read_csv(results / "ablation.csv").set_index("variant")
    assert list(ablation.index) == variants
    assert ablation.loc[exp.FAN_FACE, "thesis TAR@0.0001"] == 0.876
    fan_nme = pd.read_csv(results / "fan_nme.csv").set_index("pose")
    assert fan_nme.loc["all", "images"] == 30 * 12
    assert (fan_nme["mean-shape nme_percent"].dropna() > 0).all()
    by_pose = pd.read_csv(results / "accuracy_by_pose_lfw.csv")
    assert by_pose.pairs.sum() == 120 and set(variants) <= set(by_pose.columns)
    frontal_profile = pd.read_csv(results / "accuracy_by_pose_cfp_fp.csv")
    assert frontal_profile.pairs.sum() == 140 and set(frontal_profile["max |yaw|"]) == {"45-60°"}
    complexity = pd.read_csv(results / "complexity.csv")
    assert set(complexity.network) == {"ResNet34", "ResNet50"}
    assert list(pd.read_csv(results / "training_health.csv").model.unique()) == variants

    for figure in ("fan_landmarks", "training_health", "accuracy_by_pose",
                   "similarity_distributions", "tsne_frontal_profile"):
        assert (tmp_path / "figures" / "05_fan_face" / f"{figure}.png").exists()
    provenance = json.loads((results / "provenance.json").read_text())
    assert provenance["profile"]["name"] == "smoke"
    assert set(provenance["timings_s"]) == {"FAN", "training", "evaluation", "t-SNE", "claims"}
    assert "05_fan_face" in (tmp_path / "results" / "CLAIMS.md").read_text()
