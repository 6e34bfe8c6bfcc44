"""Similarity statistics, weighted (bootstrap) metrics and the paired / seed bootstraps."""

import functools
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics.pairwise import cosine_similarity

from fkdlib.errors import ConfigError, DataFormatError
from fkdlib.evaluation import similarity as S
from fkdlib.evaluation.similarity import (
    best_threshold_accuracy,
    d_prime,
    mean_negative_similarity,
    mean_positive_similarity,
    pair_similarities,
    paired_bootstrap,
    roc_auc,
    seed_bootstrap,
    similarity_stats,
    tar_at_far,
)


def scored_pairs(n=300, seed=0, rounding=None):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    scores = np.where(labels, rng.normal(0.5, 0.25, n), rng.normal(0.0, 0.25, n))
    return (np.round(scores, rounding) if rounding else scores), labels


def test_pair_similarities_are_row_wise_cosines():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 6))
    issame = rng.random(20) < 0.5
    positive, negative = pair_similarities(emb, issame)
    cosine = np.array([cosine_similarity(emb[2 * k : 2 * k + 1], emb[2 * k + 1 : 2 * k + 2])[0, 0]
                       for k in range(20)])
    np.testing.assert_allclose(positive, cosine[issame])
    np.testing.assert_allclose(negative, cosine[~issame])
    with pytest.raises(DataFormatError, match="all zero"):
        pair_similarities(np.zeros((4, 3)), [True, False])


def test_similarity_stats_values():
    positive = np.array([0.9, 0.7, 0.8, 0.6])
    negative = np.array([0.1, -0.1, 0.0, 0.2, 0.3])
    stats = similarity_stats(positive, negative)
    assert stats["mean_positive"] == pytest.approx(0.75)
    assert stats["std_positive"] == pytest.approx(np.sqrt(0.0125))
    assert stats["mean_negative"] == pytest.approx(0.1)
    assert stats["std_negative"] == pytest.approx(np.sqrt(0.02))
    assert stats["gap"] == pytest.approx(0.65)
    assert stats["d_prime"] == pytest.approx(0.65 / np.sqrt((0.0125 + 0.02) / 2))
    assert stats["overlap"] == 0.0
    assert (stats["num_positive"], stats["num_negative"]) == (4, 5)


def test_overlap_coefficient_on_the_common_histogram():
    # 100 bins of width 0.02 on [-1, 1]. Bin centres 0.01 .. 0.39 versus 0.21 .. 0.59: half
    # of each sample's 20 equally filled bins are shared.
    centres = -1 + 0.02 * np.arange(100) + 0.01
    positive = np.repeat(centres[50:70], 3)
    negative = np.repeat(centres[60:80], 5)
    assert similarity_stats(positive, negative)["overlap"] == pytest.approx(0.5)
    assert similarity_stats(positive, positive.copy())["overlap"] == pytest.approx(1.0)
    # A cosine rounded a hair past 1 stays in the last bin instead of being dropped.
    assert similarity_stats([1.0 + 1e-9], [1.0])["overlap"] == pytest.approx(1.0)
    with pytest.raises(DataFormatError, match="outside value_range"):
        similarity_stats([1.5], [0.0])
    with pytest.raises(DataFormatError, match="positive sample is empty"):
        similarity_stats([], [0.0])


def expand(scores, labels, counts):
    """The resample a row of counts stands for, as an explicit array."""
    return np.repeat(scores, counts), np.repeat(labels, counts)


def brute_force_accuracy(scores, labels):
    thresholds = np.concatenate([[-np.inf], np.unique(scores)])
    return max(np.mean((scores > t) == labels) for t in thresholds)


def brute_force_tar(scores, labels, far):
    negatives, positives = scores[~labels], scores[labels]
    if far * negatives.size < 1:
        return math.nan
    return max(np.mean(positives > t) for t in np.concatenate([[-np.inf], np.unique(scores)])
               if np.mean(negatives > t) <= far)


def population_d_prime(scores, labels):
    p, n = scores[labels], scores[~labels]
    return abs(p.mean() - n.mean()) / np.sqrt((p.var() + n.var()) / 2)


@pytest.mark.parametrize("rounding", [None, 1])
def test_weighted_metrics_equal_the_metrics_of_the_expanded_resample(rounding):
    scores, labels = scored_pairs(n=120, seed=1, rounding=rounding)
    rng = np.random.default_rng(2)
    counts = np.stack([np.bincount(rng.integers(0, 120, 120), minlength=120) for _ in range(6)])
    references = {
        roc_auc: lambda s, y: roc_auc_score(y, s),
        best_threshold_accuracy: brute_force_accuracy,
        functools.partial(tar_at_far, far=0.05): lambda s, y: brute_force_tar(s, y, 0.05),
        mean_positive_similarity: lambda s, y: s[y].mean(),
        mean_negative_similarity: lambda s, y: s[~y].mean(),
        d_prime: population_d_prime,
    }
    for metric, reference in references.items():
        values = metric(scores, labels, counts)
        assert values.shape == (6,)
        expected = [reference(*expand(scores, labels, row)) for row in counts]
        np.testing.assert_allclose(values, expected, rtol=1e-10, atol=1e-12)
        assert metric(scores, labels) == pytest.approx(reference(scores, labels))


