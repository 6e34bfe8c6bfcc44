"""Comparisons of two models on the same protocol of a face benchmark: the evidence of claims.

Each model is given as its *runs*: one :class:`~fkdlib.evaluation.benchmark.Evaluation` per
training seed (or a single Evaluation, one run). Every comparison is a
:func:`~fkdlib.evaluation.uncertainty.hierarchical_bootstrap` that resamples the training
seeds and the test identities of the protocol's pairs (a pair counted as often as its
identities were drawn), so its interval covers both the run-to-run and the test-set variance.

- :func:`compare`: ``metric(a) − metric(b)`` over the protocol's pairs for any metric of
  :func:`metric_function` (``accuracy``, ``auc``, ``mean_positive``, ``mean_negative``,
  ``d_prime``, ``tar@<far>``);
- :func:`stratified_mean_bootstrap`: the difference of mean similarities over the positive (or
  the negative) pairs only;
- :func:`closeness_bootstrap`: whether one model's mean positive similarity is closer to a
  reference model's than another's is (ICD-Face: "toward the teacher's").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from ..errors import ConfigError
from .benchmark import Evaluation
from .similarity import (
    BootstrapResult, best_threshold_accuracy, d_prime, mean_negative_similarity,
    mean_positive_similarity, roc_auc, tar_at_far)
from .uncertainty import hierarchical_bootstrap

Runs = Evaluation | Sequence[Evaluation]
# Pairs of one class that a stratified bootstrap keeps (see stratified_mean_bootstrap).
MAX_BOOTSTRAP_PAIRS = 20_000

METRICS: dict[str, Callable[..., Any]] = {
    "accuracy": best_threshold_accuracy,
    "auc": roc_auc,
    "mean_positive": mean_positive_similarity,
    "mean_negative": mean_negative_similarity,
    "d_prime": d_prime,
}


def metric_function(metric: str) -> Callable[..., Any]:
    """A bootstrap metric by name; ``"tar@1e-3"`` is TAR at FAR 1e-3."""
    if metric.startswith("tar@"):
        return partial(tar_at_far, far=float(metric[4:]))
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of {sorted(METRICS)} or "
                          "'tar@<far>'")
    return METRICS[metric]


def as_runs(runs: Runs) -> list[Evaluation]:
    """A model's runs as a list (a single Evaluation is one run)."""
    listed = [runs] if isinstance(runs, Evaluation) else list(runs)
    if not listed:
        raise ConfigError("a model to compare has no runs; give one Evaluation per seed")
    return listed


def pair_identities(evaluation: Evaluation, protocol: str,
                    rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
    """The identities of the protocol's pairs, the resampling units: ``(first, second)``; each
    pair its own unit where the identities are unknown (a real ``.bin`` list), which is the
    pair bootstrap."""
    known = evaluation.identities.get(protocol)
    if known is None or np.any(known[0] < 0):
        units = np.arange(evaluation.issame[protocol].size)
        return units if rows is None else units[rows]
    first, second = known
    return (first, second) if rows is None else (first[rows], second[rows])


def count_identities(identities: tuple[np.ndarray, np.ndarray] | np.ndarray) -> int:
    """Distinct resampling units of :func:`pair_identities`."""
    sides = identities if isinstance(identities, tuple) else (identities,)
    return int(np.unique(np.concatenate(sides)).size)


def compare(a: Runs, b: Runs, protocol: str, metric: str, n_boot: int = 2000,
            seed: int = 0) -> BootstrapResult:
    """``metric(a) − metric(b)`` over the protocol's pairs, seeds and identities resampled."""
    runs_a, runs_b = as_runs(a), as_runs(b)
    return hierarchical_bootstrap(
        metric_function(metric), [r.scores[protocol] for r in runs_a],
        [r.scores[protocol] for r in runs_b], runs_a[0].issame[protocol],
        pair_identities(runs_a[0], protocol), n_boot=n_boot, seed=seed)


def stratum_rows(evaluation: Evaluation, protocol: str, positive: bool,
                 max_pairs: int = MAX_BOOTSTRAP_PAIRS, seed: int = 0) -> np.ndarray:
    """Indices of the protocol's positive (or negative) pairs, reduced to a seeded uniform
    sample of ``max_pairs`` when there are more (see :func:`stratified_mean_bootstrap`)."""
    rows = np.flatnonzero(evaluation.issame[protocol] if positive
                          else ~evaluation.issame[protocol])
    if rows.size == 0:
        raise ConfigError(f"the {protocol!r} list has no {'positive' if positive else 'negative'}"
                          " pairs to bootstrap")
    if rows.size > max_pairs:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_pairs, replace=False))
    return rows


