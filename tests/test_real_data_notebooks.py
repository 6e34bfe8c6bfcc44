"""Every notebook end to end on real data formats, through ``fkd reproduce`` (papermill), at
smoke size and offline: SynthFace exported as an insightface ``.rec`` with ``.bin`` files
(``rec:``), as image folders with ``.bin`` files, ``test/`` identities and a ``pairs.txt``
(``folder:``), as a folder of one's own photos (``train/`` and ``test/`` only), and the
official LFW pairs from a fake scikit-learn cache (``--eval lfw``).

The suite runs three of these cases (:data:`DEFAULT_CASES`); set ``FKD_REAL_DATA_MATRIX=1``
to run every notebook on every source (``make test-real``).
"""

from __future__ import annotations

import os

import pandas as pd
import pytest

from fkdlib.experiments.arcface import ANGLES_UNAVAILABLE
from fkdlib.experiments.srrl import REPRESENTATION_UNAVAILABLE

NOTEBOOKS = ("01_arcface", "02_vargfacenet", "03_srrl", "04_icd_face", "05_fan_face")
SOURCES = ("rec", "folder", "photos", "synthface+lfw")
# What the suite runs by default (each kind of files once; 03, which reads the most
# SynthFace-only ground truth, on real files). Every case takes minutes: the others run with
# FKD_REAL_DATA_MATRIX=1 (make test-real).
DEFAULT_CASES = {("01_arcface", "photos"), ("03_srrl", "folder"), ("04_icd_face", "rec")}
FULL_MATRIX = os.environ.get("FKD_REAL_DATA_MATRIX") == "1"
NO_IJB = "no IJB-like list in this data"
NO_IDENTIFICATION = "no identification protocol (gallery, probes) in this data"


@pytest.fixture(scope="session")
def own_photos(real_faces, tmp_path_factory):
    """A folder of one's own photos: ``train/`` and ``test/`` identity folders, nothing else."""
    import shutil

    root = tmp_path_factory.mktemp("photos") / "MY_FACES"
    for split in ("train", "test"):
        shutil.copytree(real_faces / split, root / split)
    return root


def _options(source: str, faces, photos) -> dict:
    if source == "synthface+lfw":
        return {"data": "synthface", "eval_sets": "lfw"}
    # the notebook tests on real files also read the fake LFW (it costs nothing)
    if source == "photos":
        return {"data": f"folder:{photos}", "eval_sets": "lfw"}
    return {"data": f"{source}:{faces}", "eval_sets": "lfw"}


def _cases():
    for notebook in NOTEBOOKS:
        for source in SOURCES:
            default = (notebook, source) in DEFAULT_CASES
            marks = [] if default or FULL_MATRIX else [pytest.mark.skip(
                reason="full real-data matrix: FKD_REAL_DATA_MATRIX=1 (make test-real)")]
            yield pytest.param(notebook, source, marks=[pytest.mark.slow, *marks],
                               id=f"{notebook}-{source}")


@pytest.mark.parametrize("notebook, source", list(_cases()))
def test_notebook_runs_on_real_data(notebook, source, smoke_notebook, real_faces, own_photos,
                                    sklearn_lfw_home, monkeypatch):
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(sklearn_lfw_home))
    results = smoke_notebook(notebook, **_options(source, real_faces, own_photos))

    protocols = pd.read_csv(results / "protocols.csv").set_index("key")
    expected = {"rec": {"lfw", "cfp_fp", "agedb", "lfw_real"},
                "folder": {"lfw", "cfp_fp", "agedb", "ijb", "lfw_real"},
                "photos": {"lfw", "ijb", "lfw_real"},
                "synthface+lfw": {"lfw", "cfp_fp", "agedb", "ijb", "lfw_real"}}[source]
    assert set(protocols.index) == expected
    assert protocols.loc["lfw_real", "source"] == "scikit-learn's LFW pairs (View 2)"
    if source in ("rec", "folder"):
        assert protocols.loc["lfw", "source"] == "lfw.bin"
    if source in ("folder", "photos"):
        assert protocols.loc["ijb", "source"] == "test/ identities"
    if source == "photos":  # LFW-like pairs drawn from the test identities
        assert protocols.loc["lfw", "source"] == "test/ identities"

    claims = pd.read_csv(results / "claims.csv")
    assert set(claims.status) == {"not assessed"}  # the smoke profile gives no verdicts
    missing = claims[claims.reason.fillna("").str.contains("in this data")]
    if source == "rec":
        # no IJB-like list and no identification: every claim needing one says which, the
        # others carry an effect (04 and 05 read the list with the most negatives instead)
        assert len(missing) > 0 or notebook in ("04_icd_face", "05_fan_face")
        assert missing.effect.isna().all()
        assert missing.reason.isin([NO_IJB, NO_IDENTIFICATION]).all()
        others = claims.loc[~claims.index.isin(missing.index)]
        if notebook == "03_srrl":  # every 03 face claim reads identification or the features
            assert (others.reason == REPRESENTATION_UNAVAILABLE).all()
        else:
            assert others.effect.notna().any()
    else:
        assert missing.empty

    verification = pd.read_csv(results / "verification.csv" if notebook != "03_srrl"
                               else results / "results.csv")
    assert verification["LFW (real) acc"].between(0, 100).all()
    source_is_real = source != "synthface+lfw"
    if notebook == "01_arcface":
        theta = claims.set_index("id").loc["ArcFace:theta-shrinks"]
        if source_is_real:
            assert theta.reason == ANGLES_UNAVAILABLE
            assert not (results.parent.parent / "figures" / notebook /
                        "target_angle_histograms.png").exists()
        assert (results.parent.parent / "figures" / notebook / "training_curves.png").exists()
    if notebook == "03_srrl":
        rows = pd.read_csv(results / "plan.csv")["row"].tolist()
        assert ("L_FM+L_SR (D+U)" in rows) is (not source_is_real)
        representation = claims[claims.id.str.contains("KL|L2|NMI", regex=True)]
        if source_is_real:
            assert len(representation) and (representation.reason
                                             == REPRESENTATION_UNAVAILABLE).all()
            assert not (results / "table_4_3.csv").exists()
    health = pd.read_csv(results / "training_health.csv")
    assert health["effective_dim"].gt(0).all() and health["train_top1"].between(0, 1).all()


@pytest.mark.slow
def test_the_readme_paper_command_runs_at_tiny_size(smoke_notebook, real_faces):
    """``fkd reproduce --profile paper --data rec:DIR`` with the paper profile's fields
    overridden down to a CPU-sized run (the documented path, known to work)."""
    tiny = ("resolution=16,backbone_width=0.125,embedding_size=32,batch_size=32,epochs=1,"
            "warmup_epochs=0,seeds=1,bootstrap_samples=50,projection_points=60,"
            "assess_claims=false,num_threads=1")
    results = smoke_notebook("01_arcface", profile="paper", data=f"rec:{real_faces}",
                             overrides=tiny)
    provenance = pd.read_json(results / "provenance.json", typ="series")
    assert provenance["profile"]["name"] == "paper"
    assert provenance["profile"]["resolution"] == 16 and provenance["profile"]["epochs"] == 1
    assert pd.read_csv(results / "verification.csv")["LFW-like acc"].between(0, 100).all()
