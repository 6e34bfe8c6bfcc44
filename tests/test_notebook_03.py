"""Notebook 03 (SRRL) runs end to end through papermill on the smoke profile."""

import json

import pandas as pd
import pytest

from fkdlib.experiments import srrl
from fkdlib.profiles import get_profile

NAME = "03_srrl"


@pytest.mark.slow
def test_notebook_03_runs_on_the_smoke_profile(smoke_notebook, tmp_path):
    results = smoke_notebook(NAME)
    rows = list(srrl.recipes("face"))

    claims = pd.read_csv(results / "claims.csv")
    assert len(claims) == 14 and set(claims.status) == {"not assessed"}
    assert claims.id.iloc[0] == srrl.PREMISE
    assert claims["effect"].notna().all() and claims["mde"].notna().all()
    # one seed at smoke; every test resamples identities: probes', test or training ones
    assert claims["seeds"].eq(1).all()
    profile = get_profile("smoke")
    by_id = claims.set_index("id")["identities"]
    assert by_id["KL:smallest"] == profile.train_identities
    assert by_id.drop("KL:smallest").between(2, profile.test_identities).all()

    table = pd.read_csv(results / "results.csv")
    assert table["row"].tolist() == ["Teacher", *rows] and table["seeds"].eq(1).all()
    assert table["rank-1"].between(0, 100).all() and table["LFW-like acc"].between(0, 100).all()

    plan = pd.read_csv(results / "plan.csv")
    assert plan["row"].tolist() == ["Teacher", *rows]

    position = pd.read_csv(results / "table_4_2.csv").set_index("row")
    assert position.loc["L_FM+L_SR", "thesis Top-1 (%)"] == 79.58
    assert position.loc["L_FM @ layer3", "thesis row"] == "L_FM+L_SR @ conv3"
    zoo = pd.read_csv(results / "table_4_12.csv").set_index("row")
    assert zoo.loc["L_FM+L_SR", "Id rank-1 (thesis, %)"] == 93.26
    representation = pd.read_csv(results / "representation.csv").set_index("row")
    assert representation.loc["Teacher", "KL with teacher"] == pytest.approx(0.0, abs=1e-9)
    assert len(representation) == 1 + len(rows)
    for name in ("table_4_3", "table_4_4", "table_4_5", "table_4_13", "table_4_19",
                 "training_times"):
        assert len(pd.read_csv(results / f"{name}.csv")) > 0, name
    health = pd.read_csv(results / "training_health.csv")
    assert health["model"].tolist() == ["Teacher", *rows] and health["seed"].eq(0).all()
    assert health["effective_dim"].gt(0).all()
    protocols = pd.read_csv(results / "protocols.csv")
    assert set(protocols["key"]) == {"lfw", "cfp_fp", "agedb", "ijb"}
    clusters = pd.read_csv(results / "cluster_quality.csv")
    assert set(clusters["model"]) == set(srrl.CLUSTER_ROWS)
    assert set(clusters["target"]) >= {"identity", "cohort"} and clusters["ami"].le(1).all()

    for figure in ("tsne", "similarity_distributions", "roc", "cluster_quality",
                   "training_health"):
        for ext in ("png", "pdf", "svg"):
            assert (tmp_path / "figures" / NAME / f"{figure}.{ext}").stat().st_size > 0
    provenance = json.loads((results / "provenance.json").read_text())
    assert provenance["profile"]["name"] == "smoke" and provenance["runtime_s"] > 0
    assert set(provenance["timings_s"]) == {"training", "evaluation", "representation analysis",
                                            "t-SNE", "clustering", "claims"}
    assert NAME in (tmp_path / "results" / "CLAIMS.md").read_text()
