"""Hierarchical bootstrap over test identities and training seeds, and the minimum detectable
effect: hand-checked weights, exact equivalences, and the false-positive rate on simulated
clustered data where the null holds."""

import functools
import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fkdlib.errors import ConfigError, DataFormatError
from fkdlib.evaluation.similarity import (
    BootstrapResult, best_threshold_accuracy, mean_positive_similarity, paired_bootstrap,
    roc_auc, seed_bootstrap, tar_at_far)
from fkdlib.evaluation.uncertainty import (
    hierarchical_bootstrap, identity_weights, minimum_detectable_effect)


def identity_pairs(rng, identities=40, pairs=400, positive_fraction=0.3):
    """Pairs among ``identities`` identities: ``(first, second, issame)``."""
    first = rng.integers(0, identities, pairs)
    second = first.copy()
    negative = rng.random(pairs) >= positive_fraction
    second[negative] = (first[negative] + rng.integers(1, identities, negative.sum())) % identities
    return first, second, first == second


def pair_scores(rng, issame, shift=0.0):
    return np.where(issame, 0.6, 0.1) + shift + rng.normal(0, 0.2, issame.size)


# ----------------------------------------------------------------------------- weights


def test_identity_weights_count_positives_once_and_negatives_by_both_identities():
    counts = np.array([[2, 0, 1],
                       [1, 3, 2]])
    # (0, 0) positive, (0, 1) negative, (1, 2) negative, (2, 2) positive
    first, second = np.array([0, 0, 1, 2]), np.array([0, 1, 2, 2])
    weights = identity_weights(counts, first, second)
    np.testing.assert_array_equal(weights, [[2, 0, 0, 1],
                                            [1, 3, 6, 2]])
    assert weights.dtype == np.int32
    np.testing.assert_array_equal(identity_weights(counts, np.array([2, 0, 0])),
                                  [[1, 2, 2],
                                   [2, 1, 1]])


def test_identity_weights_widen_when_a_row_total_could_overflow_int32():
    counts = np.array([[50_000, 50_000]])
    weights = identity_weights(counts, np.array([0]), np.array([1]))
    assert weights.dtype == np.int64 and weights[0, 0] == 2_500_000_000


def test_identity_weights_reject_bad_indices_and_counts():
    counts = np.ones((2, 3), dtype=int)
    with pytest.raises(DataFormatError, match="outside 0 .. 2"):
        identity_weights(counts, np.array([0, 3]))
    with pytest.raises(DataFormatError, match="same length"):
        identity_weights(counts, np.array([0, 1]), np.array([1]))
    with pytest.raises(DataFormatError, match="integers"):
        identity_weights(counts.astype(float), np.array([0]))
    with pytest.raises(DataFormatError, match="non-negative"):
        identity_weights(-counts, np.array([0]))


# ----------------------------------------------------------------------------- bootstrap


def test_effect_is_the_difference_of_the_means_over_seeds():
    rng = np.random.default_rng(0)
    first, second, issame = identity_pairs(rng)
    runs_a = [pair_scores(rng, issame, 0.05) for _ in range(3)]
    runs_b = [pair_scores(rng, issame) for _ in range(2)]
    result = hierarchical_bootstrap(best_threshold_accuracy, runs_a, runs_b, issame,
                                    (first, second), n_boot=200)
    expected = (np.mean([best_threshold_accuracy(a, issame) for a in runs_a])
                - np.mean([best_threshold_accuracy(b, issame) for b in runs_b]))
    assert result.effect == pytest.approx(expected, abs=1e-12)
    assert result.n_boot == result.n_valid == 200
    assert result.ci_low < result.effect < result.ci_high
    assert result.se > 0


def test_single_item_identities_reproduce_the_pair_bootstrap_exactly():
    # With one seed and one item per identity, drawing n identities is drawing n items. With
    # A's scores already ascending both functions spend the generator on the same counts in
    # the same order, so the resamples (not just their law) coincide.
    rng = np.random.default_rng(1)
    labels = rng.random(500) < 0.4
    a = pair_scores(rng, labels)
    order = np.argsort(a)
    a, labels = a[order], labels[order]
    b = pair_scores(rng, labels)
    pairs = paired_bootstrap(roc_auc, a, b, labels, n_boot=500, seed=3)
    identities = hierarchical_bootstrap(roc_auc, a, b, labels, np.arange(500), n_boot=500,
                                        seed=3)
    for field in ("effect", "ci_low", "ci_high", "se"):
        assert getattr(identities, field) == pytest.approx(getattr(pairs, field), abs=1e-12)
    assert identities.p_value == pairs.p_value


