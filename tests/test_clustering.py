"""k-means analysis, purity, AMI/NMI, SwAV's Sinkhorn-Knopp and centroid distances."""

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    adjusted_mutual_info_score,
    normalized_mutual_info_score,
    pairwise,
)

from fkdlib.errors import ConfigError
from fkdlib.evaluation.clustering import (
    _ResampledNMI,
    nmi_bootstrap,
    ClusterAnalysis,
    centroid_cosine_distances,
    kmeans,
    purity,
    sinkhorn_knopp,
)


def blobs(n_per_class=20, n_classes=3, dim=5, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(n_classes, dim) * 10.0
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return centres[labels] + rng.normal(scale=spread, size=(len(labels), dim)), labels, centres


# ---------------------------------------------------------------- purity

def test_purity_of_a_hand_made_case():
    true = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 1, 1]
    # cluster 0 = {0, 0}: majority 2; cluster 1 = {0, 1, 1, 2}: majority 2 -> 4 / 6.
    assert purity(true, pred) == pytest.approx(4 / 6)


def test_purity_is_one_for_a_relabelled_perfect_clustering_and_accepts_strings():
    true = ["a", "a", "b", "b", "c"]
    assert purity(true, [7, 7, 3, 3, 5]) == 1.0
    assert purity(true, [0, 0, 0, 0, 0]) == pytest.approx(2 / 5)  # one cluster: majority class


def test_purity_matches_a_brute_force_count():
    rng = np.random.default_rng(1)
    true, pred = rng.integers(0, 5, 200), rng.integers(0, 7, 200)
    brute = sum(max(np.sum(true[pred == c] == k) for k in range(5)) for c in range(7)) / 200
    assert purity(true, pred) == pytest.approx(brute)


def test_purity_refuses_mismatched_lengths():
    with pytest.raises(ConfigError, match="3 labels"):
        purity([0, 1, 2], [0, 1])


# ---------------------------------------------------------------- k-means analysis

def test_analysis_recovers_separated_blobs_and_scores_them():
    features, labels, centres = blobs()
    analysis = ClusterAnalysis(n_clusters=3, random_state=0)
    assert analysis.fit(features, labels) is analysis
    assert analysis.purity_ == 1.0
    assert analysis.ami_ == pytest.approx(1.0)
    assert analysis.nmi_ == pytest.approx(1.0)
    # Each centroid is the mean of its blob.
    for cluster in range(3):
        members = features[analysis.labels_ == cluster]
        np.testing.assert_allclose(analysis.centroids_[cluster], members.mean(axis=0))
    order = np.argsort(np.argmax(analysis.centroids_, axis=1))
    np.testing.assert_allclose(analysis.centroids_[order], centres, atol=0.05)


def test_ami_and_nmi_are_scikit_learns_on_noisy_clusters():
    features, labels, _ = blobs(spread=6.0, seed=2)
    analysis = ClusterAnalysis(n_clusters=4, random_state=3).fit(torch.tensor(features), labels)
    assert analysis.ami_ == pytest.approx(adjusted_mutual_info_score(labels, analysis.labels_))
    assert analysis.nmi_ == pytest.approx(normalized_mutual_info_score(labels, analysis.labels_))
    assert analysis.purity_ == pytest.approx(purity(labels, analysis.labels_))
    assert 0.0 < analysis.ami_ < 1.0


def test_kmeans_is_deterministic_for_a_seed_and_agrees_with_the_analysis():
    features, labels, _ = blobs(spread=4.0, seed=4)
    first, centroids = kmeans(features, 5, random_state=7)
    second, _ = kmeans(features, 5, random_state=7)
    np.testing.assert_array_equal(first, second)
    analysis = ClusterAnalysis(5, random_state=7).fit(features, labels)
    np.testing.assert_array_equal(analysis.labels_, first)
    np.testing.assert_allclose(analysis.centroids_, centroids)
    # Inertia is the sum of squared distances to the assigned centroid.
    expected = ((features - centroids[first]) ** 2).sum()
    assert analysis.inertia_ == pytest.approx(expected)


@pytest.mark.parametrize("n_clusters", [0, 61, 2.5, True])
def test_invalid_cluster_counts_are_refused(n_clusters):
    features, labels, _ = blobs()
    with pytest.raises(ConfigError, match="n_clusters"):
        ClusterAnalysis(n_clusters).fit(features, labels)


def test_bad_features_and_labels_are_refused():
    features, labels, _ = blobs()
    with pytest.raises(ConfigError, match="60 labels"):
        ClusterAnalysis(3).fit(features, labels[:-1])
    features[3, 2] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        ClusterAnalysis(3).fit(features, labels)
    with pytest.raises(ConfigError, match="2-D"):
        kmeans(np.zeros(10), 2)


# ---------------------------------------------------------------- centroid distances

def test_centroid_cosine_distances_by_hand_and_against_scikit_learn():
    np.testing.assert_allclose(
        centroid_cosine_distances([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]), [1.0, 2.0, 1.0]
    )
    rng = np.random.default_rng(5)
    centroids = rng.normal(size=(6, 4))
    full = pairwise.cosine_distances(centroids)
    np.testing.assert_allclose(centroid_cosine_distances(centroids), full[np.triu_indices(6, 1)])


