"""Clustering analysis for CondFace (thesis ch. 5): k-means, purity, AMI/NMI, Sinkhorn-Knopp.

- :func:`kmeans` and :class:`ClusterAnalysis`: scikit-learn k-means on features (e.g. routing
  vectors), scored against ground-truth labels (e.g. attribute cohorts) by purity and by
  scikit-learn's adjusted / normalised mutual information (thesis Table 5.1).
- :func:`purity`: fraction of samples that belong to their cluster's majority class.
- :func:`sinkhorn_knopp`: SwAV's equal-partition soft assignment (Caron et al., NeurIPS 2020,
  Sec. 3.1 and ``distributed_sinkhorn`` in the official code), used for the per-batch
  clustering loss.
- :func:`centroid_cosine_distances`: pairwise cosine distances between centroids (Fig. 5.8).
- :func:`nmi_bootstrap`: paired bootstrap of the NMI difference of two fixed clusterings of the
  same samples (SRRL's "features cluster best", thesis Table 4.5).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.spatial.distance import pdist
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from ..errors import ConfigError


def as_feature_matrix(features: Any, name: str = "features", min_rows: int = 1) -> np.ndarray:
    """``features`` (NumPy array, tensor or nested list) as a finite float64 ``(N, D)`` array.

    Raises :class:`~fkdlib.errors.ConfigError` naming ``name`` and the shape found when it is
    not two-dimensional, has fewer than ``min_rows`` rows, or holds NaN or infinity.
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < min_rows or array.shape[1] < 1:
        raise ConfigError(
            f"{name} must be a 2-D array of shape (samples, dimensions) with at least "
            f"{min_rows} rows, got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ConfigError(
            f"{name} contains {int((~np.isfinite(array)).sum())} NaN or infinite values; "
            "check the model's outputs (a diverged run?) before analysing them"
        )
    return array