def stratified_mean_bootstrap(a: Runs, b: Runs, protocol: str, positive: bool, n_boot: int,
                              seed: int = 0,
                              max_pairs: int = MAX_BOOTSTRAP_PAIRS) -> BootstrapResult:
    """mean(a) − mean(b) over the positive (or the negative) pairs only.

    A mean over one class of pairs depends only on that class, so resampling within it (a
    stratified bootstrap) measures the same thing as resampling every pair without drawing the
    other class each time. A class with more than ``max_pairs`` pairs (the IJB-like list's
    200,000 negatives) is first reduced to a seeded uniform sample of ``max_pairs`` of them: its
    mean then has a standard error of ``0.3/√20000 ≈ 0.002`` for cosines with a standard
    deviation of 0.3, far below the identity-level spread the interval measures.
    """
    runs_a, runs_b = as_runs(a), as_runs(b)
    rows = stratum_rows(runs_a[0], protocol, positive, max_pairs, seed)
    # Every pair of the stratum counts as "positive" for mean_positive_similarity, which then
    # is the plain mean of the stratum's scores.
    labels = np.ones(rows.size, dtype=bool)
    return hierarchical_bootstrap(
        mean_positive_similarity, [r.scores[protocol][rows] for r in runs_a],
        [r.scores[protocol][rows] for r in runs_b], labels,
        pair_identities(runs_a[0], protocol, rows), n_boot=n_boot, seed=seed)


def _absolute_mean(scores: np.ndarray, labels: np.ndarray,
                   weights: np.ndarray | None = None) -> np.ndarray | float:
    """|mean| of the scores (all labelled positive), in the bootstrap metric contract."""
    return np.abs(mean_positive_similarity(scores, labels, weights))


def closeness_bootstrap(candidate: Runs, baseline: Runs, reference: Runs, protocol: str,
                        n_boot: int, seed: int = 0,
                        max_pairs: int = MAX_BOOTSTRAP_PAIRS) -> BootstrapResult:
    """``|mean(candidate − reference)| − |mean(baseline − reference)|`` over the positive
    pairs: negative when the candidate's mean positive similarity is closer to the reference's
    than the baseline's is.

    Run ``s`` of each model is measured against run ``s`` of the reference (the runs of a seed
    share their teacher), over the first as many seeds as every model has; each pair's score
    differences are resampled jointly, so the effect is the change in distance to the
    reference.
    """
    runs = [as_runs(candidate), as_runs(baseline), as_runs(reference)]
    seeds = min(len(r) for r in runs)
    cand, base, ref = (r[:seeds] for r in runs)
    rows = stratum_rows(ref[0], protocol, True, max_pairs, seed)
    labels = np.ones(rows.size, dtype=bool)

    def gaps(model: list[Evaluation]) -> list[np.ndarray]:
        return [m.scores[protocol][rows] - r.scores[protocol][rows]
                for m, r in zip(model, ref, strict=True)]

    return hierarchical_bootstrap(_absolute_mean, gaps(cand), gaps(base), labels,
                                  pair_identities(ref[0], protocol, rows), n_boot=n_boot,
                                  seed=seed)