def test_zero_centroid_is_refused():
    with pytest.raises(ConfigError, match="zero"):
        centroid_cosine_distances([[1.0, 0.0], [0.0, 0.0]])


# ---------------------------------------------------------------- Sinkhorn-Knopp

def swav_reference(scores, epsilon, n_iters):
    """SwAV's procedure written directly (float64, no log domain), for small scores."""
    q = torch.exp(scores.double() / epsilon).t()
    k, b = q.shape
    q /= q.sum()
    for _ in range(n_iters):
        q /= q.sum(dim=1, keepdim=True) * k
        q /= q.sum(dim=0, keepdim=True) * b
    return (q * b).t()


def test_matches_swavs_procedure():
    torch.manual_seed(0)
    scores = torch.nn.functional.normalize(torch.randn(32, 6), dim=1)  # cosine-like in [-1, 1]
    for n_iters in (1, 3):
        torch.testing.assert_close(
            sinkhorn_knopp(scores, epsilon=0.05, n_iters=n_iters).double(),
            swav_reference(scores, 0.05, n_iters),
            rtol=1e-5, atol=1e-7,
        )


def test_rows_sum_to_one_and_columns_reach_equal_mass():
    torch.manual_seed(1)
    scores = torch.randn(40, 5)
    q = sinkhorn_knopp(scores, epsilon=0.1, n_iters=50)
    assert q.shape == (40, 5) and (q >= 0).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(40))
    torch.testing.assert_close(q.sum(dim=0), torch.full((5,), 40 / 5), rtol=1e-4, atol=1e-4)


def test_equal_partition_on_skewed_scores():
    torch.manual_seed(2)
    batch, prototypes = 64, 8
    scores = 0.1 * torch.randn(batch, prototypes)
    scores[:, 0] += 0.5  # every sample prefers prototype 0
    softmax_mass = torch.softmax(scores / 0.05, dim=1).sum(dim=0) / (batch / prototypes)
    assert softmax_mass[0] > 7.0  # without the constraint one prototype takes almost all
    mass = sinkhorn_knopp(scores).sum(dim=0) / (batch / prototypes)  # SwAV: eps 0.05, 3 iters
    assert mass.min() > 0.7 and mass.max() < 1.3
    hard = sinkhorn_knopp(scores).argmax(dim=1).bincount(minlength=prototypes)
    assert (hard > 0).all()  # every prototype receives samples


def test_large_scores_do_not_overflow_and_no_gradient_flows():
    scores = torch.tensor([[100.0, -100.0, 0.0], [-100.0, 100.0, 0.0], [0.0, 0.0, 100.0]],
                          requires_grad=True)
    assert not torch.isfinite(torch.exp(scores.detach() / 0.05)).all()  # the naive form overflows
    q = sinkhorn_knopp(scores)
    assert torch.isfinite(q).all() and not q.requires_grad
    torch.testing.assert_close(q, torch.eye(3), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "scores, kwargs, fragment",
    [
        (torch.zeros(5), {}, "(batch, prototypes)"),
        (torch.tensor([[0.0, float("nan")]]), {}, "NaN"),
        (torch.zeros(2, 2), {"epsilon": 0.0}, "epsilon"),
        (torch.zeros(2, 2), {"n_iters": 0}, "n_iters"),
    ],
)
def test_sinkhorn_refuses_bad_input(scores, kwargs, fragment):
    with pytest.raises(ConfigError) as excinfo:
        sinkhorn_knopp(scores, **kwargs)
    assert fragment in str(excinfo.value)


def test_nmi_bootstrap_effect_and_interval():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(10), 20)
    noisy = np.where(rng.random(200) < 0.2, rng.integers(0, 10, 200), labels)
    random = rng.integers(0, 10, 200)
    result = nmi_bootstrap(labels, noisy, random, n_boot=300, seed=0)
    expected = 100 * (normalized_mutual_info_score(labels, noisy)
                      - normalized_mutual_info_score(labels, random))
    assert result["effect"] == pytest.approx(expected)
    assert 0 < result["ci_low"] < result["effect"] < result["ci_high"]
    same = nmi_bootstrap(labels, noisy, noisy, n_boot=50)
    assert (same["effect"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)


def test_resampled_nmi_equals_scikit_learn_on_the_resample():
    rng = np.random.default_rng(5)
    labels, clusters = rng.integers(0, 7, 120), rng.integers(0, 9, 120)
    nmi = _ResampledNMI(labels, clusters)
    for _ in range(5):
        draw = rng.integers(0, 120, 120)
        weights = np.bincount(draw, minlength=120).astype(float)
        assert nmi(weights) == pytest.approx(
            normalized_mutual_info_score(labels[draw], clusters[draw]), abs=1e-12)
    assert _ResampledNMI(np.zeros(5), np.ones(5))(np.ones(5)) == 1.0

