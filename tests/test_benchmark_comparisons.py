"""Paired comparisons of two models' scores on the same pairs of a benchmark protocol."""

from functools import partial

import numpy as np
import pytest
from conftest import pair_evaluation

from fkdlib.errors import ConfigError
from fkdlib.evaluation.comparisons import closeness_bootstrap, stratified_mean_bootstrap

_evaluation = partial(pair_evaluation, clip=False)


def test_stratified_bootstrap_within_one_class_and_subsampling():
    rng = np.random.default_rng(0)
    pos, neg = rng.uniform(0.3, 0.9, 200), rng.uniform(-0.3, 0.3, 5000)
    a = _evaluation("a", pos, neg)
    b = _evaluation("b", pos - 0.1, neg + 0.02)
    shift = stratified_mean_bootstrap(a, b, "ijb", True, n_boot=200)
    # a constant shift of every positive pair: every resample's difference is exactly 0.1
    assert (shift.effect, shift.ci_low, shift.ci_high) == pytest.approx((0.1, 0.1, 0.1))
    noisy = _evaluation("c", pos, neg + rng.normal(0, 0.05, neg.size))
    full = stratified_mean_bootstrap(noisy, a, "ijb", False, n_boot=200)
    assert full.effect == pytest.approx(np.mean(noisy.negatives("ijb") - neg))
    sample = stratified_mean_bootstrap(noisy, a, "ijb", False, n_boot=200, seed=4,
                                           max_pairs=300)
    rows = np.sort(np.random.default_rng(4).choice(np.arange(200, 5200), size=300,
                                                   replace=False))
    assert sample.effect == pytest.approx(np.mean(noisy.scores["ijb"][rows]
                                                  - a.scores["ijb"][rows]))
    assert sample.ci_high - sample.ci_low > full.ci_high - full.ci_low
    empty = _evaluation("d", np.array([]), neg)
    with pytest.raises(ConfigError, match="no positive pairs"):
        stratified_mean_bootstrap(empty, empty, "ijb", True, n_boot=10)


def test_closeness_is_the_change_in_distance_to_the_reference():
    rng = np.random.default_rng(3)
    pos, neg = rng.uniform(0.4, 0.9, 300), rng.uniform(-0.2, 0.2, 1000)
    teacher = _evaluation("T", pos, neg)
    above = _evaluation("FCD", pos + 0.1, neg)
    # ICD lowering the positives toward a teacher that sits below: closer, though not higher
    toward = closeness_bootstrap(_evaluation("ICD", pos + 0.04, neg), above, teacher, "ijb",
                                     n_boot=100)
    assert (toward.effect, toward.ci_low, toward.ci_high) == pytest.approx((-0.06,) * 3)
    # overshooting the teacher by more than the baseline missed it: farther
    past = closeness_bootstrap(_evaluation("ICD", pos - 0.15, neg), above, teacher, "ijb",
                                   n_boot=100)
    assert past.effect == pytest.approx(0.05)
    noisy = _evaluation("ICD", pos + rng.normal(0, 0.05, pos.size), neg)
    result = closeness_bootstrap(noisy, above, teacher, "ijb", n_boot=200)
    differences = noisy.positives("ijb") - pos
    assert result.effect == pytest.approx(abs(differences.mean()) - 0.1)
    assert result.ci_low <= result.effect <= result.ci_high



def _clustered(name, rng, identity_effect, people=40, per_person=10):
    """Positive pairs whose scores share an identity-level offset, their identities known."""
    person = np.repeat(np.arange(people), per_person)
    pos = 0.6 + identity_effect[person] + rng.normal(0, 0.02, person.size)
    neg_first = rng.integers(0, people, 400)
    neg_second = (neg_first + 1 + rng.integers(0, people - 1, 400)) % people
    neg = rng.normal(0.0, 0.1, 400)
    ids = (np.r_[person, neg_first], np.r_[person, neg_second])
    return _evaluation(name, pos, neg, identities=ids)


def test_compare_resamples_seeds_and_identities():
    from fkdlib.evaluation.comparisons import compare, count_identities, pair_identities

    rng = np.random.default_rng(5)
    runs_a = [_clustered("a", rng, rng.normal(0, 0.05, 40)) for _ in range(3)]
    runs_b = [_clustered("b", rng, rng.normal(0, 0.05, 40)) for _ in range(3)]
    result = compare(runs_a, runs_b, "ijb", "mean_positive", n_boot=300)
    expected = (np.mean([r.positives("ijb").mean() for r in runs_a])
                - np.mean([r.positives("ijb").mean() for r in runs_b]))
    assert result.effect == pytest.approx(expected)
    # the same scores with the identities forgotten: pairs resampled one by one
    forget = [_evaluation(r.name, r.positives("ijb"), r.negatives("ijb")) for r in runs_a[:1]]
    forget_b = [_evaluation(r.name, r.positives("ijb"), r.negatives("ijb")) for r in runs_b[:1]]
    pairwise = compare(forget, forget_b, "ijb", "mean_positive", n_boot=300)
    clustered = compare(runs_a[:1], runs_b[:1], "ijb", "mean_positive", n_boot=300)
    # identity-level offsets make the identity interval several times wider
    assert clustered.se > 2 * pairwise.se
    assert count_identities(pair_identities(runs_a[0], "ijb")) == 40
    assert count_identities(pair_identities(forget[0], "ijb")) == 800