def _as_label_vector(labels: Any, name: str, length: int | None = None) -> np.ndarray:
    """``labels`` as a 1-D array, of ``length`` entries when given."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1 or (length is not None and len(array) != length):
        expected = "labels" if length is None else f"{length} labels (one per sample)"
        raise ConfigError(f"{name} must be a 1-D sequence of {expected}, got shape {array.shape}")
    return array


def purity(labels_true: Any, labels_pred: Any) -> float:
    """Cluster purity: the fraction of samples whose class is their cluster's majority class.

    ``purity = (1/N) * sum over clusters c of max over classes k of |c ∩ k|`` (Manning et al.,
    *Introduction to Information Retrieval*, 16.3). It is 1 for a perfect clustering and also
    when every sample is its own cluster, so compare clusterings with the same cluster count.
    """
    true = _as_label_vector(labels_true, "labels_true")
    pred = _as_label_vector(labels_pred, "labels_pred", len(true))
    if len(true) == 0:
        raise ConfigError("purity needs at least one sample, got empty label arrays")
    _, true_codes = np.unique(true, return_inverse=True)
    _, pred_codes = np.unique(pred, return_inverse=True)
    contingency = np.zeros((pred_codes.max() + 1, true_codes.max() + 1), dtype=np.int64)
    np.add.at(contingency, (pred_codes, true_codes), 1)
    return float(contingency.max(axis=1).sum() / len(true))


def kmeans(
    features: Any, n_clusters: int, random_state: int = 0, n_init: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """k-means (scikit-learn, k-means++ seeding, best of ``n_init`` runs).

    Returns:
        ``(labels, centroids)``: cluster index per sample ``(N,)`` and centroids ``(k, D)``.
    """
    model = _fit_kmeans(as_feature_matrix(features), n_clusters, random_state, n_init)
    return model.labels_.copy(), model.cluster_centers_.copy()


def _fit_kmeans(array: np.ndarray, n_clusters: int, random_state: int, n_init: int) -> KMeans:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or not (
        1 <= n_clusters <= len(array)
    ):
        raise ConfigError(
            f"n_clusters must be an integer between 1 and the number of samples ({len(array)}), "
            f"got {n_clusters!r}"
        )
    if isinstance(n_init, bool) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
        raise ConfigError(f"n_init must be a positive integer, got {n_init!r}")
    return KMeans(n_clusters=int(n_clusters), n_init=int(n_init), random_state=random_state).fit(
        array
    )


def centroid_cosine_distances(centroids: Any) -> np.ndarray:
    """Cosine distances ``1 - cos`` between every pair of centroids (thesis Fig. 5.8).

    Returns the ``k (k - 1) / 2`` distances of the upper triangle, in the order of
    :func:`scipy.spatial.distance.pdist`, ready for a histogram. A zero centroid has no
    direction and is refused.
    """
    array = as_feature_matrix(centroids, "centroids", min_rows=2)
    zero = np.flatnonzero(np.linalg.norm(array, axis=1) == 0)
    if len(zero):
        raise ConfigError(
            f"centroids {zero.tolist()} are zero vectors, whose cosine distance is undefined"
        )
    return pdist(array, metric="cosine")


@torch.no_grad()
def sinkhorn_knopp(
    scores: torch.Tensor, epsilon: float = 0.05, n_iters: int = 3
) -> torch.Tensor:
    """Equal-partition soft cluster assignments of a batch, as in SwAV.

    SwAV (Caron et al., 2020, Sec. 3.1) solves an entropy-regularised transport problem: find
    the assignment ``Q`` closest to ``exp(scores / epsilon)`` such that every one of the ``K``
    prototypes receives the same total mass, ``B / K``, and every sample's assignment sums to
    1. Starting from ``Q = exp(scores / epsilon)`` normalised to total 1, each iteration scales
    every prototype's column to mass ``1/K`` and then every sample's row to mass ``1/B``; the
    result is multiplied by ``B``.

    After the last (row) step each row sums to 1 exactly; the column sums approach ``B / K``
    as the iterations proceed (3 suffice in SwAV). The computation runs in the log domain, which
    gives the same result as SwAV's but cannot overflow for large ``scores / epsilon``. No
    gradient flows: the output is a target.

    Args:
        scores: ``(B, K)`` similarities of ``B`` samples to ``K`` prototypes.
        epsilon: entropy regularisation; smaller is closer to a hard assignment (SwAV: 0.05).
        n_iters: Sinkhorn iterations (SwAV: 3).

    Returns:
        ``(B, K)`` assignments: rows sum to 1, columns sum to about ``B / K``.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or min(scores.shape) < 1:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ConfigError(
            f"sinkhorn_knopp expects a (batch, prototypes) tensor of scores, got {shape}"
        )
    if not torch.isfinite(scores).all():
        raise ConfigError("sinkhorn_knopp: scores contain NaN or infinite values")
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise ConfigError(f"epsilon must be a positive number (SwAV uses 0.05), got {epsilon!r}")
    if isinstance(n_iters, bool) or not isinstance(n_iters, int) or n_iters < 1:
        raise ConfigError(f"n_iters must be a positive integer (SwAV uses 3), got {n_iters!r}")
    batch, prototypes = scores.shape
    log_q = scores.double() / epsilon
    log_q = log_q - torch.logsumexp(log_q.flatten(), dim=0)
    for _ in range(n_iters):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(prototypes)
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(batch)
    return (log_q.exp() * batch).to(scores.dtype)