def test_auc_with_sample_weights_matches_scikit_learn():
    scores, labels = scored_pairs(n=80, seed=3, rounding=1)
    weights = np.random.default_rng(4).integers(0, 4, size=(1, 80))
    assert roc_auc(scores, labels, weights)[0] == pytest.approx(
        roc_auc_score(labels, scores, sample_weight=weights[0])
    )


def test_metric_edge_cases():
    labels = np.array([True, True, False, False])
    separated = np.array([0.9, 0.8, 0.1, 0.2])
    assert best_threshold_accuracy(separated, labels) == 1.0
    assert roc_auc(separated, labels) == 1.0
    assert d_prime(np.array([1.0, 1.0, 0.0, 0.0]), labels) == math.inf
    # Two negatives measure FAR 0.5 but not 0.4.
    assert tar_at_far(separated, labels, far=0.5) == 1.0
    assert math.isnan(tar_at_far(separated, labels, far=0.4))
    # All scores tied: no threshold separates anything.
    tied = np.full(4, 0.3)
    assert best_threshold_accuracy(tied, labels) == 0.5 and roc_auc(tied, labels) == 0.5
    with pytest.raises(ConfigError, match="far must be in"):
        tar_at_far(separated, labels, far=1.0)
    with pytest.raises(DataFormatError, match="weights must be"):
        roc_auc(separated, labels, np.ones((2, 3)))


def test_identical_methods_have_zero_effect():
    scores, labels = scored_pairs(n=500, seed=5)
    result = paired_bootstrap(roc_auc, scores, scores.copy(), labels, n_boot=200)
    assert result.effect == 0.0 and result.ci_low == 0.0 and result.ci_high == 0.0
    assert result.p_value == 1.0 and not result.excludes_zero
    assert (result.n_boot, result.n_valid, result.ci) == (200, 200, 0.95)


def test_a_shifted_method_is_detected():
    scores, labels = scored_pairs(n=500, seed=6)
    better = np.where(labels, scores + 0.15, scores)
    result = paired_bootstrap(mean_positive_similarity, better, scores, labels, n_boot=300)
    assert result.effect == pytest.approx(0.15)
    # Every resample shifts its positives by exactly 0.15.
    assert result.ci_low == pytest.approx(0.15) and result.ci_high == pytest.approx(0.15)
    auc = paired_bootstrap(roc_auc, better, scores, labels, n_boot=300)
    assert auc.effect > 0 and auc.ci_low > 0 and auc.excludes_zero and auc.p_value == 0.0
    reverse = paired_bootstrap(roc_auc, scores, better, labels, n_boot=300)
    assert reverse.effect == pytest.approx(-auc.effect) and reverse.ci_high < 0


def test_paired_bootstrap_equals_a_loop_over_explicit_resamples():
    """Re-do the documented resampling (pairs numbered in A's score order, one block of
    draws) with scikit-learn's AUC on each explicit resample."""
    scores_a, labels = scored_pairs(n=60, seed=7)
    scores_b = scores_a + np.random.default_rng(8).normal(0, 0.2, 60)
    result = paired_bootstrap(roc_auc, scores_a, scores_b, labels, n_boot=50, seed=11, ci=0.9)
    order = np.argsort(scores_a, kind="stable")
    a, b, y = scores_a[order], scores_b[order], labels[order]
    draws = np.random.default_rng(11).integers(0, 60, size=(50, 60))
    differences = np.array([roc_auc_score(y[d], a[d]) - roc_auc_score(y[d], b[d])
                            for d in draws])
    effect = roc_auc_score(labels, scores_a) - roc_auc_score(labels, scores_b)
    assert result.effect == pytest.approx(effect)
    assert result.ci_low == pytest.approx(np.quantile(differences, 0.05))
    assert result.ci_high == pytest.approx(np.quantile(differences, 0.95))
    other_side = np.mean(differences <= 0) if effect > 0 else np.mean(differences >= 0)
    assert result.p_value == pytest.approx(min(1.0, 2 * other_side))
    again = paired_bootstrap(roc_auc, scores_a, scores_b, labels, n_boot=50, seed=11, ci=0.9)
    assert again == result


