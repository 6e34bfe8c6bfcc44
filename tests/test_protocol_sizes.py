"""The benchmark's protocols at the real benchmarks' sizes, the IJB-like template list, the
rule for reportable FARs, and ``FaceBenchmark.describe``."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from fkdlib.data.formats.verification_bin import save_verification_bin
from fkdlib.data.synthface.protocols import PairProtocol, ijb_template_pairs, lfw_pairs
from fkdlib.errors import ConfigError
from fkdlib.evaluation import benchmark as B
from fkdlib.evaluation.benchmark import (
    FARS, MIN_NEGATIVES_ABOVE, REAL_PAIRS, FaceBenchmark, VerificationSet, evaluate,
    face_benchmark, protocol_pairs_per_fold, reportable_fars)
from fkdlib.profiles import get_profile


@pytest.fixture(scope="module")
def default_bench():
    # Metadata and pair lists only (no pixels): about 2 s.
    return face_benchmark("default", seed=0)


# ----------------------------------------------------------------------------- sizes


def test_real_sizes_and_the_scale_rule():
    assert REAL_PAIRS == {"lfw": 6000, "cfp_fp": 7000, "agedb": 6000, "calfw": 6000,
                          "cplfw": 6000}
    default = get_profile("default")
    assert (default.protocol_scale, get_profile("paper").protocol_scale) == (1.0, 1.0)
    assert [protocol_pairs_per_fold(k, default) for k in ("lfw", "cfp_fp", "agedb")] == [
        600, 700, 600]
    smoke = get_profile("smoke")
    assert smoke.protocol_scale == 0.02
    assert [protocol_pairs_per_fold(k, smoke) for k in REAL_PAIRS] == [12, 14, 12, 12, 12]
    # 1% of 300 / 350 positives per fold, rounded down: 3 each.
    one_percent = get_profile("smoke", protocol_scale=0.01)
    assert [protocol_pairs_per_fold(k, one_percent) for k in REAL_PAIRS] == [6] * 5
    tiny = get_profile("smoke", protocol_scale=1e-6)
    assert [protocol_pairs_per_fold(k, tiny) for k in REAL_PAIRS] == [2] * 5
    assert protocol_pairs_per_fold("cfp_fp", get_profile("default", protocol_scale=0.1)) == 70
    five = get_profile("default", verification_folds=5)
    assert protocol_pairs_per_fold("lfw", five) == 1200
    with pytest.raises(ConfigError, match="protocol_scale"):
        protocol_pairs_per_fold("lfw", get_profile("default", protocol_scale=0))
    with pytest.raises(ConfigError, match="no real size"):
        protocol_pairs_per_fold("ijb", default)


@pytest.mark.parametrize("key, half", [("lfw", 300), ("cfp_fp", 350), ("agedb", 300)])
def test_default_profile_has_the_real_benchmark_sizes(default_bench, key, half):
    protocol = default_bench.verification[key].protocol
    assert protocol.num_pairs == REAL_PAIRS[key] == 10 * 2 * half
    # Ten contiguous folds of exactly `half` positives then `half` negatives.
    np.testing.assert_array_equal(protocol.fold, np.repeat(np.arange(10), 2 * half))
    np.testing.assert_array_equal(protocol.issame, np.tile(np.repeat([True, False], half), 10))
    labels = default_bench.test_metadata["identity"].to_numpy()
    np.testing.assert_array_equal(protocol.issame,
                                  labels[protocol.first] == labels[protocol.second])
    # Identity-disjoint folds.
    fold_of_pair_side = np.repeat(protocol.fold, 2)
    frame = pd.DataFrame({"identity": labels[protocol.rows], "fold": fold_of_pair_side})
    assert (frame.groupby("identity")["fold"].nunique() == 1).all()
    assert len(set(zip(protocol.first, protocol.second))) == protocol.num_pairs


def test_default_test_split_and_ijb_template_list(default_bench):
    profile = default_bench.profile
    meta = default_bench.test_metadata
    assert profile.test_identities == 1000 and meta["identity"].nunique() == 1000
    assert len(meta) == 1000 * profile.test_images_per_identity
    protocol = default_bench.verification["ijb"].protocol
    templates = protocol.templates
    assert templates.num_templates == 2000
    np.testing.assert_array_equal(np.sort(templates.rows), np.arange(len(meta)))
    assert set(templates.sizes.tolist()) <= {4, 5}
    assert protocol.num_positive == 1000 and protocol.num_negative == B.IJB_MAX_NEGATIVES
    # TAR@1e-3 is reportable: >= 100 negatives above its threshold.
    assert 1e-3 * protocol.num_negative >= MIN_NEGATIVES_ABOVE
    labels = meta["identity"].to_numpy()
    image_identity = labels[templates.rows]
    np.testing.assert_array_equal(image_identity,
                                  np.repeat(templates.identity, templates.sizes))


# ----------------------------------------------------------------------------- FAR rule


def test_reportable_fars_follow_the_rule():
    for n in (0, 99, 100, 999, 1000, 3000, 99_999, 100_000, 200_000, 10**6, 10**8):
        expected = tuple(f for f in FARS if f * n >= 100 - 1e-6)
        assert reportable_fars(n) == expected, n
    assert reportable_fars(1000) == (1e-1,)
    assert reportable_fars(200_000) == (1e-1, 1e-2, 1e-3)
    assert reportable_fars(10**6) == (1e-1, 1e-2, 1e-3, 1e-4)
    assert reportable_fars(99) == ()
    assert reportable_fars(10**4, fars=(1e-3, 1e-2)) == (1e-2,)
    with pytest.raises(ConfigError, match="num_negatives"):
        reportable_fars(-1)


# ----------------------------------------------------------------------------- describe


def test_describe_counts_match_independent_counts(default_bench):
    frame = default_bench.describe().set_index("key")
    assert {"protocol", "pairs", "positives", "negatives", "identities", "templates",
            "lowest reportable FAR"} <= set(frame.columns)
    assert list(frame.index) == ["lfw", "cfp_fp", "agedb", "ijb"]
    labels = default_bench.test_metadata["identity"].to_numpy()
    for key, vset in default_bench.verification.items():
        protocol = vset.protocol
        row = frame.loc[key]
        issame = protocol.issame
        assert row["pairs"] == issame.size
        assert row["positives"] == int(np.count_nonzero(issame))
        assert row["negatives"] == issame.size - int(np.count_nonzero(issame))
        if protocol.templates is None:
            people = set(labels[protocol.rows].tolist())
            assert pd.isna(row["templates"])
        else:
            people = set(protocol.templates.identity[protocol.rows].tolist())
            assert row["templates"] == protocol.templates.num_templates
        assert row["identities"] == len(people)
        negatives = int(row["negatives"])
        lowest = min((f for f in FARS if f * negatives >= 100), default=math.nan)
        assert row["lowest reportable FAR"] == pytest.approx(lowest, nan_ok=True)
    assert frame.loc["ijb", "protocol"] == "IJB-like"
    assert frame.loc["lfw", "lowest reportable FAR"] == pytest.approx(0.1)
    assert frame.loc["ijb", "lowest reportable FAR"] == pytest.approx(1e-3)


# ----------------------------------------------------------------------------- evaluate


class MeanPool(nn.Module):
    """A fixed random projection of the image: deterministic, asymmetric under flipping."""

    def __init__(self, size: int, dim: int = 6):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(3 * size * size, dim)

    def forward(self, x):
        return self.proj(x.flatten(1))


def tiny_bench(num_identities=12, per_identity=5, max_negatives=None):
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"identity": np.repeat(np.arange(num_identities), per_identity)})
    images = torch.from_numpy(rng.uniform(-1, 1, size=(len(meta), 3, 4, 4)).astype(np.float32))
    profile = get_profile("smoke", verification_folds=2)
    verification = {
        "lfw": VerificationSet("lfw", "test", lfw_pairs(meta, folds=2, pairs_per_fold=8)),
        "ijb": VerificationSet("ijb", "test", ijb_template_pairs(
            meta, templates_per_identity=2, max_negatives=max_negatives, seed=2)),
    }
    return FaceBenchmark(profile, 0, {}, {"test": images}, verification, None, meta)


def test_evaluate_scores_templates_on_pooled_embeddings():
    bench = tiny_bench()
    ev = evaluate(MeanPool(4), bench, name="m")
    protocol = bench.verification["ijb"].protocol
    images = ev.embeddings["test"]
    templates = protocol.templates
    expected = []
    for a, b in zip(protocol.first, protocol.second):
        feats = []
        for t in (a, b):
            rows = templates.rows[templates.offsets[t]:templates.offsets[t + 1]]
            unit = images[rows] / np.linalg.norm(images[rows], axis=1, keepdims=True)
            mean = unit.mean(axis=0)
            feats.append(mean / np.linalg.norm(mean))
        expected.append(float(feats[0] @ feats[1]))
    np.testing.assert_allclose(ev.scores["ijb"], np.clip(expected, -1, 1), atol=1e-9)
    np.testing.assert_array_equal(ev.issame["ijb"], protocol.issame)
    # The folded list's own TAR@FAR holds only reportable FARs (8 negatives: none).
    assert ev.verification["lfw"].tar_at_far == {}
    # Image pairs are still scored on the images.
    lfw = bench.verification["lfw"].protocol
    np.testing.assert_allclose(
        ev.scores["lfw"], np.einsum("ij,ij->i", images[lfw.first], images[lfw.second]),
        atol=1e-9)


def test_evaluate_reports_tar_only_at_reportable_fars():
    # 12 identities, 24 templates: C(24, 2) - 12 = 264 negatives, and 0.1 * 264 < 100, so no
    # FAR is reportable; 30 identities, 60 templates: 1740 negatives, FAR 0.1 only (174).
    small = evaluate(MeanPool(4), tiny_bench(), name="m")
    assert set(small.tar["ijb"]) == set(FARS)
    assert all(math.isnan(v) for v in small.tar["ijb"].values())
    assert not any(key.startswith("IJB-like TAR") for key in small.summary())
    bench = tiny_bench(num_identities=30, per_identity=4)
    ev = evaluate(MeanPool(4), bench, name="m")
    negatives = bench.verification["ijb"].protocol.num_negative
    assert negatives == 60 * 59 // 2 - 30
    assert reportable_fars(negatives) == (0.1,)
    from fkdlib.evaluation.similarity import tar_at_far
    assert ev.tar["ijb"][0.1] == pytest.approx(
        tar_at_far(ev.scores["ijb"], ev.issame["ijb"], far=0.1))
    assert all(math.isnan(ev.tar["ijb"][far]) for far in FARS if far != 0.1)
    # summary shows only reportable FARs among 1e-4, 1e-3, 1e-2: none here.
    assert [k for k in ev.summary() if k.startswith("IJB")] == []


def test_summary_columns_are_the_reportable_fars():
    scores = {"ijb": np.linspace(-1, 1, 200_100)}
    issame = {"ijb": np.r_[np.zeros(200_000, bool), np.ones(100, bool)]}
    tar = {"ijb": B.tar_at_reportable_fars(scores["ijb"], issame["ijb"])}
    ev = B.Evaluation("m", {}, scores, issame, tar, {})
    assert list(ev.summary()) == ["IJB-like TAR@0.001", "IJB-like TAR@0.01"]
    assert ev.summary()["IJB-like TAR@0.001"] == 1.0
    assert math.isnan(ev.tar["ijb"][1e-4])


# ----------------------------------------------------------------------------- real data


def test_real_benchmark_reads_bins_at_the_profile_scale(tmp_path):
    rng = np.random.default_rng(0)
    # A fake lfw.bin with 10 folds of 4 positive and 4 negative pairs (80 pairs, 160 images).
    issame = np.tile(np.repeat([True, False], 4), 10)
    images = torch.from_numpy(rng.integers(0, 256, size=(160, 3, 8, 8), dtype=np.uint8))
    save_verification_bin(tmp_path / "lfw.bin", images, issame)
    (tmp_path / "train.rec").write_bytes(b"")
    full = face_benchmark(get_profile("smoke", resolution=16, protocol_scale=1.0), 0,
                          f"rec:{tmp_path}")
    assert list(full.verification) == ["lfw"]
    protocol = full.verification["lfw"].protocol
    assert protocol.num_pairs == 80 and full.pools["lfw"].shape == (160, 3, 16, 16)
    frame = full.describe()
    assert frame.loc[0, "pairs"] == 80 and pd.isna(frame.loc[0, "identities"])
    # 1% of LFW's 300 positives per fold rounds down to 3: 3 + 3 pairs of each fold.
    scaled = face_benchmark(get_profile("smoke", resolution=16, protocol_scale=0.01), 0,
                            f"rec:{tmp_path}")
    protocol = scaled.verification["lfw"].protocol
    assert protocol.num_pairs == 60 and scaled.pools["lfw"].shape == (120, 3, 16, 16)
    np.testing.assert_array_equal(protocol.issame, np.tile(np.repeat([True, False], 3), 10))
    np.testing.assert_array_equal(protocol.fold, np.repeat(np.arange(10), 6))
    # The kept pairs are the first three of each class in each fold, images in pair order.
    kept = np.flatnonzero(np.tile(np.r_[np.ones(3), 0, np.ones(3), 0].astype(bool), 10))
    rows = np.stack([2 * kept, 2 * kept + 1], axis=1).reshape(-1)
    np.testing.assert_array_equal(scaled.pools["lfw"].numpy(), full.pools["lfw"].numpy()[rows])
    assert isinstance(protocol, PairProtocol)


def test_smoke_profile_lists_are_small_but_complete():
    bench = face_benchmark("smoke", seed=0)
    frame = bench.describe().set_index("key")
    assert frame.loc[["lfw", "cfp_fp", "agedb"], "pairs"].tolist() == [120, 140, 120]
    for key in ("lfw", "cfp_fp", "agedb"):
        protocol = bench.verification[key].protocol
        per_fold = np.bincount(protocol.fold[protocol.issame], minlength=10)
        assert (per_fold >= 1).all() and (per_fold == per_fold[0]).all()
    ijb = bench.verification["ijb"].protocol
    assert (ijb.num_templates, ijb.num_positive, ijb.num_negative) == (60, 30, 1740)
    assert frame.loc["ijb", "lowest reportable FAR"] == pytest.approx(0.1)


def test_unaligned_benchmark_crops_every_pool_the_same_way_and_keys_the_aligned_one_as_before():
    aligned = face_benchmark("smoke", seed=0)
    assert "aligned" not in aligned.train_data  # the zoo keys of notebooks 01-04 stay put
    unaligned = face_benchmark("smoke", seed=0, aligned=False)
    assert unaligned.train_data == {**aligned.train_data, "aligned": False}
    assert not unaligned.pools["test"].aligned and not unaligned.pools["distractors"].aligned
    # the same faces and pairs, framed differently
    pd.testing.assert_frame_equal(unaligned.test_metadata, aligned.test_metadata)
    np.testing.assert_array_equal(unaligned.verification["lfw"].protocol.rows,
                                  aligned.verification["lfw"].protocol.rows)
    assert not np.array_equal(unaligned.pools["test"].images_u8(),
                              aligned.pools["test"].images_u8())


def test_evaluate_records_the_pairs_identities_and_runs_average_over_seeds():
    bench = tiny_bench(num_identities=30, per_identity=4)
    ev = evaluate(MeanPool(4), bench, name="m")
    for key, vset in bench.verification.items():
        first, second = ev.identities[key]
        protocol = vset.protocol
        np.testing.assert_array_equal(first, protocol.labels[0::2])
        np.testing.assert_array_equal(second, protocol.labels[1::2])
        np.testing.assert_array_equal(first == second, protocol.issame)

    class Trained:
        def __init__(self, scale):
            self.backbone = MeanPool(4)
            self.scale = scale

    runs = B.evaluate_seeds({"m": [Trained(1), Trained(2)]}, bench)
    assert len(runs["m"]) == 2 and B.first_seed(runs)["m"] is runs["m"][0]
    table = B.summary_table(runs)
    rows = [r.summary() for r in runs["m"]]
    for column in rows[0]:
        assert table.loc["m", column] == pytest.approx(np.mean([r[column] for r in rows]))
    assert table.loc["m", "seeds"] == 2
    single = B.summary_table({"m": runs["m"][0]})
    assert "seeds" not in single.columns