class ClusterAnalysis:
    """k-means on features, scored against ground-truth labels (thesis Table 5.1).

    Example:
        >>> analysis = ClusterAnalysis(n_clusters=30, random_state=0).fit(routing, cohorts)
        >>> analysis.purity_, analysis.ami_  # doctest: +SKIP

    Attributes (after :meth:`fit`):
        labels_: cluster index of each sample.
        centroids_: ``(n_clusters, D)`` centroids.
        purity_: :func:`purity` of the clusters against the labels.
        ami_: adjusted mutual information (scikit-learn, arithmetic normalisation).
        nmi_: normalised mutual information (scikit-learn, arithmetic normalisation).
        inertia_: k-means objective, the sum of squared distances to the nearest centroid.
    """

    def __init__(self, n_clusters: int, random_state: int = 0, n_init: int = 10) -> None:
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.n_init = n_init

    def fit(self, features: Any, labels: Any) -> ClusterAnalysis:
        """Cluster ``features`` ``(N, D)`` and score the clusters against ``labels`` ``(N,)``."""
        array = as_feature_matrix(features)
        truth = _as_label_vector(labels, "labels", len(array))
        model = _fit_kmeans(array, self.n_clusters, self.random_state, self.n_init)
        self.labels_ = model.labels_.copy()
        self.centroids_ = model.cluster_centers_.copy()
        self.inertia_ = float(model.inertia_)
        self.purity_ = purity(truth, self.labels_)
        self.ami_ = float(adjusted_mutual_info_score(truth, self.labels_))
        self.nmi_ = float(normalized_mutual_info_score(truth, self.labels_))
        return self


class _ResampledNMI:
    """NMI (arithmetic normalisation, as scikit-learn's default) of a fixed clustering on
    weighted resamples of its samples, from bin counts: about a hundred times faster than
    calling scikit-learn once per bootstrap resample."""

    def __init__(self, labels: np.ndarray, clusters: np.ndarray) -> None:
        _, self.label_codes = np.unique(labels, return_inverse=True)
        _, self.cluster_codes = np.unique(clusters, return_inverse=True)
        pairs = self.label_codes * (self.cluster_codes.max() + 1) + self.cluster_codes
        unique_pairs, self.pair_codes = np.unique(pairs, return_inverse=True)
        self.pair_label = unique_pairs // (self.cluster_codes.max() + 1)
        self.pair_cluster = unique_pairs % (self.cluster_codes.max() + 1)

    @staticmethod
    def _entropy(counts: np.ndarray, total: float) -> float:
        p = counts[counts > 0] / total
        return float(-(p * np.log(p)).sum())

    def __call__(self, weights: np.ndarray) -> float:
        """NMI when sample ``i`` appears ``weights[i]`` times."""
        total = float(weights.sum())
        joint = np.bincount(self.pair_codes, weights=weights)
        by_label = np.bincount(self.label_codes, weights=weights)
        by_cluster = np.bincount(self.cluster_codes, weights=weights)
        present = joint > 0
        expected = by_label[self.pair_label[present]] * by_cluster[self.pair_cluster[present]]
        mutual = float((joint[present] / total
                        * np.log(joint[present] * total / expected)).sum())
        normaliser = (self._entropy(by_label, total) + self._entropy(by_cluster, total)) / 2
        # both partitions a single block: a perfect match, as in scikit-learn
        return 1.0 if normaliser == 0 else max(mutual, 0.0) / normaliser


def nmi_bootstrap(labels: np.ndarray, clusters_a: np.ndarray, clusters_b: np.ndarray,
                  n_boot: int, seed: int = 0, ci: float = 0.95) -> dict[str, Any]:
    """Paired bootstrap over test images of NMI(a) − NMI(b) in % (clusterings fixed; the
    images are resampled jointly for both rows; percentile interval)."""
    labels = np.asarray(labels)
    if not (len(labels) == len(clusters_a) == len(clusters_b)) or len(labels) == 0:
        raise ConfigError(f"nmi_bootstrap needs one label and one cluster per image, got "
                          f"{len(labels)}, {len(clusters_a)} and {len(clusters_b)}")
    nmi_a, nmi_b = _ResampledNMI(labels, clusters_a), _ResampledNMI(labels, clusters_b)
    rng = np.random.default_rng(seed)
    n = len(labels)
    draws = np.empty(n_boot)
    for index in range(n_boot):
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        draws[index] = 100 * (nmi_a(weights) - nmi_b(weights))
    alpha = (1 - ci) / 2
    ones = np.ones(n)
    return {"effect": 100 * (nmi_a(ones) - nmi_b(ones)),
            "ci_low": float(np.quantile(draws, alpha)),
            "ci_high": float(np.quantile(draws, 1 - alpha)), "n": n, "n_boot": n_boot}