def test_undefined_resamples_are_counted_out():
    # 20 negatives measure FAR 0.05 only when a resample keeps all 20 (k = floor(0.05 N)).
    scores, labels = scored_pairs(n=50, seed=9)
    labels[:] = False
    labels[:30] = True
    result = paired_bootstrap(functools.partial(tar_at_far, far=0.05), scores, scores + 0.01,
                              labels, n_boot=100)
    assert 0 < result.n_valid < 100


def long_pair_list(seed=0, positives=600, negatives=30_000, rounding=3):
    """An all-pairs-like list: few positives, many negatives, B a noisy copy of A (ties from
    the rounding exercise the tie rule)."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(positives, bool), np.zeros(negatives, bool)]
    a = np.where(labels, rng.normal(0.5, 0.2, labels.size), rng.normal(0.0, 0.2, labels.size))
    b = a + rng.normal(0.0, 0.08, labels.size)
    return np.round(a, rounding), np.round(b, rounding), labels


def test_tar_tail_resamples_equal_tar_on_the_completed_resample():
    # Each hierarchically drawn resample, completed pair by pair, scores exactly as
    # tar_at_far on its full counts.
    a, b, labels = long_pair_list()
    far = 1e-2
    tail = S._tar_tail(a, b, labels, far)
    assert tail is not None and tail.pairs.size < (~labels).sum() / 10
    rng = np.random.default_rng(3)
    positives = np.flatnonzero(labels)
    pooled = np.setdiff1d(np.flatnonzero(~labels), tail.pairs)
    n = labels.size
    full = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(40)])
    allowed = np.floor(far * full[:, ~labels].sum(axis=1) + 1e-9)
    for scores, own in ((a, tail.own_a), (b, tail.own_b)):
        value, unresolved = S._tail_tar(scores, positives, tail.pairs, own, full[:, positives],
                                        full[:, tail.pairs], allowed)
        assert not unresolved.any()
        np.testing.assert_array_equal(value, tar_at_far(scores, labels, full, far=far))
    # Every negative outside a method's own tail scores strictly below all of that tail.
    outside_a = np.setdiff1d(np.flatnonzero(~labels), tail.pairs[tail.own_a])
    assert a[outside_a].max() < a[tail.pairs[tail.own_a]].min()
    assert pooled.size + tail.pairs.size == (~labels).sum()


@pytest.mark.parametrize("tiny_tail", [False, True])
def test_tar_tail_bootstrap_matches_the_plain_bootstrap(tiny_tail, monkeypatch):
    a, b, labels = long_pair_list(seed=5, positives=300, negatives=12_000)
    fast_metric = functools.partial(tar_at_far, far=1e-2)
    if tiny_tail:
        # Tails of a few pairs: nearly every resample is completed pair by pair.
        monkeypatch.setattr(S, "TAIL_FACTOR", 0)
        monkeypatch.setattr(S, "TAIL_EXTRA", 3)
    plain_metric = lambda s, y, w=None: tar_at_far(s, y, w, far=1e-2)  # noqa: E731
    fast = paired_bootstrap(fast_metric, a, b, labels, n_boot=2000, seed=1)
    plain = paired_bootstrap(plain_metric, a, b, labels, n_boot=2000, seed=2)
    assert fast.effect == plain.effect
    assert fast.n_valid == plain.n_valid == 2000
    width = plain.ci_high - plain.ci_low
    assert width > 0
    assert abs(fast.ci_low - plain.ci_low) < 0.15 * width
    assert abs(fast.ci_high - plain.ci_high) < 0.15 * width


def test_tar_tail_is_skipped_when_negatives_are_few():
    scores, labels = scored_pairs(n=300)
    assert S._tar_tail(scores, scores + 0.01, labels, 1e-2) is None


def test_seed_bootstrap_paired_and_unpaired():
    a, b = [0.80, 0.82, 0.81], [0.70, 0.71, 0.73]
    result = seed_bootstrap(a, b, n_boot=500, seed=1)
    differences = (np.array(a) - np.array(b))[
        np.random.default_rng(1).integers(0, 3, size=(500, 3))].mean(axis=1)
    assert result.effect == pytest.approx(np.mean(a) - np.mean(b))
    assert result.ci_low == pytest.approx(np.quantile(differences, 0.025))
    assert result.ci_high == pytest.approx(np.quantile(differences, 0.975))
    assert result.p_value == 0.0 and result.excludes_zero
    same = seed_bootstrap(a, a, n_boot=100)
    assert same.effect == 0.0 and same.p_value == 1.0
    unpaired = seed_bootstrap(a, b + [0.72], paired=False, n_boot=100)
    assert unpaired.effect == pytest.approx(np.mean(a) - np.mean(b + [0.72]))
    with pytest.raises(ConfigError, match="same seeds"):
        seed_bootstrap(a, b + [0.72])
    with pytest.raises(ConfigError, match="at least 2 seeds"):
        seed_bootstrap([0.8], [0.7])
    assert result.to_dict()["effect"] == result.effect