def test_single_item_identities_match_the_pair_bootstrap_in_distribution():
    rng = np.random.default_rng(2)
    labels = np.ones(800, bool)
    a, b = rng.normal(0.5, 0.1, 800), rng.normal(0.5, 0.1, 800)
    pairs = paired_bootstrap(mean_positive_similarity, a, b, labels, n_boot=4000, seed=1)
    identities = hierarchical_bootstrap(mean_positive_similarity, a, b, labels,
                                        [f"person {i}" for i in range(800)], n_boot=4000, seed=2)
    # Monte-Carlo error of a standard deviation from 4000 draws is about 1.1%.
    assert identities.se == pytest.approx(pairs.se, rel=0.05)
    assert identities.ci_low == pytest.approx(pairs.ci_low, abs=0.1 * pairs.se)
    assert identities.ci_high == pytest.approx(pairs.ci_high, abs=0.1 * pairs.se)


def test_a_model_compared_with_itself_gives_zero_only_when_seeds_are_paired():
    rng = np.random.default_rng(3)
    first, second, issame = identity_pairs(rng)
    runs = [pair_scores(rng, issame, shift) for shift in (0.0, 0.1, 0.2)]
    metric = functools.partial(tar_at_far, far=0.01)
    same = hierarchical_bootstrap(metric, runs, runs, issame, (first, second), n_boot=300)
    assert (same.effect, same.ci_low, same.ci_high, same.se) == (0.0, 0.0, 0.0, 0.0)
    assert same.p_value == 1.0 and not same.excludes_zero
    # Drawn separately, the two copies pick different runs: seed variance shows.
    unpaired = hierarchical_bootstrap(metric, runs, runs, issame, (first, second), n_boot=300,
                                      paired_seeds=False)
    assert unpaired.effect == 0.0 and unpaired.ci_low < 0 < unpaired.ci_high


def test_identity_labels_of_any_type_give_the_same_result_as_indices():
    rng = np.random.default_rng(4)
    first, second, issame = identity_pairs(rng)
    a, b = pair_scores(rng, issame, 0.02), pair_scores(rng, issame)
    names = np.array([f"id{k:03d}" for k in range(40)])
    by_index = hierarchical_bootstrap(roc_auc, a, b, issame, (first, second), n_boot=300)
    by_name = hierarchical_bootstrap(roc_auc, [a], [b], issame, (names[first], names[second]),
                                     n_boot=300)
    assert by_name == by_index


def test_identity_resampling_widens_the_interval_of_clustered_pairs():
    rng = np.random.default_rng(5)
    first, second, issame = identity_pairs(rng, identities=30, pairs=3000)
    # Every pair of an identity shares the identity's offset in A - B.
    a = pair_scores(rng, issame) + rng.normal(0, 0.1, 30)[first]
    b = pair_scores(rng, issame)
    pairs = paired_bootstrap(best_threshold_accuracy, a, b, issame, n_boot=500)
    identities = hierarchical_bootstrap(best_threshold_accuracy, a, b, issame,
                                        (first, second), n_boot=500)
    assert identities.effect == pytest.approx(pairs.effect, abs=1e-12)
    assert identities.se > 1.5 * pairs.se


def test_bad_inputs_are_rejected_with_clear_messages():
    rng = np.random.default_rng(6)
    first, second, issame = identity_pairs(rng, pairs=50)
    a = pair_scores(rng, issame)
    run = functools.partial(hierarchical_bootstrap, roc_auc, n_boot=10)
    with pytest.raises(DataFormatError, match=r"scores_b\[1\] must score the 50"):
        run([a], [a, a[:-1]], issame, (first, second))
    with pytest.raises(DataFormatError, match="second must give one identity per item"):
        run(a, a, issame, (first, second[:-1]))
    with pytest.raises(DataFormatError, match="identities must give one identity per item"):
        run(a, a, issame, first[:-1])
    with pytest.raises(ConfigError, match="at least 2 identities"):
        run(a, a, issame, np.zeros(50, int))
    with pytest.raises(ConfigError, match="scores_a holds no training runs"):
        run([], [a], issame, first)
    bad = a.copy()
    bad[3] = np.nan
    with pytest.raises(DataFormatError, match=r"scores_a\[0\] holds 1 NaN or inf"):
        run(bad, a, issame, first)
    with pytest.raises(ConfigError, match="n_boot"):
        hierarchical_bootstrap(roc_auc, a, a, issame, first, n_boot=0)


