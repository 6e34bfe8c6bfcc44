"""Cluster purity and AMI of face embeddings against identities and attributes, with
identity-bootstrap intervals (fkdlib.evaluation.clustering.cluster_quality) and their figure."""

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_mutual_info_score

import fkdlib.evaluation.clustering as clustering
from fkdlib.errors import ConfigError
from fkdlib.evaluation.clustering import (
    CLUSTER_QUALITY_COLUMNS,
    _group_bootstrap_counts,
    _ResampledClusterScores,
    cluster_embeddings,
    cluster_quality,
    purity,
)
from fkdlib.report.figures import plot_cluster_quality


def faces(n_ids=12, per=6, dim=24, noise=0.05, seed=0, group_strength=0.0):
    """Embeddings of ``n_ids`` identities, ``per`` images each, rows scaled at random (cosine
    geometry ignores the norm), and metadata with an identity-level ``group`` (first half /
    second half of the identities) and an image-level ``pose`` (0, 1, 2 cycling)."""
    rng = np.random.default_rng(seed)
    identity = np.repeat(np.arange(n_ids), per)
    group = (identity >= n_ids // 2).astype(int)
    centres = rng.normal(size=(n_ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    group_dirs = 3.0 * np.eye(2, dim, k=dim - 2)
    points = centres[identity] + group_strength * group_dirs[group]
    points = points + noise * rng.normal(size=points.shape)
    points *= rng.uniform(0.2, 5.0, size=(len(points), 1))
    meta = pd.DataFrame({"identity": identity, "group": group,
                         "pose": np.tile(np.arange(3), n_ids * per // 3 + 1)[:len(identity)]})
    return points, meta


def expanded_scores(labels, clusters, groups, counts):
    """Purity and scikit-learn's AMI on the sample with every image of group g repeated
    counts[g] times: the reference the weighted computation must equal."""
    codes = np.unique(groups, return_inverse=True)[1]
    rows = np.repeat(np.arange(len(labels)), counts[codes])
    return purity(labels[rows], clusters[rows]), adjusted_mutual_info_score(labels[rows],
                                                                             clusters[rows])


# ---------------------------------------------------------------- purity and AMI

def test_perfect_and_random_clusterings_score_one_and_about_zero():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(20), 10)
    relabelled = (labels * 7 + 3) % 20
    scores = _ResampledClusterScores(labels, relabelled, labels)
    p, a = scores(np.ones((1, 20)))
    assert purity(labels, relabelled) == 1.0 and p[0] == 1.0
    assert adjusted_mutual_info_score(labels, relabelled) == pytest.approx(1.0) == a[0]
    labels = np.repeat(np.arange(20), 50)
    random = rng.integers(0, 20, len(labels))
    p, a = _ResampledClusterScores(labels, random, labels)(np.ones((1, 20)))
    assert a[0] == pytest.approx(adjusted_mutual_info_score(labels, random), abs=1e-12)
    assert abs(a[0]) < 0.01
    assert p[0] == pytest.approx(purity(labels, random)) and p[0] < 0.2


def test_purity_equals_a_count_by_hand_also_when_identities_repeat():
    labels = np.array(["a", "a", "b", "b", "b", "c"])
    clusters = np.array([0, 1, 1, 1, 2, 2])
    groups = np.array([0, 0, 1, 1, 2, 2])
    # cluster 0 = {a}, 1 = {a, b, b}, 2 = {b, c}: majorities 1 + 2 + 1 of 6
    assert purity(labels, clusters) == pytest.approx(4 / 6)
    # identity 1 (b, b) twice, identity 2 left out: cluster 0 = {a}, 1 = {a, b, b, b, b}
    p, _ = _ResampledClusterScores(labels, clusters, groups)(np.array([[1, 2, 0]]))
    assert p[0] == pytest.approx((1 + 4) / 6)


@pytest.mark.parametrize("case", range(6))
def test_weighted_ami_equals_scikit_learn_on_the_expanded_sample(case):
    rng = np.random.default_rng(case)
    n_groups = int(rng.integers(3, 40))
    groups = np.repeat(np.arange(n_groups), rng.integers(1, 9, n_groups))  # uneven identities
    n = len(groups)
    if case % 2:  # few large classes (attributes): long sums over n_ij
        labels = rng.integers(0, 3, n)
        clusters = np.where(rng.random(n) < 0.6, labels, rng.integers(0, 4, n))
    else:  # identity-like: many classes
        labels = groups // int(rng.integers(1, 3))
        clusters = np.where(rng.random(n) < 0.7, labels, rng.integers(0, n_groups, n))
    counts = _group_bootstrap_counts(n_groups, 15, case)
    p, a = _ResampledClusterScores(labels, clusters, groups)(counts)
    for row in range(15):
        reference = expanded_scores(labels, clusters, groups, counts[row])
        assert p[row] == pytest.approx(reference[0], abs=1e-12)
        assert a[row] == pytest.approx(reference[1], abs=1e-12)


def test_weighted_ami_in_small_chunks_and_in_scikit_learns_limit_cases(monkeypatch):
    monkeypatch.setattr(clustering, "_EMI_CHUNK", 5)
    rng = np.random.default_rng(9)
    groups = np.repeat(np.arange(6), 4)
    labels, clusters = groups % 3, rng.integers(0, 3, 24)
    counts = np.array([[1, 1, 1, 1, 1, 1],   # the sample
                       [0, 0, 6, 0, 0, 0],   # one identity: one class, clusters of its images
                       [2, 0, 0, 0, 0, 1]])
    scores = _ResampledClusterScores(labels, clusters, groups)
    p, a = scores(counts)
    for row in range(3):
        assert a[row] == pytest.approx(
            expanded_scores(labels, clusters, groups, counts[row])[1], abs=1e-12)
    # one class and one cluster: a perfect match for scikit-learn
    _, a = _ResampledClusterScores(labels, np.zeros(24), groups)(np.array([[0, 0, 3, 0, 0, 0]]))
    assert a[0] == 1.0 == adjusted_mutual_info_score([0, 0], [1, 1])


def test_bootstrap_counts_draw_every_identity_with_replacement():
    counts = _group_bootstrap_counts(7, 500, 3)
    assert counts.shape == (500, 7) and (counts.sum(axis=1) == 7).all()
    assert (counts == 0).any() and (counts >= 2).any()
    np.testing.assert_array_equal(counts, _group_bootstrap_counts(7, 500, 3))
    assert abs(counts.mean() - 1) < 0.05


# ---------------------------------------------------------------- clustering

@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_cluster_embeddings_recovers_identities_whatever_the_norms(method):
    points, meta = faces(noise=0.05)
    labels = cluster_embeddings(points, 12, method=method)
    assert labels.dtype == np.int64 and len(np.unique(labels)) == 12
    assert purity(meta["identity"], labels) == 1.0
    np.testing.assert_array_equal(labels, cluster_embeddings(points, 12, method=method))


def test_agglomerative_is_scikit_learns_ward_partition_on_normalised_rows():
    points, _ = faces(noise=0.6, seed=2)
    unit = points / np.linalg.norm(points, axis=1, keepdims=True)
    for k in (1, 2, 3, 7, 30, len(points)):
        ours = cluster_embeddings(points, k, method="agglomerative")
        theirs = (np.zeros(len(points), int) if k == 1 else
                  AgglomerativeClustering(n_clusters=k, linkage="ward").fit(unit).labels_)
        # the same partition: every (ours, theirs) pair of labels is one of k
        assert len(np.unique(ours)) == k
        assert len(np.unique(np.c_[ours, theirs], axis=0)) == k


@pytest.mark.parametrize("kwargs, fragment", [
    ({"n_clusters": 3, "method": "spectral"}, "unknown clustering method 'spectral'"),
    ({"n_clusters": 0}, "between 1 and the number of samples"),
    ({"n_clusters": 73}, r"between 1 and the number of samples \(72\)"),
    ({"n_clusters": 2.0}, "must be an integer"),
    ({"n_clusters": True, "method": "agglomerative"}, "must be an integer"),
])
def test_cluster_embeddings_refuses_bad_arguments(kwargs, fragment):
    points, _ = faces()
    with pytest.raises(ConfigError, match=fragment):
        cluster_embeddings(points, **kwargs)


def test_cluster_embeddings_refuses_zero_and_non_finite_rows():
    points, _ = faces()
    points[5] = 0
    with pytest.raises(ConfigError, match=r"rows \[5\] are zero vectors"):
        cluster_embeddings(points, 3)
    points[5, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        cluster_embeddings(points, 3)


# ---------------------------------------------------------------- the table

def test_table_has_one_row_per_model_method_and_target():
    points, meta = faces(group_strength=1.0)
    table = cluster_quality({"a": [points], "b": [points * 2, points]}, meta,
                            targets=("identity", "group"), n_boot=20)
    assert list(table.columns) == list(CLUSTER_QUALITY_COLUMNS)
    assert len(table) == 2 * 2 * 2
    assert table[["model", "method", "target"]].values.tolist() == [
        [m, method, t] for m in "ab" for method in ("kmeans", "agglomerative")
        for t in ("identity", "group")]
    assert table["clusters"].tolist() == [12, 2] * 4
    assert table["seeds"].tolist() == [1] * 4 + [2] * 4
    assert (table["identities"] == 12).all() and (table["images"] == 72).all()
    # well separated: both targets recovered perfectly, intervals [1, 1]
    for metric in ("purity", "ami"):
        np.testing.assert_allclose(table[[metric, f"{metric}_ci_low", f"{metric}_ci_high"]],
                                   1.0, atol=1e-12)


def test_the_bootstrap_is_a_mean_over_drawn_seeds_of_scores_on_drawn_identities():
    """The table's intervals recomputed by brute force: fixed clusters, identities drawn with
    replacement (and expanded), seeds drawn with replacement, scikit-learn's AMI."""
    points, meta = faces(n_ids=10, per=4, noise=0.9, seed=4)
    other, _ = faces(n_ids=10, per=4, noise=1.1, seed=5)
    n_boot, state = 40, 7
    table = cluster_quality({"m": [points, other]}, meta, methods=("kmeans",), n_boot=n_boot,
                            random_state=state)
    truth, groups = meta["identity"].to_numpy(), meta["identity"].to_numpy()
    clusters = [cluster_embeddings(x, 10, "kmeans", random_state=state) for x in (points, other)]
    counts = _group_bootstrap_counts(10, n_boot, state)
    seed_draws = np.random.default_rng([state, 1]).integers(0, 2, size=(n_boot, 2))
    per_seed = np.array([[expanded_scores(truth, c, groups, counts[b]) for b in range(n_boot)]
                         for c in clusters])  # (seed, resample, metric)
    draws = per_seed[seed_draws, np.arange(n_boot)[:, None]].mean(axis=1)  # (resample, metric)
    row = table.iloc[0]
    for index, metric in enumerate(("purity", "ami")):
        point = np.mean([purity(truth, c) if index == 0 else
                         adjusted_mutual_info_score(truth, c) for c in clusters])
        low, median, high = np.quantile(draws[:, index], [0.025, 0.5, 0.975])
        assert row[metric] == pytest.approx(point, abs=1e-12)
        assert row[f"{metric}_ci_low"] == pytest.approx(min(point + low - median, 1), abs=1e-12)
        assert row[f"{metric}_ci_high"] == pytest.approx(min(point + high - median, 1), abs=1e-12)
        assert row[f"{metric}_ci_low"] < point < row[f"{metric}_ci_high"]


def test_identical_seeds_give_the_one_seed_result():
    points, meta = faces(noise=0.8, seed=1, group_strength=0.5)
    kwargs = {"targets": ("identity", "group", "pose"), "n_boot": 50, "random_state": 3}
    one = cluster_quality({"m": [points]}, meta, **kwargs)
    three = cluster_quality({"m": [points, points.copy(), points]}, meta, **kwargs)
    numbers = ["purity", "purity_ci_low", "purity_ci_high", "ami", "ami_ci_low", "ami_ci_high"]
    np.testing.assert_allclose(three[numbers], one[numbers], atol=1e-12)
    assert (three["seeds"] == 3).all() and (one["seeds"] == 1).all()


def test_interval_contains_the_point_on_a_noisy_but_separated_example():
    points, meta = faces(n_ids=16, per=6, noise=0.25, seed=6, group_strength=1.0)
    table = cluster_quality({"m": points}, meta, targets=("identity", "group"), n_boot=100)
    for metric in ("purity", "ami"):
        assert (table[f"{metric}_ci_low"] <= table[metric]).all()
        assert (table[metric] <= table[f"{metric}_ci_high"]).all()
    noisy = table[(table.target == "identity")]
    assert (noisy["ami"] < 0.95).all() and (noisy["ami"] > 0.6).all()
    assert (noisy["ami_ci_high"] - noisy["ami_ci_low"] > 0.05).all()
    assert (table.loc[table.target == "group", ["ami_ci_low", "purity_ci_low"]] == 1.0).all().all()


def test_identity_sample_and_no_bootstrap():
    points, meta = faces(n_ids=12, per=6)
    table = cluster_quality({"m": points}, meta, identities=5, n_boot=0, methods="kmeans")
    assert table["identities"].tolist() == [5] and table["images"].tolist() == [30]
    assert table["clusters"].tolist() == [5]
    assert table[["purity_ci_low", "ami_ci_high"]].isna().all().all()
    assert table["ami"].iloc[0] == pytest.approx(1.0)
    everyone = cluster_quality({"m": points}, meta, identities=None, n_boot=0, methods="kmeans")
    assert everyone["identities"].tolist() == [12]
    # every model is scored on the same identities and resamples: equal embeddings, equal rows
    same = cluster_quality({"a": points, "b": points}, meta, identities=5, n_boot=10,
                           methods="kmeans")
    assert same.iloc[0, 3:].tolist() == same.iloc[1, 3:].tolist()


@pytest.mark.parametrize("change, fragment", [
    (lambda e, m: ({"m": [e[:-1]]}, m), "have 71 rows but metadata has 72"),
    (lambda e, m: ({"m": [e]}, m.drop(columns="identity")), "no 'identity' column"),
    (lambda e, m: ({"m": [e]}, m.assign(identity=np.nan)), "missing values"),
    (lambda e, m: ({"m": [e]}, m.values), "must be a pandas DataFrame"),
    (lambda e, m: ({}, m), "non-empty"),
    (lambda e, m: ({"m": []}, m), "holds no seeds"),
    (lambda e, m: ({"m": "e"}, m), "must be a list"),
])
def test_table_refuses_bad_inputs(change, fragment):
    points, meta = faces()
    embeddings, metadata = change(points, meta)
    with pytest.raises(ConfigError, match=fragment):
        cluster_quality(embeddings, metadata, n_boot=5)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"targets": ("age",)}, "unknown target 'age'.*identity, group, pose"),
    ({"methods": ("kmeans", "dbscan")}, "unknown clustering method 'dbscan'"),
    ({"targets": ("constant",)}, "single value"),
    ({"targets": ("angle",)}, "continuous"),
    ({"identities": 0}, "identities must be a positive integer"),
    ({"n_boot": -1}, "n_boot must be a non-negative integer"),
    ({"ci": 95}, "ci must be a coverage"),
    ({"random_state": -1}, "random_state"),
])
def test_table_refuses_bad_settings(kwargs, fragment):
    points, meta = faces()
    meta = meta.assign(constant=1, angle=np.linspace(-1, 1, len(meta)))
    with pytest.raises(ConfigError, match=fragment):
        cluster_quality({"m": points}, meta, **{"n_boot": 5, **kwargs})


# ---------------------------------------------------------------- the figure

def fake_table():
    rows = []
    for i, model in enumerate(("teacher", "student", "KD")):
        for j, method in enumerate(("kmeans", "agglomerative")):
            for k, target in enumerate(("identity", "gender")):
                value = 0.3 + 0.2 * i + 0.05 * j - 0.1 * k
                rows.append({"model": model, "method": method, "target": target,
                             "clusters": (40, 2)[k], "purity": value + 0.1,
                             "purity_ci_low": value, "purity_ci_high": value + 0.15,
                             "ami": value, "ami_ci_low": value - 0.05 * (k + 1),
                             "ami_ci_high": value + 0.05, "seeds": 3, "identities": 40,
                             "images": 480})
    return pd.DataFrame(rows, columns=list(CLUSTER_QUALITY_COLUMNS))


@pytest.mark.parametrize("metric", ["ami", "purity"])
def test_figure_points_and_whiskers_are_the_table_values(metric):
    table = fake_table()
    fig = plot_cluster_quality(table, metric=metric)
    ax = fig.axes[0]
    containers = {c.get_label(): c for c in ax.containers}
    assert len(containers) == 6
    for (model, method), rows in table.groupby(["model", "method"], sort=False):
        container = containers[f"{model} · {method}"]
        x, y = container.lines[0].get_data()
        np.testing.assert_allclose(y, rows[metric])
        np.testing.assert_allclose(np.round(x), [0, 1])  # identity, then gender
        segments = np.array(container.lines[2][0].get_segments())  # (points, 2 ends, xy)
        np.testing.assert_allclose(segments[:, 0, 1], rows[f"{metric}_ci_low"])
        np.testing.assert_allclose(segments[:, 1, 1], rows[f"{metric}_ci_high"])
    assert ax.get_ylim() == (0.0, 1.02)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["identity\nk = 40", "gender\nk = 2"]
    assert ("AMI" if metric == "ami" else "purity") in ax.get_title()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["model", "teacher", "student", "KD", "clustering", "k-means",
                      "agglomerative (Ward)"]


def test_figure_on_a_given_axes_with_a_negative_interval_and_no_intervals():
    import matplotlib.pyplot as plt

    table = fake_table()
    table.loc[0, "ami_ci_low"] = -0.12
    table.loc[1, ["ami_ci_low", "ami_ci_high"]] = np.nan
    fig, axes = plt.subplots(1, 2)
    assert plot_cluster_quality(table, ax=axes[1], title="AMI") is fig
    assert axes[1].get_ylim()[0] == pytest.approx(-0.15) and axes[1].get_title() == "AMI"
    assert not axes[0].has_data()


@pytest.mark.parametrize("table, kwargs, fragment", [
    (fake_table(), {"metric": "nmi"}, "metric must be 'ami' or 'purity'"),
    (fake_table().drop(columns="ami_ci_low"), {}, "lacks the columns"),
    (fake_table().iloc[:0], {}, "no rows"),
    (pd.concat([fake_table(), fake_table()]), {}, "several rows"),
])
def test_figure_refuses_bad_tables(table, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        plot_cluster_quality(table, **kwargs)
