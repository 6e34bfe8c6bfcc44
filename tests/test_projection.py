"""2-D projections: determinism, cluster separation, small inputs, PCA against an SVD."""

import numpy as np
import pytest
import torch

from fkdlib.errors import ConfigError
from fkdlib.evaluation.projection import project


def separated_clusters(n_per_class=15, n_classes=3, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=20.0, size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


def leave_one_out_1nn_accuracy(points, labels):
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    return float(np.mean(labels[distances.argmin(axis=1)] == labels))


def test_pca_equals_the_top_two_singular_directions():
    features, _ = separated_clusters()
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    points = project(features, "pca")
    assert points.shape == (len(features), 2) and points.dtype == np.float64
    signs = np.sign((points * expected).sum(axis=0))  # each axis is defined up to its sign
    np.testing.assert_allclose(points * signs, expected, atol=1e-8)


def test_tsne_is_deterministic_and_keeps_clusters_apart():
    features, labels = separated_clusters()
    first = project(torch.tensor(features, dtype=torch.float32), "tsne", random_state=3)
    second = project(features.astype(np.float32), "tsne", random_state=3)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (45, 2)
    assert leave_one_out_1nn_accuracy(first, labels) == 1.0


def test_tsne_clips_the_perplexity_for_tiny_inputs():
    features, _ = separated_clusters(n_per_class=2, n_classes=3)
    # scikit-learn refuses perplexity >= n_samples; 6 samples with the default 30 must still work.
    assert project(features, "tsne", perplexity=50.0).shape == (6, 2)


@pytest.mark.slow
def test_umap_is_deterministic_and_keeps_clusters_apart():
    # The first UMAP call compiles numba code (about 15 s on one core): one small input only.
    features, labels = separated_clusters(n_per_class=8)
    first = project(features, "umap", random_state=0)  # 24 samples: n_neighbors 15 is kept
    second = project(features, "umap", random_state=0)
    np.testing.assert_array_equal(first, second)
    assert leave_one_out_1nn_accuracy(first, labels) == 1.0
    tiny = project(features[:5], "umap", random_state=0)  # n_neighbors clipped to 4
    assert tiny.shape == (5, 2) and np.isfinite(tiny).all()


@pytest.mark.parametrize(
    "features, kwargs, fragment",
    [
        (np.zeros((10, 3)), {"method": "lda"}, "unknown projection method"),
        (np.zeros((3, 3)), {"method": "pca"}, "at least 4 rows"),
        (np.zeros((10, 1)), {"method": "pca"}, "at least 2 dimensions"),
        (np.ones((10, 3)), {"method": "tsne", "perplexty": 5}, "perplexty"),
    ],
)
def test_bad_input_is_refused_clearly(features, kwargs, fragment):
    with pytest.raises(ConfigError) as excinfo:
        project(features, **kwargs)
    assert fragment in str(excinfo.value)
