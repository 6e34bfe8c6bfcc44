"""Every stored notebook is clean; notebook 01 runs end to end through papermill (smoke)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from fkdlib.reproduce import notebook_hygiene_problems

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_clean(notebook):
    assert notebook_hygiene_problems(notebook) == []


@pytest.mark.slow
def test_notebook_01_runs_on_the_smoke_profile(smoke_notebook, tmp_path):
    results = smoke_notebook("01_arcface")
    claims = pd.read_csv(results / "claims.csv")
    assert len(claims) == 14 and set(claims.status) == {"not assessed"}
    face = claims[claims.id != "ArcFace:theta-shrinks"]  # θ_y is measured on training images
    assert claims["seeds"].eq(1).all() and face["identities"].eq(30).all()
    verification = pd.read_csv(results / "verification.csv")
    assert len(verification) == 6 and verification["LFW-like acc"].between(0, 100).all()
    health = pd.read_csv(results / "training_health.csv")
    assert len(health) == 6 and health["effective_dim"].gt(0).all()
    protocols = pd.read_csv(results / "protocols.csv")
    assert set(protocols["key"]) == {"lfw", "cfp_fp", "agedb", "ijb"}
    clusters = pd.read_csv(results / "cluster_quality.csv")
    assert set(clusters["target"]) >= {"identity", "cohort"} and clusters["ami"].le(1).all()
    for figure in ("target_logit_curves", "similarity_distributions", "roc",
                   "target_angle_histograms", "toy_2d_embedding", "projections",
                   "cluster_quality", "arcface_from_scratch"):
        for ext in ("png", "pdf", "svg"):
            assert (tmp_path / "figures" / "01_arcface" / f"{figure}.{ext}").exists()
    provenance = json.loads((results / "provenance.json").read_text())
    assert provenance["profile"]["name"] == "smoke" and provenance["runtime_s"] > 0
    # six losses, their shared pre-training and ArcFace from scratch; one seed at smoke
    assert provenance["zoo"]["models"] == 8 and provenance["zoo"]["training_s"] > 0
    assert "01_arcface" in (tmp_path / "results" / "CLAIMS.md").read_text()
