"""Real data behind the benchmark: the data sources (``rec:``, ``folder:``, ``--eval lfw``),
protocols as data (a missing protocol makes a claim *not assessed*), where runs write, and
profile overrides. The fixtures are SynthFace exported in the real formats
(:func:`fkdlib.data.synthface.export.export_synthface`) and a fake scikit-learn LFW cache."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fkdlib.data.formats import ImageFolderDataset, write_sklearn_lfw_cache
from fkdlib.data.formats.images import decode_rgb
from fkdlib.data.synthface.export import export_synthface
from fkdlib.errors import ConfigError, DataUnavailable, MissingDataError
from fkdlib.evaluation import benchmark as B
from fkdlib.evaluation.health import training_images
from fkdlib.evaluation.sources import SKLEARN_LFW, parse_eval_sets
from fkdlib.outputs import data_slug, is_committed_run, output_dirs, output_root
from fkdlib.profiles import get_profile, parse_overrides
from fkdlib.report.claims import NOT_ASSESSED, Claim, Evidence, evaluate_claims

# Small enough to export in a second; every verification fold fillable.
SMALL = {"train_identities": 6, "train_images_per_identity": 3, "test_identities": 8,
         "test_images_per_identity": 6, "verification_folds": 2, "protocol_scale": 0.002,
         "identification_distractors": 4}
PROFILE = get_profile("smoke", **SMALL)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("real") / "faces"
    export_synthface(root, PROFILE, seed=0)
    return root


@pytest.fixture(scope="module")
def sklearn_home(tmp_path_factory, exported):
    home = tmp_path_factory.mktemp("sklearn")
    test = ImageFolderDataset(exported / "test")
    faces: dict[str, list[np.ndarray]] = {}
    for path, label in test.samples:
        faces.setdefault(f"Person_{label}", []).append(decode_rgb(path.read_bytes(), str(path)))
    write_sklearn_lfw_cache(home, faces, folds=10, pairs_per_fold=2, seed=0)
    return home


# ----------------------------------------------------------------------------- sources


def test_rec_source_reads_the_bins_at_the_profile_scale(exported):
    synth = B.face_benchmark(PROFILE, 0)
    real = B.face_benchmark(PROFILE, 0, f"rec:{exported}")
    assert real.train_data == {"kind": "recordio", "path": str(exported), "image_size": 16}
    assert real.protocols == ("lfw", "cfp_fp", "agedb") and not real.synthetic
    assert real.identification is None and real.test_metadata is None
    for key in real.protocols:
        mine, theirs = real.verification[key].protocol, synth.verification[key].protocol
        np.testing.assert_array_equal(mine.issame, theirs.issame)
        np.testing.assert_array_equal(mine.fold, theirs.fold)
        assert (mine.labels == -1).all()  # a .bin names no identities
        assert real.verification[key].source == B.REAL_BINS[key]
    # the list with the most negatives, the first listed on a tie
    assert [real.verification[k].protocol.num_negative for k in real.protocols] == [6, 6, 6]
    assert real.pair_protocol == "lfw"
    real.verification["cfp_fp"].protocol.issame[:] = False
    assert real.pair_protocol == "cfp_fp"
    assert real.source == "faces (insightface .rec)"
    frame = real.describe()
    assert list(frame.source) == ["lfw.bin", "cfp_fp.bin", "agedb_30.bin"]


def test_folder_source_reads_bins_pairs_and_test_identities(exported):
    bench = B.face_benchmark(PROFILE, 0, f"folder:{exported}")
    assert bench.train_data == {"kind": "folder", "path": str(exported / "train"),
                                "image_size": 16}
    # lfw.bin wins over pairs.txt (a note says so); test/ adds the IJB-like list and
    # identification
    assert set(bench.protocols) == {"lfw", "cfp_fp", "agedb", "ijb", "identification"}
    assert any("pairs.txt ignored" in note for note in bench.notes)
    assert bench.pair_protocol == "ijb" and bench.verification["ijb"].pool == "test"
    meta = bench.test_metadata
    assert meta["identity"].nunique() == 8 and len(meta) == 8 * 6
    templates = bench.verification["ijb"].protocol
    assert templates.num_positive == 8 and templates.num_templates == 16
    split = bench.identification
    assert split.gallery_rows.size == 8 and split.distractor_rows.size == 0
    assert bench.pools["test"].shape == (48, 3, 16, 16)


def test_folder_source_with_only_pairs_txt_and_singletons(exported, tmp_path):
    import shutil

    root = tmp_path / "mine"
    shutil.copytree(exported / "train", root / "train")
    shutil.copytree(exported / "test", root / "test")
    shutil.copy(exported / "pairs.txt", root / "pairs.txt")
    # one more identity with a single image: a distractor
    (root / "test" / "zz_single").mkdir()
    first = next((root / "test").glob("*/*.png"))
    shutil.copy(first, root / "test" / "zz_single" / "zz_single_0001.png")
    bench = B.face_benchmark(PROFILE, 0, f"folder:{root}")
    assert set(bench.protocols) == {"lfw", "ijb", "identification"}
    lfw = bench.verification["lfw"].protocol
    synth = B.face_benchmark(PROFILE, 0).verification["lfw"].protocol
    np.testing.assert_array_equal(lfw.issame, synth.issame)
    # pairs.txt names its people: identities are known and consistent with issame
    assert (lfw.labels >= 0).all()
    np.testing.assert_array_equal(lfw.labels[0::2] == lfw.labels[1::2], lfw.issame)
    assert bench.verification["lfw"].source == "pairs.txt over test/"
    assert bench.identification.distractor_rows.size == 1
    assert bench.pools["distractors"].shape == (1, 3, 16, 16)
    # the distractor is scored: identification runs end to end
    ev = B.evaluate(_MeanEmbedding(), bench)
    assert 0 <= ev.identification.rank_accuracies[1] <= 1


def test_folder_source_without_train_or_protocols_says_what_is_expected(tmp_path, exported):
    with pytest.raises(MissingDataError, match="train"):
        B.face_benchmark(PROFILE, 0, f"folder:{tmp_path}")
    import shutil

    shutil.copytree(exported / "train", tmp_path / "train")
    with pytest.raises(MissingDataError, match="no evaluation protocol"):
        B.face_benchmark(PROFILE, 0, f"folder:{tmp_path}")


def test_eval_lfw_adds_the_official_pairs_from_scikit_learn(sklearn_home, monkeypatch):
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(sklearn_home))
    bench = B.face_benchmark(PROFILE, 0, "synthface", eval_sets="lfw")
    assert bench.protocols[-2:] == (SKLEARN_LFW, "identification")
    protocol = bench.verification[SKLEARN_LFW].protocol
    # 10 folds of 2 + 2 pairs in the cache (40); the profile's 2 folds take 20 pairs each, of
    # which its scale (0.2% of 6,000 over 2 folds: 3 + 3) keeps the first of each class
    assert protocol.num_pairs == 12 and bench.pools[SKLEARN_LFW].shape == (24, 3, 16, 16)
    np.testing.assert_array_equal(protocol.fold, np.repeat([0, 1], 6))
    # in the file's order: each original fold lists its 2 positives, then its 2 negatives
    np.testing.assert_array_equal(protocol.issame, np.tile([1, 1, 0, 0, 1, 0], 2).astype(bool))
    np.testing.assert_array_equal(protocol.labels[0::2] == protocol.labels[1::2],
                                  protocol.issame)
    assert bench.verification[SKLEARN_LFW].label == "LFW (real)"


def test_eval_lfw_offline_without_a_copy_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path))
    import fkdlib.data.formats.sklearn_lfw as module

    original = module.load_sklearn_lfw_pairs
    monkeypatch.setattr(module, "load_sklearn_lfw_pairs",
                        lambda *a, **k: original(*a, **{**k, "download": False}))
    with pytest.raises(MissingDataError, match="lfw_home"):
        B.face_benchmark(PROFILE, 0, "synthface", eval_sets="lfw")


def test_eval_sets_and_data_are_checked():
    assert parse_eval_sets("") == () and parse_eval_sets(" lfw, lfw ") == ("lfw",)
    with pytest.raises(ConfigError, match="lfw"):
        parse_eval_sets("megaface")
    with pytest.raises(ConfigError, match="folder:"):
        B.face_benchmark(PROFILE, 0, "zip:/nowhere")


# ----------------------------------------------------------------------------- protocols as data


class _MeanEmbedding(torch.nn.Module):
    embedding_size = 4

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 2)[:, :, :, 0].flatten(1)[:, :4]


def test_missing_protocols_raise_data_unavailable_and_claims_say_so(exported):
    bench = B.face_benchmark(PROFILE, 0, f"rec:{exported}")
    ev = B.evaluate(_MeanEmbedding(), bench, name="m")
    with pytest.raises(DataUnavailable, match="no IJB-like list in this data"):
        ev.tar["ijb"]
    with pytest.raises(KeyError):  # still a KeyError for generic handlers
        ev.scores["ijb"]
    assert "ijb" not in ev.scores and ev.tar.get("ijb") is None
    assert ev.identification is None
    assert B.pool_embeddings({"m": [ev]})["m"][0] is ev.embeddings["lfw"]

    from fkdlib.report.evidence import face_tests

    claims = [Claim("a>b:TAR", "a beats b on TAR", "paper", "tar", "pairs:tar@1e-3",
                    ("m", "n"), "ijb"),
              Claim("after", "needs the first", "paper", "tar", "pairs:accuracy", ("m", "n"),
                    "lfw", requires=("a>b:TAR",))]
    checked = evaluate_claims(claims, face_tests({"m": ev, "n": ev}, n_boot=20), assess=True)
    first = checked.iloc[0]
    assert first.status == NOT_ASSESSED and first.reason == "no IJB-like list in this data"
    assert math.isnan(first.effect)
    assert checked.iloc[1].status == NOT_ASSESSED and "premise" in checked.iloc[1].reason


def test_a_test_raising_data_unavailable_leaves_other_claims_alone():
    def unavailable(claim):
        raise DataUnavailable("no such thing here")

    claims = [Claim("x", "x", "p", "m", "gone"), Claim("y", "y", "p", "m", "fine")]
    checked = evaluate_claims(claims, {"gone": unavailable,
                                       "fine": lambda c: Evidence(1.0, 0.5, 1.5)})
    assert list(checked.status) == [NOT_ASSESSED, "holds"]
    assert checked.reason.tolist() == ["no such thing here", ""]


def test_training_images_samples_file_backed_data(exported):
    from fkdlib.data import build_dataset

    dataset = build_dataset({"kind": "folder", "path": str(exported / "train"),
                             "image_size": 16})
    images, labels = training_images(dataset, max_images=5, seed=1)
    assert images.dtype == torch.uint8 and images.shape == (5, 3, 16, 16)
    rows = np.sort(np.random.default_rng(1).choice(len(dataset), 5, replace=False))
    np.testing.assert_array_equal(labels.numpy(), np.asarray(dataset.targets)[rows])
    expected = torch.round((dataset[int(rows[0])]["image"] * 0.5 + 0.5) * 255).to(torch.uint8)
    assert torch.equal(images[0], expected)
    everything, _ = training_images(dataset, max_images=100)
    assert everything.shape[0] == len(dataset) == 18


# ----------------------------------------------------------------------------- outputs


def test_only_the_committed_configuration_writes_results(tmp_path):
    assert is_committed_run("default", 0, "synthface") and is_committed_run("default", 0, "")
    assert output_root("default", 0, "synthface", root=tmp_path) == tmp_path
    assert output_dirs("default", 0, "synthface", root=tmp_path) == (
        tmp_path / "results", tmp_path / "figures")
    cases = {
        ("smoke", 0, "synthface", "", ""): "build/smoke/synthface-seed0",
        ("default", 1, "synthface", "", ""): "build/default/synthface-seed1",
        ("default", 0, "rec:/data/faces_emore/", "", ""): "build/default/rec-faces_emore-seed0",
        ("default", 0, "folder:MY FACES", "lfw", ""): "build/default/folder-MY_FACES+lfw-seed0",
        ("paper", 0, "synthface", "", "epochs=1"): "build/paper-custom/synthface-seed0",
        ("default", 0, "synthface", " ", " "): ".",
    }
    for (profile, seed, data, eval_sets, overrides), expected in cases.items():
        assert output_root(profile, seed, data, eval_sets, overrides, root=tmp_path) == \
            tmp_path / expected
    assert data_slug("cifar100:/x/cifar-100-python") == "cifar100-cifar-100-python"


def test_a_notebook_with_changed_parameters_writes_under_build(tmp_path, monkeypatch, capsys):
    from fkdlib import notebook

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "fkdlib").mkdir()
    monkeypatch.chdir(tmp_path)
    ctx = notebook.start_notebook("01_x", "smoke", 3, "cpu", overrides="epochs=2")
    assert str(ctx.results_dir) == "build/smoke-custom/synthface-seed3/results/01_x"
    assert str(ctx.figures_dir) == "build/smoke-custom/synthface-seed3/figures/01_x"
    assert ctx.profile.epochs == 2 and "writing under" in capsys.readouterr().out
    committed = notebook.start_notebook("01_x", "default", 0, "cpu")
    assert str(committed.results_dir) == "results/01_x"


def test_profile_overrides_are_parsed_and_checked():
    assert parse_overrides("") == {}
    assert parse_overrides("epochs=2, protocol_scale=1, difficulty=easy,assess_claims=false") == {
        "epochs": 2, "protocol_scale": 1.0, "difficulty": "easy", "assess_claims": False}
    for bad, message in (("epochs", "KEY=VALUE"), ("epoch=2", "unknown profile field"),
                         ("epochs=2.5", "takes a int"), ("name=x", "unknown profile field"),
                         ("assess_claims=1", "takes a bool")):
        with pytest.raises(ConfigError, match=message):
            parse_overrides(bad)


# ----------------------------------------------------------------------------- notebooks' modules


def test_arcface_on_real_data_records_no_angles_and_says_why(exported):
    from fkdlib.experiments import arcface

    real = B.face_benchmark(PROFILE, 0, f"rec:{exported}")
    synth = B.face_benchmark(PROFILE, 0)
    assert all(spec.monitors == () for spec in arcface.specs(real).values())
    assert all(spec.monitors == ("target_angles",) for spec in arcface.specs(synth).values())

    class Run:
        history = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0]})

    tests = arcface.claim_tests({}, {"ArcFace": [Run()]}, n_boot=10)
    theta = next(c for c in arcface.claims() if c.id == "ArcFace:theta-shrinks")
    with pytest.raises(DataUnavailable, match="only on SynthFace"):
        tests["theta"](theta)
    fig = arcface.training_curves_figure({"ArcFace": Run.history})
    assert len(fig.axes) == 1  # the loss alone


def test_srrl_on_real_data_leaves_out_what_needs_synthface(exported):
    from fkdlib.experiments import srrl

    study = srrl.build_study(PROFILE, 0, f"folder:{exported}")
    assert study.is_face and not study.measures_representation
    assert study.unlabeled_data is None and f"{srrl.OURS} (D+U)" not in study.recipes
    assert set(srrl.recipes(srrl.FACE)) - set(study.recipes) == {f"{srrl.OURS} (D+U)"}
    with pytest.raises(DataUnavailable, match="only SynthFace"):
        srrl.analysis_images(study)
    tests = srrl.claim_tests(study, {}, None, n_boot=10)
    kl = next(c for c in srrl.claims(study) if c.test == "kl")
    with pytest.raises(DataUnavailable):
        tests["kl"](kl)
    synthetic = srrl.build_study(PROFILE, 0)
    assert synthetic.measures_representation and f"{srrl.OURS} (D+U)" in synthetic.recipes
    with pytest.raises(ConfigError, match="CIFAR"):
        srrl.build_study(PROFILE, 0, f"cifar100:{exported}", eval_sets="lfw")


def test_icd_claims_follow_the_chosen_pair_list():
    from fkdlib.experiments import icd_face

    assert {c.protocol for c in icd_face.claims()} == {"ijb"}
    assert {c.protocol for c in icd_face.claims("cfp_fp")} == {"cfp_fp"}


def test_an_image_folder_changes_its_dataset_version_when_an_image_is_added(tmp_path):
    import os
    import shutil

    from fkdlib.data import dataset_version

    (tmp_path / "train" / "ann").mkdir(parents=True)
    (tmp_path / "train" / "bob").mkdir()
    (tmp_path / "train" / "ann" / "a.png").write_bytes(b"x")
    spec = {"kind": "folder", "path": str(tmp_path / "train")}
    before = dataset_version(spec)
    assert "folders=2:" in before and dataset_version(spec) == before
    (tmp_path / "train" / "bob" / "b.png").write_bytes(b"y")
    os.utime(tmp_path / "train" / "bob", ns=(1, 10**18))  # a different mtime, whatever the clock
    assert dataset_version(spec) != before
    shutil.rmtree(tmp_path / "train" / "bob")
    assert "folders=1:" in dataset_version(spec)


def test_embedding_analyses_read_the_first_pool_without_test_identities(exported):
    from fkdlib.experiments.vargfacenet import DISTILLATION_TEACHER, teacher_agreement

    bench = B.face_benchmark(PROFILE, 0, f"rec:{exported}")
    ev = B.evaluate(_MeanEmbedding(), bench, name="m")
    assert B.analysis_pool(ev) == "lfw"
    agreement = teacher_agreement({DISTILLATION_TEACHER: ev, "m": ev})
    assert agreement["m"] == pytest.approx(1.0)
    synth = B.evaluate(_MeanEmbedding(), B.face_benchmark(PROFILE, 0), name="s")
    assert B.analysis_pool(synth) == "test"
