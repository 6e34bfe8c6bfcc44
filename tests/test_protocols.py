"""Evaluation protocols: pair lists, folds, all-pairs lists, identification splits, leaks."""

from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold

from fkdlib.data.synthface import protocols
from fkdlib.data.synthface.protocols import (
    agedb_pairs,
    cfp_fp_pairs,
    check_identity_disjoint,
    identification_split,
    ijb_pairs,
    ijb_template_pairs,
    lfw_pairs,
    split_templates,
)
from fkdlib.errors import ConfigError, DataFormatError

# Per identity: 4 frontal (|yaw| <= 15), 3 profile (|yaw| >= 60) and one in between.
YAWS = [0.0, 5.0, -10.0, 70.0, -75.0, 30.0, 90.0, 12.0]


def make_meta(num_identities: int = 40, per_identity: int = 8, seed: int = 0) -> pd.DataFrame:
    """Hand-made metadata in the SynthFace column layout, with a non-default index."""
    rng = np.random.default_rng(seed)
    identity = np.repeat(np.arange(num_identities), per_identity)
    index = np.tile(np.arange(per_identity), num_identities)
    # Ages within an identity span 0..35 years in 5-year steps, from a random start.
    start = rng.uniform(20, 40, num_identities)
    meta = pd.DataFrame({
        "identity": identity,
        "global_identity": identity + 1000,
        "index": index,
        "yaw": np.array(YAWS)[index % len(YAWS)],
        "age": np.repeat(start, per_identity) + 5.0 * index,
    })
    # Shuffle rows and give them unrelated index labels: protocols must use positions.
    meta = meta.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    meta.index = meta.index * 7 + 3
    return meta


def unordered(protocol):
    return [tuple(sorted(pair)) for pair in zip(protocol.first, protocol.second)]


def assert_valid_fold_protocol(protocol, meta, folds, pairs_per_fold):
    labels = meta["identity"].to_numpy()
    first, second = protocol.first, protocol.second
    assert protocol.rows.shape == (2 * folds * pairs_per_fold,)
    assert protocol.rows.min() >= 0 and protocol.rows.max() < len(meta)
    np.testing.assert_array_equal(protocol.labels, labels[protocol.rows])
    np.testing.assert_array_equal(protocol.issame, labels[first] == labels[second])
    assert (first != second).all()
    assert len(set(unordered(protocol))) == protocol.num_pairs, "a pair is repeated"
    # Contiguous equal folds, positives first, as LFW's pairs.txt.
    half = pairs_per_fold // 2
    np.testing.assert_array_equal(protocol.fold, np.repeat(np.arange(folds), pairs_per_fold))
    np.testing.assert_array_equal(
        protocol.issame, np.tile(np.repeat([True, False], half), folds)
    )
    # Identity-disjoint folds: an identity appears in one fold only.
    fold_of_identity = {}
    for fold, a, b in zip(protocol.fold, labels[first], labels[second]):
        for identity in (a, b):
            assert fold_of_identity.setdefault(identity, fold) == fold


def test_lfw_pairs_structure_and_identity_disjoint_folds():
    meta = make_meta()
    protocol = lfw_pairs(meta, folds=10, pairs_per_fold=20, seed=3)
    assert_valid_fold_protocol(protocol, meta, folds=10, pairs_per_fold=20)
    assert (protocol.num_positive, protocol.num_negative) == (100, 100)
    assert protocol.min_far == pytest.approx(1 / 100)


def test_kfold_without_shuffle_reproduces_the_protocol_folds():
    protocol = lfw_pairs(make_meta(), folds=10, pairs_per_fold=20)
    indices = np.arange(protocol.num_pairs)
    for fold, (_, test) in enumerate(KFold(n_splits=10, shuffle=False).split(indices)):
        np.testing.assert_array_equal(test, np.flatnonzero(protocol.fold == fold))


def test_positives_are_spread_evenly_over_a_folds_identities():
    meta = make_meta()
    protocol = lfw_pairs(meta, folds=10, pairs_per_fold=30, seed=1)
    labels = meta["identity"].to_numpy()
    for fold in range(10):
        positive = (protocol.fold == fold) & protocol.issame
        _, counts = np.unique(labels[protocol.first[positive]], return_counts=True)
        # 15 positives over 4 identities with 28 candidates each: 3 or 4 per identity.
        assert counts.sum() == 15 and counts.max() - counts.min() <= 1