def test_bootstrap_standard_error_is_the_spread_of_the_differences():
    a, b = [0.80, 0.82, 0.81], [0.70, 0.71, 0.73]
    result = seed_bootstrap(a, b, n_boot=500, seed=1)
    differences = (np.array(a) - np.array(b))[
        np.random.default_rng(1).integers(0, 3, size=(500, 3))].mean(axis=1)
    assert result.se == pytest.approx(np.std(differences, ddof=1))
    # Older constructors, without se, still work and mean "unknown".
    assert math.isnan(BootstrapResult(0.1, 0.0, 0.2, 0.04, 100, 100, 0.95).se)


# ----------------------------------------------------------------------------- power


def test_minimum_detectable_effect():
    assert minimum_detectable_effect(1.0) == pytest.approx(1.959964 + 0.841621, abs=1e-6)
    assert minimum_detectable_effect(0.01) == pytest.approx(0.028016, abs=1e-6)
    assert minimum_detectable_effect(1.0, alpha=0.01, power=0.9) == pytest.approx(
        2.575829 + 1.281552, abs=1e-6)
    assert minimum_detectable_effect(0.0) == 0.0
    assert math.isnan(minimum_detectable_effect(float("nan")))
    with pytest.raises(ConfigError, match="alpha and power"):
        minimum_detectable_effect(1.0, power=1.0)
    with pytest.raises(ConfigError, match="se must be >= 0"):
        minimum_detectable_effect(-1.0)


# ----------------------------------------------------------------------------- coverage

IDENTITIES, ITEMS_PER_IDENTITY, SIMULATIONS, RESAMPLES = 60, 10, 200, 200
OWNER = np.repeat(np.arange(IDENTITIES), ITEMS_PER_IDENTITY)
POSITIVE = np.ones(OWNER.size, bool)


def clustered_runs(rng, seeds, seed_sd, identity_sd=0.05, item_sd=0.05):
    """One model's positive-pair scores: ``seeds`` runs sharing an identity-level offset per
    identity (the model's own), one offset per run, and item noise. No true difference between
    two models drawn this way."""
    identity = rng.normal(0, identity_sd, IDENTITIES)[OWNER]
    return [0.5 + identity + rng.normal(0, seed_sd) + rng.normal(0, item_sd, OWNER.size)
            for _ in range(seeds)]


def false_positive_rate(compare) -> float:
    """Fraction of null simulations whose 95% interval excludes 0."""
    # The moment metric's small matrix products crawl when a second BLAS thread waits for a
    # busy core; hierarchical_bootstrap limits itself, paired_bootstrap does not.
    with threadpool_limits(limits=1, user_api="blas"):
        return float(np.mean([compare(index) for index in range(SIMULATIONS)]))


def test_identity_bootstrap_keeps_its_false_positive_rate_on_clustered_data():
    # Model A and B each have their own per-identity offsets, so A - B carries identity-level
    # noise shared by 10 items: treating the 600 items as independent understates the
    # variance about 5.5-fold (ratio of true to item-level variance of the mean difference).
    rng = np.random.default_rng(2024)
    data = [(clustered_runs(rng, 1, 0.0)[0], clustered_runs(rng, 1, 0.0)[0])
            for _ in range(SIMULATIONS)]
    identities = false_positive_rate(lambda i: hierarchical_bootstrap(
        mean_positive_similarity, *data[i], POSITIVE, OWNER, n_boot=RESAMPLES,
        seed=i).excludes_zero)
    pairs = false_positive_rate(lambda i: paired_bootstrap(
        mean_positive_similarity, *data[i], POSITIVE, n_boot=RESAMPLES, seed=i).excludes_zero)
    assert identities <= 0.10
    assert pairs >= 0.25


def test_seed_bootstrap_keeps_its_false_positive_rate_when_runs_vary():
    # Each run adds its own offset (sd 0.01, comparable to the identity-level noise of the
    # mean difference): with one run per model nothing in the data shows that variance.
    rng = np.random.default_rng(7)
    data = [(clustered_runs(rng, 3, 0.01), clustered_runs(rng, 3, 0.01))
            for _ in range(SIMULATIONS)]
    three_seeds = false_positive_rate(lambda i: hierarchical_bootstrap(
        mean_positive_similarity, *data[i], POSITIVE, OWNER, n_boot=RESAMPLES,
        seed=i).excludes_zero)
    one_seed = false_positive_rate(lambda i: hierarchical_bootstrap(
        mean_positive_similarity, data[i][0][0], data[i][1][0], POSITIVE, OWNER,
        n_boot=RESAMPLES, seed=i).excludes_zero)
    assert three_seeds <= 0.12
    assert one_seed >= 0.20
