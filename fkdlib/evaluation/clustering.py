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
- :func:`cluster_embeddings` and :func:`cluster_quality`: k-means or agglomerative clusters of
  face embeddings scored by purity and AMI against identities and attributes, with percentile
  intervals from a bootstrap over test identities (and training seeds), one table row per
  model, clustering method and target (the "cluster purity/AMI analyses" of every notebook).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.spatial.distance import pdist
from scipy.special import gammaln
from sklearn.cluster import KMeans, ward_tree
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix
from threadpoolctl import threadpool_limits

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
    # rows: classes, columns: clusters (scikit-learn's layout), sparse so that many classes
    # and many clusters stay cheap; a column's maximum is its cluster's majority class
    table = contingency_matrix(true, pred, sparse=True)
    return float(table.max(axis=0).toarray().sum() / len(true))


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



# ------------------------------------------------------------- cluster quality of face embeddings

#: Clustering methods of :func:`cluster_embeddings` (and :func:`cluster_quality`).
CLUSTER_METHODS = ("kmeans", "agglomerative")

#: Columns of the table :func:`cluster_quality` returns, in order.
CLUSTER_QUALITY_COLUMNS = ("model", "method", "target", "clusters", "purity", "purity_ci_low",
                           "purity_ci_high", "ami", "ami_ci_low", "ami_ci_high", "seeds",
                           "identities", "images")


def _check_n_clusters(n_clusters: Any, n_samples: int) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or not (
        1 <= n_clusters <= n_samples
    ):
        raise ConfigError(
            f"n_clusters must be an integer between 1 and the number of samples ({n_samples}), "
            f"got {n_clusters!r}"
        )
    return int(n_clusters)