def test_pairs_depend_only_on_the_seed():
    meta = make_meta()
    first = lfw_pairs(meta, pairs_per_fold=20, seed=5)
    again = lfw_pairs(meta, pairs_per_fold=20, seed=5)
    other = lfw_pairs(meta, pairs_per_fold=20, seed=6)
    np.testing.assert_array_equal(first.rows, again.rows)
    assert not np.array_equal(first.rows, other.rows)


def test_negative_sampling_does_not_depend_on_chunking(monkeypatch):
    meta = make_meta()
    reference = lfw_pairs(meta, pairs_per_fold=40, seed=2)
    monkeypatch.setattr(protocols, "_NEGATIVE_CHUNK_ROWS", 3)
    np.testing.assert_array_equal(lfw_pairs(meta, pairs_per_fold=40, seed=2).rows,
                                  reference.rows)


def test_negatives_are_uniform_over_the_admissible_pairs():
    # Three identities of 2 images in one fold: 15 - 3 = 12 negative pairs exist; drawing one
    # 480 times must hit each about 40 times (sd 6.1).
    meta = pd.DataFrame({"identity": [0, 0, 1, 1, 2, 2]})
    hits = {}
    for seed in range(480):
        protocol = lfw_pairs(meta, folds=1, pairs_per_fold=2, seed=seed)
        pair = unordered(protocol)[1]
        assert not protocol.issame[1]
        hits[pair] = hits.get(pair, 0) + 1
    assert len(hits) == 12
    assert 20 <= min(hits.values()) and max(hits.values()) <= 60


def test_infeasible_sizes_raise_with_numbers_and_a_remedy():
    meta = make_meta(num_identities=20, per_identity=3)
    with pytest.raises(ConfigError, match=r"needs 50 positive pairs.*offer only 6.*pairs_per_fold"):
        lfw_pairs(meta, folds=10, pairs_per_fold=100)
    with pytest.raises(ConfigError, match="at least 20 identities"):
        lfw_pairs(make_meta(num_identities=9), folds=10, pairs_per_fold=2)
    with pytest.raises(ConfigError, match="even integer"):
        lfw_pairs(meta, pairs_per_fold=7)


def test_missing_or_empty_columns_are_named():
    meta = make_meta()
    with pytest.raises(DataFormatError, match=r"lacks column\(s\) \['yaw'\]"):
        cfp_fp_pairs(meta.drop(columns="yaw"))
    with pytest.raises(DataFormatError, match=r"lacks column\(s\) \['age'\]"):
        agedb_pairs(meta.drop(columns="age"))
    broken = meta.copy()
    broken.loc[broken.index[4], "identity"] = np.nan
    with pytest.raises(DataFormatError, match="'identity' has 1 missing value"):
        lfw_pairs(broken)
    with pytest.raises(DataFormatError, match="DataFrame"):
        lfw_pairs(meta.to_dict())


def test_protocols_need_only_their_columns():
    meta = make_meta()[["identity"]]
    assert lfw_pairs(meta, pairs_per_fold=20).num_pairs == 200
    assert ijb_pairs(meta).num_positive == 40 * 28


def test_cfp_fp_pairs_are_frontal_then_profile():
    meta = make_meta()
    protocol = cfp_fp_pairs(meta, folds=10, pairs_per_fold=40, seed=1)
    assert_valid_fold_protocol(protocol, meta, folds=10, pairs_per_fold=40)
    yaw = np.abs(meta["yaw"].to_numpy())
    assert (yaw[protocol.first] <= 15).all() and (yaw[protocol.second] >= 60).all()


def test_cfp_fp_without_enough_profiles_says_how_many():
    meta = make_meta(per_identity=4)  # yaws 0, 5, -10, 70: one profile image per identity
    # Each identity offers 3 frontal-profile pairs; a fold of 4 identities, 12 < 20.
    with pytest.raises(ConfigError, match=r"needs 20 positive.*only 12.*40 of 160 have"):
        cfp_fp_pairs(meta, folds=10, pairs_per_fold=40)
    with pytest.raises(ConfigError, match="frontal_max_yaw < profile_min_yaw"):
        cfp_fp_pairs(meta, frontal_max_yaw=60, profile_min_yaw=30)


def test_agedb_pairs_respect_the_age_gap_for_both_classes():
    meta = make_meta()
    protocol = agedb_pairs(meta, min_age_gap=20, folds=10, pairs_per_fold=20, seed=4)
    assert_valid_fold_protocol(protocol, meta, folds=10, pairs_per_fold=20)
    age = meta["age"].to_numpy()
    assert (np.abs(age[protocol.first] - age[protocol.second]) >= 20).all()
    # Within an identity, ages differ by 5 * |i - j|: gaps >= 20 allow 10 pairs per identity.
    with pytest.raises(ConfigError, match=r"largest age gap within one identity is 35\.0"):
        agedb_pairs(meta, min_age_gap=36, pairs_per_fold=2)


