"""2-D projections of embeddings for the papers' scatter plots (t-SNE, UMAP, PCA).

t-SNE (van der Maaten & Hinton, 2008) is what the thesis figures use (Fig. 3.1, 4.2, 5.6);
UMAP (McInnes et al., 2018) and PCA are offered beside it. Every method is deterministic for a
given ``random_state``, so a re-run redraws the same figure.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from ..errors import ConfigError
from .clustering import as_feature_matrix

METHODS = ("tsne", "umap", "pca")
# how figures name each method
METHOD_NAMES = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}
# scikit-learn's and umap-learn's defaults, lowered automatically for small inputs.
DEFAULT_PERPLEXITY = 30.0
DEFAULT_N_NEIGHBORS = 15
MIN_SAMPLES = 4


def project(
    features: Any, method: str = "tsne", random_state: int = 0, **options: Any
) -> np.ndarray:
    """Project ``features`` ``(N, D)`` to ``(N, 2)`` points.

    Args:
        features: array or tensor of shape ``(N, D)`` with ``N >= 4`` and ``D >= 2``.
        method: ``"tsne"`` (scikit-learn TSNE, PCA initialisation, perplexity 30 clipped to
            ``N - 1``), ``"umap"`` (umap-learn, 15 neighbours clipped to ``N - 1``) or ``"pca"``.
        random_state: seed; the same seed gives the same projection.
        **options: passed to the estimator (e.g. ``perplexity=10``, ``n_neighbors=5``,
            ``min_dist=0.1``); an explicit ``perplexity`` / ``n_neighbors`` is clipped too.

    Returns:
        float64 array of shape ``(N, 2)``.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown projection method {method!r}; choose one of {METHODS}")
    array = as_feature_matrix(features, min_rows=MIN_SAMPLES)
    if array.shape[1] < 2:
        raise ConfigError(
            f"projecting to 2-D needs features with at least 2 dimensions, got shape {array.shape}"
        )
    try:
        estimator = _make_estimator(method, len(array), random_state, options)
    except TypeError as error:
        raise ConfigError(f"invalid option for the {method} projection: {error}") from None
    with warnings.catch_warnings():
        # umap-learn says it runs single-threaded when seeded: that is the determinism we want.
        warnings.filterwarnings("ignore", message=".*overridden to 1 by setting random_state.*")
        points = estimator.fit_transform(array)
    return np.asarray(points, dtype=np.float64)


def _make_estimator(method: str, n_samples: int, random_state: int, options: dict[str, Any]):
    options = dict(options)
    if method == "pca":
        return PCA(n_components=2, random_state=random_state, **options)
    if method == "tsne":
        # scikit-learn requires perplexity < n_samples.
        options["perplexity"] = min(options.get("perplexity", DEFAULT_PERPLEXITY), n_samples - 1)
        options.setdefault("init", "pca")
        return TSNE(n_components=2, random_state=random_state, **options)
    # umap-learn imports numba and compiles on first use (tens of seconds): import only here.
    import umap

    options["n_neighbors"] = min(options.get("n_neighbors", DEFAULT_N_NEIGHBORS), n_samples - 1)
    return umap.UMAP(n_components=2, random_state=random_state, **options)