def _unit_rows(array: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """The rows of ``array`` scaled to unit L2 norm; a zero row has no direction: refused."""
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if len(zero):
        raise ConfigError(f"{name} rows {zero[:10].tolist()} are zero vectors, which have no "
                          "direction to cluster by cosine geometry")
    return array / norms


def _kmeans_restarts(n_clusters: int) -> int:
    """k-means runs (best inertia kept) for ``n_clusters``: restarts decide coarse cuts and
    cost little there (in a simulation one k-means++ run cut 2400 embeddings in two across
    the gender split, AMI 0.02, where the best of 3 or of 10 found it, AMI 0.98); at fine
    cuts (a cluster per identity) the best of 3 lay within the spread of the best of 10 over
    random states, at a third of the cost."""
    return 10 if n_clusters <= 50 else 3


def _kmeans_labels(unit_rows: np.ndarray, n_clusters: int, random_state: int) -> np.ndarray:
    """k-means labels of L2-normalised rows, on one thread. The arrays are small (a few
    thousand rows), and on a busy machine OpenMP's spinning threads made scikit-learn's
    k-means 7 times slower with 2 threads than with 1 (200 clusters of 2400 rows, best of 10
    runs: 24 s against 3.3 s); the labels are the same either way."""
    with threadpool_limits(limits=1):
        model = _fit_kmeans(unit_rows, n_clusters, random_state, _kmeans_restarts(n_clusters))
    return model.labels_.astype(np.int64)


def _ward_labels(unit_rows: np.ndarray, cluster_counts: Sequence[int]) -> dict[int, np.ndarray]:
    """Ward-linkage clusters of ``unit_rows`` for every count in ``cluster_counts``, from one
    tree (scikit-learn's :func:`~sklearn.cluster.ward_tree`, the tree
    :class:`~sklearn.cluster.AgglomerativeClustering` builds): the cut into ``k`` clusters
    undoes the last ``k - 1`` merges, as scikit-learn's cut does, so the partitions are
    scikit-learn's (its label numbers may differ)."""
    n = len(unit_rows)
    if n == 1:
        return {int(k): np.zeros(1, dtype=np.int64) for k in cluster_counts}
    children = ward_tree(unit_rows)[0]
    parent = np.full(2 * n - 1, -1, dtype=np.int64)
    parent[children[:, 0]] = parent[children[:, 1]] = np.arange(n, 2 * n - 1)
    labels = {}
    for k in dict.fromkeys(int(k) for k in cluster_counts):
        # the nodes made by the first n - k merges, and the leaves, have indices below limit;
        # a cluster is such a node whose parent is made by a later merge (or the root)
        limit = 2 * n - k
        nodes = np.arange(2 * n - 1)
        top = np.where((parent >= 0) & (parent < limit), parent, nodes)
        while True:  # pointer doubling: every node's highest ancestor made before the cut
            higher = top[top]
            if np.array_equal(higher, top):
                break
            top = higher
        labels[k] = np.unique(top[:n], return_inverse=True)[1].astype(np.int64)
    return labels


def cluster_embeddings(embeddings: Any, n_clusters: int, method: str = "kmeans",
                       random_state: int = 0) -> np.ndarray:
    """Cluster face embeddings ``(N, D)`` into ``n_clusters`` groups; returns the label of each row.

    Face embeddings are compared by cosine similarity, so both methods cluster the
    L2-normalised rows, on which the squared Euclidean distance is ``2 - 2 cos``:

    - ``"kmeans"``: scikit-learn :class:`~sklearn.cluster.KMeans` (k-means++ seeding,
      ``random_state``; the best of 10 runs for up to 50 clusters, of 3 above) on the
      normalised rows, i.e. k-means by cosine distance.
    - ``"agglomerative"``: Ward linkage on the normalised rows, the partition of
      scikit-learn's :class:`~sklearn.cluster.AgglomerativeClustering` (``linkage="ward"``;
      deterministic, ``random_state`` is unused). Ward merges the two clusters whose union
      raises the within-cluster sum of ``2 - 2 cos`` least: the hierarchical counterpart of
      the k-means objective in cosine geometry, with compact clusters at every cut. Average
      linkage with the cosine metric was the alternative; at the coarse cuts an attribute
      asks for (2 clusters for gender, 3 for age group) it splits off a few outlying images
      and leaves one giant cluster (2390 of 2400 images in a simulation), which scores an AMI
      near 0 whatever the embedding encodes. Time and memory grow as ``N**2``.

    Raises :class:`~fkdlib.errors.ConfigError` for an unknown ``method``, an ``n_clusters``
    outside ``1 .. N``, or embeddings that are not a finite 2-D array without zero rows.
    """
    if method not in CLUSTER_METHODS:
        raise ConfigError(f"unknown clustering method {method!r}; choose one of "
                          f"{', '.join(CLUSTER_METHODS)}")
    array = _unit_rows(as_feature_matrix(embeddings, "embeddings"))
    n_clusters = _check_n_clusters(n_clusters, len(array))
    if method == "agglomerative":
        return _ward_labels(array, [n_clusters])[n_clusters]
    return _kmeans_labels(array, n_clusters, random_state)


#: Most (triple, n_ij) terms :func:`_expected_mutual_information` evaluates at once.
_EMI_CHUNK = 2_000_000


def _expected_mutual_information(label_sizes: np.ndarray, cluster_sizes: np.ndarray
                                 ) -> np.ndarray:
    """Expected mutual information (nats) of two random labellings, one value per row.

    Row ``r`` has class sizes ``label_sizes[r]`` and cluster sizes ``cluster_sizes[r]``
    (whole numbers; zeros are absent classes or clusters), ``N`` samples in all. Under the
    hypergeometric model of Vinh, Epps & Bailey (JMLR 2010, eq. 24a), as scikit-learn's
    ``expected_mutual_information``::

        EMI = sum_i sum_j sum_n  n/N log(N n / (a_i b_j)) P(n | a_i, b_j, N)

    with ``n`` from ``max(1, a_i + b_j - N)`` to ``min(a_i, b_j)``. The inner sum depends on
    ``(a, b, N)`` only, so it is computed once for each distinct triple over all rows and
    weighted by how many (class, cluster) pairs of a row have those sizes: resamples share
    most triples, which makes a few hundred rows cost about as much as a few.
    """
    keys, weights, owners = [], [], []
    for row, (a_row, b_row) in enumerate(zip(label_sizes, cluster_sizes)):
        a_row, b_row = a_row[a_row > 0], b_row[b_row > 0]
        if a_row.size < 2 or b_row.size < 2:  # a labelling of zero entropy: EMI = 0
            continue
        sizes_a, count_a = np.unique(np.rint(a_row).astype(np.int64), return_counts=True)
        sizes_b, count_b = np.unique(np.rint(b_row).astype(np.int64), return_counts=True)
        total = int(sizes_a @ count_a)
        keys.append(np.stack(np.broadcast_arrays(
            total, sizes_a[:, None], sizes_b[None, :]), axis=-1).reshape(-1, 3))
        weights.append(np.outer(count_a, count_b).ravel().astype(np.float64))
        owners.append(np.full(sizes_a.size * sizes_b.size, row))
    emi = np.zeros(len(label_sizes))
    if not keys:
        return emi
    keys = np.concatenate(keys)
    base = int(keys[:, 0].max()) + 1
    if base < 2_000_000:  # (N, a, b) as one integer: far faster to sort than rows
        codes, inverse = np.unique((keys[:, 0] * base + keys[:, 1]) * base + keys[:, 2],
                                   return_inverse=True)
        triples = np.stack([codes // base // base, codes // base % base, codes % base], axis=1)
    else:
        triples, inverse = np.unique(keys, axis=0, return_inverse=True)
    big_n, a, b = triples.T
    low, high = np.maximum(1, a + b - big_n), np.minimum(a, b)
    # n_ij outside mean +- half has probability below 1e-20 (Bernstein's inequality for the
    # binomial with min(a, b) draws, which bounds the hypergeometric's tails, Hoeffding 1963
    # Thm 4): those terms change nothing in double precision, and dropping them shortens the
    # sums of large classes and clusters (attributes) several fold
    draws, p = np.minimum(a, b), np.maximum(a, b) / big_n
    level = np.log(2 / 1e-20)
    half = level / 3 + np.sqrt(level ** 2 / 9 + 2 * level * draws * p * (1 - p))
    mean = a * b / big_n
    low = np.maximum(low, np.floor(mean - half).astype(np.int64))
    high = np.minimum(high, np.ceil(mean + half).astype(np.int64))
    lengths = high - low + 1
    log_factorial = gammaln(np.arange(big_n.max() + 1) + 1.0)
    inner = np.zeros(len(triples))
    # chunks of whole triples, about _EMI_CHUNK terms each (a triple longer is one chunk)
    ends = np.cumsum(lengths)
    bounds = np.unique(np.r_[0, np.searchsorted(ends, np.arange(_EMI_CHUNK, ends[-1], _EMI_CHUNK)),
                             len(triples)])
    for first, last in zip(bounds[:-1], bounds[1:]):
        part = np.arange(first, last)
        owner = np.repeat(part, lengths[part])
        starts = np.cumsum(lengths[part]) - lengths[part]
        nij = low[owner] + np.arange(owner.size) - np.repeat(starts, lengths[part])
        n_, a_, b_ = big_n[owner], a[owner], b[owner]
        lf = log_factorial
        log_p = (lf[a_] + lf[b_] + lf[n_ - a_] + lf[n_ - b_] - lf[n_] - lf[nij] - lf[a_ - nij]
                 - lf[b_ - nij] - lf[n_ - a_ - b_ + nij])
        terms = nij / n_ * (np.log(n_ * nij) - np.log(a_) - np.log(b_)) * np.exp(log_p)
        inner[first:last] = np.bincount(owner - first, weights=terms, minlength=last - first)
    np.add.at(emi, np.concatenate(owners), np.concatenate(weights) * inner[inverse.ravel()])
    return emi


def _entropy_rows(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row of ``counts`` ``(B, K)`` with row sums ``totals``."""
    p = counts / totals[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


class _ResampledClusterScores:
    """Purity and AMI of a fixed clustering on resamples that draw whole groups of samples
    (identities) with replacement: a group drawn ``c`` times contributes each of its samples
    ``c`` times. Everything is computed from the weighted contingency table, with the
    adjusted mutual information (arithmetic normalisation, scikit-learn's default) exactly as
    :func:`sklearn.metrics.adjusted_mutual_info_score` gives it on the expanded sample
    (including its special cases and its guards against ``0 / 0``), for many resamples at once.
    """

    def __init__(self, labels: np.ndarray, clusters: np.ndarray, groups: np.ndarray) -> None:
        _, label_codes = np.unique(labels, return_inverse=True)
        _, cluster_codes = np.unique(clusters, return_inverse=True)
        _, group_codes = np.unique(groups, return_inverse=True)
        self.n_groups = int(group_codes.max()) + 1
        width = int(cluster_codes.max()) + 1
        # the non-empty (class, cluster) cells, sorted by class then cluster
        cells, cell_codes = np.unique(label_codes * width + cluster_codes, return_inverse=True)
        self.cell_label, self.cell_cluster = cells // width, cells % width
        self.group_cells = np.zeros((self.n_groups, len(cells)))
        np.add.at(self.group_cells, (group_codes, cell_codes), 1.0)
        # every class and every cluster has a cell: sums over runs of cells give their sizes
        self.label_starts = np.flatnonzero(np.r_[True, np.diff(self.cell_label) != 0])
        self.by_cluster = np.lexsort((self.cell_label, self.cell_cluster))
        self.cluster_starts = np.flatnonzero(
            np.r_[True, np.diff(self.cell_cluster[self.by_cluster]) != 0])

    def __call__(self, group_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(purity, ami)``, one value per row of ``group_counts`` ``(B, groups)``, the number
        of times each group is drawn (all ones: the sample itself)."""
        counts = np.atleast_2d(np.asarray(group_counts, dtype=np.float64))
        cells = counts @ self.group_cells  # (B, cells), whole numbers
        total = cells.sum(axis=1)
        by_label = np.add.reduceat(cells, self.label_starts, axis=1)
        cells_by_cluster = cells[:, self.by_cluster]
        by_cluster = np.add.reduceat(cells_by_cluster, self.cluster_starts, axis=1)
        purity = np.maximum.reduceat(cells_by_cluster, self.cluster_starts, axis=1).sum(1) / total
        with np.errstate(divide="ignore", invalid="ignore"):
            outer = by_label[:, self.cell_label] * by_cluster[:, self.cell_cluster]
            terms = np.where(cells > 0, cells / total[:, None]
                             * np.log(cells * total[:, None] / outer), 0.0)
        mutual = np.clip(terms.sum(axis=1), 0.0, None)
        normaliser = (_entropy_rows(by_label, total) + _entropy_rows(by_cluster, total)) / 2
        emi = _expected_mutual_information(by_label, by_cluster)
        eps = np.finfo(np.float64).eps
        # as scikit-learn: keep the signs of numerator and denominator, never 0 / 0
        denominator = normaliser - emi
        denominator = np.where(denominator < 0, np.minimum(denominator, -eps),
                               np.maximum(denominator, eps))
        numerator = mutual - emi
        numerator = np.where(numerator < 0, np.minimum(numerator, -eps),
                             np.maximum(numerator, eps))
        ami = numerator / denominator
        # scikit-learn's limit cases: one class and one cluster match perfectly (1); one
        # class or one cluster alone carries no information (0)
        n_labels, n_clusters = (by_label > 0).sum(axis=1), (by_cluster > 0).sum(axis=1)
        single = (n_labels == 1) | (n_clusters == 1)
        ami = np.where(single, np.where(n_labels == n_clusters, 1.0, 0.0), ami)
        return purity, ami


def _group_bootstrap_counts(n_groups: int, n_boot: int, random_state: int) -> np.ndarray:
    """``(n_boot, n_groups)``: how often each group is drawn in each resample of ``n_groups``
    groups drawn with replacement."""
    rng = np.random.default_rng([int(random_state), 0])
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    offsets = np.arange(n_boot)[:, None] * n_groups
    return np.bincount((draws + offsets).ravel(), minlength=n_boot * n_groups).reshape(
        n_boot, n_groups)


def _model_seeds(name: str, value: Any, n_rows: int) -> list[np.ndarray]:
    """A model's embeddings as a list of ``(n_rows, D)`` arrays, one per training seed."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        value = [value] if value.ndim == 2 else list(value)
    elif not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ConfigError(f"embeddings_by_model[{name!r}] must be a list of (images, dimensions) "
                          f"arrays, one per training seed, got {type(value).__name__}")
    if len(value) == 0:
        raise ConfigError(f"embeddings_by_model[{name!r}] holds no seeds")
    seeds = [as_feature_matrix(array, f"embeddings of {name!r}, seed {index}")
             for index, array in enumerate(value)]
    for index, array in enumerate(seeds):
        if len(array) != n_rows:
            raise ConfigError(
                f"embeddings of {name!r}, seed {index}, have {len(array)} rows but metadata has "
                f"{n_rows}: pass one embedding per test image, in metadata's row order")
    return seeds


def _target_labels(metadata: pd.DataFrame, target: str, rows: np.ndarray) -> np.ndarray:
    if not isinstance(target, str) or target not in metadata.columns:
        raise ConfigError(f"unknown target {target!r}: a target is a column of metadata, one of "
                          f"{', '.join(map(str, metadata.columns))}")
    values = metadata[target].to_numpy()[rows]
    if values.dtype.kind == "f" and not np.all(np.isfinite(values) & (values == np.round(values))):
        raise ConfigError(f"target {target!r} holds continuous values; bin it into classes "
                          "first (as pitch_bin and yaw_bin bin pitch and yaw)")
    if pd.isna(values).any():
        raise ConfigError(f"target {target!r} has missing values among the analysed images")
    return values


def _centred_interval(point: float, draws: np.ndarray, ci: float) -> tuple[float, float]:
    """The percentile interval of ``draws`` moved so that their median falls on ``point``:
    ``point + (quantile - median)``, at most 1 (the top of purity and AMI)."""
    if draws.size == 0:
        return float("nan"), float("nan")
    low, median, high = np.quantile(draws, [(1 - ci) / 2, 0.5, (1 + ci) / 2])
    return float(min(point + low - median, 1.0)), float(min(point + high - median, 1.0))


def _seed_clusters(array: np.ndarray, cluster_counts: Sequence[int], methods: Sequence[str],
                   random_state: int) -> dict[tuple[str, int], np.ndarray]:
    """:func:`cluster_embeddings` of one seed's embeddings for every method and cluster count
    (one Ward tree serves every count)."""
    unit = _unit_rows(array)
    clusters = {}
    for method in methods:
        if method == "agglomerative":
            clusters.update({(method, k): labels
                             for k, labels in _ward_labels(unit, cluster_counts).items()})
        else:
            for k in cluster_counts:
                clusters[(method, k)] = _kmeans_labels(unit, k, random_state)
    return clusters


# What a SynthFace embedding can be scored against: the person, and each exact attribute with
# the 270 combined cohorts (age group x gender x skin tone x pitch bin x yaw bin).
SYNTHFACE_TARGETS = ("identity", "age_group", "gender", "skin_tone", "pitch_bin", "yaw_bin",
                     "cohort")


def available_targets(metadata: pd.DataFrame,
                      targets: Sequence[str] = SYNTHFACE_TARGETS) -> tuple[str, ...]:
    """The targets of ``targets`` that ``metadata`` has a column for (real data: identity)."""
    return tuple(t for t in targets if t in metadata.columns)


def cluster_quality(
    embeddings_by_model: Mapping[str, Sequence[Any]],
    metadata: pd.DataFrame,
    targets: Sequence[str] = ("identity",),
    methods: Sequence[str] = CLUSTER_METHODS,
    identities: int | None = 200,
    n_boot: int = 200,
    random_state: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Purity and AMI of each model's embedding clusters against identities and attributes,
    with intervals from a bootstrap over test identities and training seeds.

    Example:
        >>> table = cluster_quality({"teacher": [seed0, seed1, seed2], "kd": [...]},
        ...                         bench.test_metadata, targets=("identity", "gender"))
        ... # doctest: +SKIP

    Args:
        embeddings_by_model: ``{model: [embeddings of seed 0, seed 1, ...]}``, each an
            ``(N, D)`` array (or tensor) over the same ``N`` test images, rows aligned with
            ``metadata``; a single ``(N, D)`` array counts as one seed, an ``(S, N, D)``
            array as ``S`` seeds.
        metadata: one row per test image, with an ``identity`` column and the target columns
            (on SynthFace ``age_group, gender, skin_tone, pitch_bin, yaw_bin, cohort``).
        targets: the columns the clusters are scored against. For ``"identity"`` the
            embeddings are clustered into as many clusters as there are analysed identities:
            do the clusters recover the people? For an attribute the cluster count is its
            number of distinct values among the analysed images: do the embedding's natural
            groups line up with this attribute, i.e. what does the embedding encode beyond
            identity (an identity-invariant embedding scores near 0 on pose)?
        methods: clustering methods of :func:`cluster_embeddings` (k-means and Ward
            agglomerative, both on L2-normalised embeddings).
        identities: how many test identities are analysed, with all their images, drawn
            without replacement with ``random_state`` (the same draw for every model, so the
            rows compare like with like); ``None`` or more than there are: all of them.
            200 identities keep agglomerative clustering's ``N**2`` memory and the time small
            (with 12 images each and 128-d embeddings, about 1 s of CPU per model and seed
            for the identity target with both methods and 200 resamples, 3 s with the six
            SynthFace attributes as well).
        n_boot: bootstrap resamples (0: no intervals, the ``*_ci_*`` columns are NaN).
        random_state: seeds the identity sample, k-means and the bootstrap.
        ci: coverage of the intervals.

    Every seed's embeddings are clustered once, on the analysed images; a resample keeps these
    clusters and draws the analysed identities with replacement (``K`` of ``K``; an identity
    drawn ``c`` times contributes every image ``c`` times) and, when a model has several seeds,
    the seeds with replacement; its value is the mean over the drawn seeds of the purity (AMI)
    on the drawn identities. The identity is the resampling unit for attribute targets too:
    images of one person share the person-level attributes, so they are not independent. The
    same identity draws serve every model, method and target (paired comparisons). The AMI of
    a resample is computed from its weighted contingency table, equal to scikit-learn's on the
    expanded sample. The point values are the means over seeds of :func:`purity` and of
    :func:`sklearn.metrics.adjusted_mutual_info_score` (arithmetic normalisation).

    The interval is the percentile interval of the resamples moved so that their median falls
    on the point value (``value + quantile - median``, capped at 1): the bootstrap gives the
    spread, not the centre. Resamples of a fixed clustering score systematically higher than
    the sample for targets with many classes: the ~37 % of identities a resample leaves out no
    longer contaminate the clusters they shared, and repeated identities inflate the mutual
    information beyond what the chance correction of AMI expects for that many images. In a
    simulation (200 identities x 12 images, 128-d, 30 independent test sets, each method)
    with identity AMIs of 0.72-0.83, the resamples' median sat 0.05-0.08 above the point AMI
    for ``identity`` and 0.15-0.17 above it for ``cohort``: plain percentile intervals held
    the mean over test sets in 0-10 % of them, the moved intervals in 83-100 %; for gender
    there was no shift and the two intervals coincide. The intervals hold the clusters fixed:
    they say how much the score depends on which identities were tested, not how different
    the clusters of another sample would be. At coarse cuts (2 or 3 clusters) the clusters
    themselves vary most between samples (for gender the spread across test sets was 1.6-2.4
    times the bootstrap's, and the intervals held the mean 53-77 % of the time), so read
    attribute intervals as a lower bound on the uncertainty.

    Purity never falls below the share of the largest class (about 0.75 for SynthFace's
    ``pitch_bin``, where most faces are frontal), so compare purities between models for one
    target, not across targets; AMI is 0 for chance agreement whatever the classes.

    Returns:
        One row per (model, method, target), in that nesting order, with columns
        :data:`CLUSTER_QUALITY_COLUMNS`: ``clusters`` (k), ``purity`` and ``ami`` with their
        ``*_ci_low`` / ``*_ci_high``, ``seeds``, ``identities`` and ``images`` analysed.
    """
    if not isinstance(metadata, pd.DataFrame):
        raise ConfigError(f"metadata must be a pandas DataFrame with one row per test image, got "
                          f"{type(metadata).__name__}")
    if "identity" not in metadata.columns:
        raise ConfigError("metadata has no 'identity' column; the bootstrap resamples identities "
                          f"(columns found: {', '.join(map(str, metadata.columns))})")
    if len(metadata) < 2:
        raise ConfigError(f"metadata must have at least 2 rows (test images), got {len(metadata)}")
    if not isinstance(embeddings_by_model, Mapping) or not embeddings_by_model:
        raise ConfigError("embeddings_by_model must be a non-empty {model: [embeddings per seed]}"
                          " mapping")
    targets = [targets] if isinstance(targets, str) else list(targets)
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not targets or not methods:
        raise ConfigError("cluster_quality needs at least one target and one method")
    for method in methods:
        if method not in CLUSTER_METHODS:
            raise ConfigError(f"unknown clustering method {method!r}; choose one of "
                              f"{', '.join(CLUSTER_METHODS)}")
    if identities is not None and (isinstance(identities, bool) or not isinstance(
            identities, (int, np.integer)) or identities < 1):
        raise ConfigError(f"identities must be a positive integer or None, got {identities!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ConfigError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if not (isinstance(ci, float) and 0 < ci < 1):
        raise ConfigError(f"ci must be a coverage between 0 and 1 (e.g. 0.95), got {ci!r}")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or (
            random_state < 0):
        raise ConfigError(f"random_state must be a non-negative integer, got {random_state!r}")
    all_identities = metadata["identity"].to_numpy()
    if pd.isna(all_identities).any():
        raise ConfigError("metadata's identity column has missing values")
    models = {name: _model_seeds(name, value, len(metadata))
              for name, value in embeddings_by_model.items()}

    # the analysed identities, as benchmark.identity_sample_rows draws them; rows in pool order
    unique = np.unique(all_identities)
    count = unique.size if identities is None else min(int(identities), unique.size)
    chosen = np.random.default_rng(random_state).choice(unique, size=count, replace=False)
    rows = np.flatnonzero(np.isin(all_identities, chosen))
    groups = all_identities[rows]
    truths = {}
    for target in dict.fromkeys(targets):
        truths[target] = _target_labels(metadata, target, rows)
        if np.unique(truths[target]).size < 2:
            raise ConfigError(f"target {target!r} takes a single value among the {len(rows)} "
                              "analysed images; there is nothing to score clusters against")

    cluster_counts = {target: int(np.unique(truth).size) for target, truth in truths.items()}
    group_counts = _group_bootstrap_counts(count, n_boot, random_state)

    records = []
    for name, seeds in models.items():
        n_seeds = len(seeds)
        # the seeds drawn in each resample, as weights summing to 1 (the same for every model
        # with as many seeds); independent of the identity draws, so one seed repeated gives
        # the one-seed result
        seed_draws = np.random.default_rng([int(random_state), 1]).integers(
            0, n_seeds, size=(n_boot, n_seeds))
        seed_weights = np.zeros((n_boot, n_seeds))
        np.add.at(seed_weights, (np.arange(n_boot)[:, None], seed_draws), 1.0 / n_seeds)
        clusters = [_seed_clusters(array[rows], sorted(set(cluster_counts.values())), methods,
                                   random_state) for array in seeds]
        for method in methods:
            for target, truth in truths.items():
                k = cluster_counts[target]
                points = np.empty((n_seeds, 2))
                boot = np.zeros((n_seeds, 2, n_boot))
                for seed in range(n_seeds):
                    labels = clusters[seed][(method, k)]
                    points[seed] = (purity(truth, labels),
                                    adjusted_mutual_info_score(truth, labels))
                    if n_boot:
                        boot[seed] = _ResampledClusterScores(truth, labels, groups)(group_counts)
                draws = np.einsum("bs,smb->mb", seed_weights, boot)  # mean over drawn seeds
                value = points.mean(axis=0)
                purity_ci = _centred_interval(value[0], draws[0], ci)
                ami_ci = _centred_interval(value[1], draws[1], ci)
                records.append({
                    "model": name, "method": method, "target": target, "clusters": k,
                    "purity": float(value[0]), "purity_ci_low": purity_ci[0],
                    "purity_ci_high": purity_ci[1], "ami": float(value[1]),
                    "ami_ci_low": ami_ci[0], "ami_ci_high": ami_ci[1], "seeds": n_seeds,
                    "identities": count, "images": len(rows)})
    return pd.DataFrame.from_records(records, columns=list(CLUSTER_QUALITY_COLUMNS))