def brute_force_pairs(labels):
    same, different = set(), set()
    for i, j in combinations(range(labels.size), 2):
        (same if labels[i] == labels[j] else different).add((i, j))
    return same, different


def test_ijb_pairs_lists_every_pair_once():
    meta = make_meta(num_identities=6, per_identity=5)
    labels = meta["identity"].to_numpy()
    protocol = ijb_pairs(meta, seed=2)
    same, different = brute_force_pairs(labels)
    pairs = unordered(protocol)
    assert {p for p, s in zip(pairs, protocol.issame) if s} == same
    assert {p for p, s in zip(pairs, protocol.issame) if not s} == different
    assert protocol.num_pairs == len(same) + len(different) == 30 * 29 // 2
    assert protocol.min_far == pytest.approx(1 / len(different))
    assert protocol.fold is None
    # Seeded random order: positives are not all listed first.
    assert not protocol.issame[: len(same)].all()


def test_ijb_pairs_subsamples_negatives_without_replacement():
    meta = make_meta(num_identities=30, per_identity=4)
    labels = meta["identity"].to_numpy()
    protocol = ijb_pairs(meta, max_negatives=500, seed=1)
    assert protocol.num_positive == 30 * 6 and protocol.num_negative == 500
    negatives = [p for p, s in zip(unordered(protocol), protocol.issame) if not s]
    assert len(set(negatives)) == 500
    assert all(labels[i] != labels[j] for i, j in negatives)
    np.testing.assert_array_equal(ijb_pairs(meta, max_negatives=500, seed=1).rows, protocol.rows)
    # Asking for more negatives than exist gives all of them.
    assert ijb_pairs(meta, max_negatives=10**9).num_negative == 120 * 119 // 2 - 180


def test_ijb_pairs_errors():
    with pytest.raises(ConfigError, match="0 positive"):
        ijb_pairs(pd.DataFrame({"identity": [0, 1, 2]}))
    with pytest.raises(ConfigError, match="max_negatives"):
        ijb_pairs(make_meta(), max_negatives=0)


def uneven_meta():
    """Identities with 7, 4, 1, 6 and 2 images, rows interleaved, a non-default index."""
    identity = np.repeat([3, 8, 11, 20, 21], [7, 4, 1, 6, 2])
    meta = pd.DataFrame({"identity": identity})
    meta = meta.sample(frac=1.0, random_state=5).reset_index(drop=True)
    meta.index = meta.index * 3 + 1
    return meta


def test_split_templates_partitions_every_identity():
    meta = uneven_meta()
    labels = meta["identity"].to_numpy()
    templates = split_templates(meta, templates_per_identity=2, seed=4)
    # Every image in exactly one template.
    np.testing.assert_array_equal(np.sort(templates.rows), np.arange(len(meta)))
    assert templates.offsets[0] == 0 and templates.offsets[-1] == len(meta)
    # Every template holds images of its identity only, rows ascending.
    for t in range(templates.num_templates):
        rows = templates.template_rows(t)
        assert rows.size >= 1 and (np.diff(rows) > 0).all()
        assert (labels[rows] == templates.identity[t]).all()
    # Two templates of ~half the images each (one for the single-image identity), in
    # identity order.
    assert templates.identity.tolist() == [3, 3, 8, 8, 11, 20, 20, 21, 21]
    assert templates.sizes.tolist() == [4, 3, 2, 2, 1, 3, 3, 1, 1]
    again = split_templates(meta, templates_per_identity=2, seed=4)
    np.testing.assert_array_equal(again.rows, templates.rows)
    assert not np.array_equal(split_templates(meta, 2, seed=5).rows, templates.rows)
    three = split_templates(meta, templates_per_identity=3, seed=0)
    assert three.sizes.tolist() == [3, 2, 2, 2, 1, 1, 1, 2, 2, 2, 1, 1]
    with pytest.raises(ConfigError, match="templates_per_identity"):
        split_templates(meta, templates_per_identity=0)


def test_template_pooling_is_the_renormalised_mean_of_normalised_embeddings():
    meta = uneven_meta()
    templates = split_templates(meta, templates_per_identity=2, seed=1)
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(len(meta), 5)) * rng.uniform(0.1, 10, size=(len(meta), 1))
    pooled = templates.pool(embeddings)
    assert pooled.shape == (templates.num_templates, 5)
    for t in range(templates.num_templates):
        members = [embeddings[r] / np.sqrt((embeddings[r] ** 2).sum())
                   for r in templates.template_rows(t)]
        mean = sum(members) / len(members)
        np.testing.assert_allclose(pooled[t], mean / np.sqrt((mean ** 2).sum()), atol=1e-12)
    with pytest.raises(ConfigError, match="embeddings"):
        templates.pool(embeddings[:5])


def test_ijb_template_pairs_lists_every_template_pair_once():
    meta = uneven_meta()
    protocol = ijb_template_pairs(meta, templates_per_identity=2, seed=3)
    templates = protocol.templates
    assert protocol.name == "ijb" and protocol.fold is None
    assert protocol.num_templates == templates.num_templates == 9
    # rows index templates; labels are each side's identity.
    assert protocol.rows.min() >= 0 and protocol.rows.max() < 9
    np.testing.assert_array_equal(protocol.labels, templates.identity[protocol.rows])
    np.testing.assert_array_equal(protocol.issame, protocol.labels[0::2] == protocol.labels[1::2])
    same, different = brute_force_pairs(templates.identity)
    pairs = unordered(protocol)
    assert {p for p, s in zip(pairs, protocol.issame) if s} == same
    assert {p for p, s in zip(pairs, protocol.issame) if not s} == different
    # 4 identities with two templates: 4 positives; C(9, 2) - 4 = 32 negatives.
    assert (protocol.num_positive, protocol.num_negative) == (4, 32)
    assert protocol.num_identities == 5
    np.testing.assert_array_equal(ijb_template_pairs(meta, seed=3).rows, protocol.rows)


def test_ijb_template_pairs_cap_the_negatives():
    meta = make_meta(num_identities=30, per_identity=6)[["identity"]]
    protocol = ijb_template_pairs(meta, templates_per_identity=2, max_negatives=500, seed=1)
    identity = protocol.templates.identity
    assert protocol.num_positive == 30 and protocol.num_negative == 500
    negatives = [p for p, s in zip(unordered(protocol), protocol.issame) if not s]
    assert len(set(negatives)) == 500
    assert all(identity[i] != identity[j] for i, j in negatives)
    assert (protocol.templates.sizes == 3).all()
    everything = ijb_template_pairs(meta, max_negatives=10**9)
    assert everything.num_negative == 60 * 59 // 2 - 30
    with pytest.raises(ConfigError, match="0 positive"):
        ijb_template_pairs(pd.DataFrame({"identity": [0, 1, 2]}))
    with pytest.raises(ConfigError, match="max_negatives"):
        ijb_template_pairs(meta, max_negatives=0)


def test_identification_split_enrolls_k_images_per_identity():
    meta = make_meta(num_identities=10, per_identity=5)
    distractors = make_meta(num_identities=4, per_identity=3, seed=9)
    distractors["global_identity"] += 500
    split = identification_split(meta, distractors, gallery_per_identity=2, seed=3)
    labels = meta["identity"].to_numpy()
    np.testing.assert_array_equal(split.gallery_labels, labels[split.gallery_rows])
    np.testing.assert_array_equal(split.probe_labels, labels[split.probe_rows])
    assert np.bincount(split.gallery_labels).tolist() == [2] * 10
    assert np.bincount(split.probe_labels).tolist() == [3] * 10
    all_rows = np.sort(np.concatenate([split.gallery_rows, split.probe_rows]))
    np.testing.assert_array_equal(all_rows, np.arange(len(meta)))
    np.testing.assert_array_equal(split.distractor_rows, np.arange(len(distractors)))


def test_identification_split_errors():
    meta = make_meta(num_identities=10, per_identity=2)
    with pytest.raises(ConfigError, match=r"10 of 10 identities have <= 2 image"):
        identification_split(meta, gallery_per_identity=2)
    with pytest.raises(DataFormatError, match="identity leak: 3 global_identity"):
        identification_split(meta, make_meta(num_identities=3, per_identity=2))


def test_leak_check_uses_global_identity_and_lists_overlaps():
    train, test = make_meta(num_identities=5), make_meta(num_identities=5)
    test["global_identity"] += 100  # same split-local labels 0..4, different people
    check_identity_disjoint(train, test)
    test.loc[test.index[:3], "global_identity"] = [1002, 1004, 1004]
    with pytest.raises(DataFormatError, match=r"2 global_identity value\(s\).*1002, 1004"):
        check_identity_disjoint(train, test)
    with pytest.raises(DataFormatError, match="identity leak: 5 identity"):
        check_identity_disjoint(train[["identity"]], test[["identity"]])
