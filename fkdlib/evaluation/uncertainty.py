"""Uncertainty of a method comparison over test identities and training seeds, and its power.

:func:`~fkdlib.evaluation.similarity.paired_bootstrap` resamples verification pairs as if they
were independent and each method were fixed. Neither holds for a face benchmark:

* **Identities.** 400,000 IJB-like pairs come from a few hundred to a thousand identities. The
  pairs of one identity share its pose range, image quality and look-alikes, so their scores
  (and a method's advantage on them) are correlated. Resampling pairs treats them as
  independent and understates the variance, often several-fold. The remedy is the cluster
  bootstrap (Davison & Hinkley 1997, "Bootstrap Methods and their Application", §3.8): draw the
  *identities* with replacement and keep each drawn identity's items together.
* **Seeds.** Each method is usually one training run, and another seed gives another model:
  run-to-run variation can be as large as the gap between methods. With several runs per method
  the runs are resampled too. Seeds and identities are crossed (every run scores every identity),
  so each level is resampled on its own, independently of the other: the two-level resampling of
  Field & Welsh (2007, "Bootstrapping clustered data", JRSS B 69(3)) applied to crossed factors
  as in Owen's "pigeonhole" bootstrap (2007, Annals of Applied Statistics 1(2)), which errs on
  the conservative side (the seed x identity interaction is counted more than once).

Counting a resample on the original items
-----------------------------------------
As in :mod:`.similarity`, a resample is not materialised: each item gets a count, the number of
times it appears in the resampled test set, and the metric is evaluated with those counts
(``metric(scores, labels, weights)``, see the :mod:`.similarity` docstring). When identity
``k`` is drawn ``c_k`` times the resampled test set holds ``c_k`` copies of its images, so:

* a single item (a probe, an image) of identity ``k`` counts ``c_k`` times;
* a positive pair (both images of ``k``) counts ``c_k`` times, once per copy of the identity;
* a negative pair between ``k`` and ``l`` counts ``c_k * c_l`` times: every copy of ``k`` is
  compared with every copy of ``l``, as an all-pairs protocol (IJB) would on the resampled set.
  An identity not drawn removes all its pairs.

For a fixed pair list (LFW-like) this is the same rule applied to the pairs that exist.

The same identity draw serves both methods and every seed of a resample (the test set is
shared), so identity effects common to the methods cancel in the difference, as pairs do in the
paired bootstrap. With one seed per method the interval covers the test-set (identity and pair)
variance only: it is conditional on those two training runs and says nothing about whether
retraining would reproduce the gap.

Power
-----
:func:`minimum_detectable_effect` turns a bootstrap standard error (``BootstrapResult.se``)
into the smallest true effect the comparison would detect with a given power, to say whether a
"no significant difference" is informative or the benchmark was simply too small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from fkdlib.errors import ConfigError, DataFormatError
from fkdlib.evaluation.similarity import (
    _BLOCK_ELEMENTS, BootstrapResult, Metric, _as_numpy, _check_bootstrap_args, _summarise,
    _uniform_counts)

# One (n,) score array per training run, or a single array for a single run.
ScoreRuns = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]
# (n,) identity of each item, or (first, second) identities of each pair's two images.
Identities = np.ndarray | Sequence[object] | tuple[np.ndarray, np.ndarray]


def identity_weights(
    counts: np.ndarray, first: np.ndarray, second: np.ndarray | None = None
) -> np.ndarray:
    """Per-item resample counts from per-identity draw counts.

    Args:
        counts: ``(R, K)`` non-negative integers, how many times each of ``K`` identities was
            drawn in each of ``R`` resamples.
        first: ``(n,)`` identity index (``0 .. K-1``) of each item, or of each pair's first
            image.
        second: ``(n,)`` identity index of each pair's second image; None for single items.

    Returns:
        ``(R, n)`` weights: ``counts[:, first]`` for single items and positive pairs
        (``first == second``), ``counts[:, first] * counts[:, second]`` for negative pairs (see
        the module docstring). int32 when every row's total fits in it, so a metric may
        accumulate in the weights' dtype, else int64.

    Raises:
        DataFormatError: shapes disagree, counts are negative or not integers, or an index is
            outside ``0 .. K-1``.
    """
    c = np.asarray(counts)
    if c.ndim != 2 or not np.issubdtype(c.dtype, np.integer):
        raise DataFormatError(f"identity_weights: counts must be (resamples, identities) "
                              f"integers, got shape {c.shape} and dtype {c.dtype}")
    num_identities = c.shape[1]
    indices = [_check_indices(first, num_identities, "first")]
    if second is not None:
        indices.append(_check_indices(second, num_identities, "second"))
        if indices[1].shape != indices[0].shape:
            raise DataFormatError(f"identity_weights: first and second must have the same "
                                  f"length, got {indices[0].size} and {indices[1].size}")
    largest = int(c.max(initial=0))
    if int(c.min(initial=0)) < 0:
        raise DataFormatError("identity_weights: counts must be non-negative")
    largest_weight = largest if second is None else largest * largest
    total_bound = indices[0].size * largest_weight
    dtype = np.int32 if total_bound < np.iinfo(np.int32).max else np.int64
    if second is None:
        return np.take(c.astype(dtype, copy=False), indices[0], axis=1)
    # A column of ones stands in for the partner of a positive pair, so that every pair is
    # one product of two gathers, with no per-pair branch.
    padded = np.ones((c.shape[0], num_identities + 1), dtype=dtype)
    padded[:, :num_identities] = c
    partner = np.where(indices[0] == indices[1], num_identities, indices[1])
    weights = np.take(padded, indices[0], axis=1)
    weights *= np.take(padded, partner, axis=1)
    return weights


def _check_indices(values: np.ndarray, num_identities: int, name: str) -> np.ndarray:
    index = np.asarray(values)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise DataFormatError(f"identity_weights: {name} must be (n,) integer identity "
                              f"indices, got shape {index.shape} and dtype {index.dtype}")
    if index.size and (index.min() < 0 or index.max() >= num_identities):
        raise DataFormatError(f"identity_weights: {name} holds indices in [{index.min()}, "
                              f"{index.max()}], outside 0 .. {num_identities - 1} (the "
                              "columns of counts)")
    return index


@dataclass(frozen=True)
class _Run:
    """One training run's scores in ascending order, with labels and identities in that order
    (ranking metrics then skip their per-resample reordering)."""

    scores: np.ndarray
    labels: np.ndarray
    first: np.ndarray
    second: np.ndarray | None

    def metric(self, metric: Metric, counts: np.ndarray | None = None) -> np.ndarray | float:
        """The metric on the full test set, or on each resample of ``(R, K)`` identity counts."""
        if counts is None:
            return metric(self.scores, self.labels)
        return metric(self.scores, self.labels, identity_weights(counts, self.first,
                                                                 self.second))


def hierarchical_bootstrap(
    metric: Metric,
    scores_a: ScoreRuns,
    scores_b: ScoreRuns,
    labels: np.ndarray,
    identities: Identities,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    paired_seeds: bool = True,
) -> BootstrapResult:
    """Bootstrap of ``metric(A) - metric(B)`` over test identities and training seeds.

    The effect is ``mean_s metric(A_s) - mean_s metric(B_s)`` on the full test set. Each
    resample draws ``K`` of the ``K`` identities with replacement (one draw shared by both
    methods and all their seeds) and, per method, as many seeds as it has, with replacement;
    its value is the mean over the drawn seeds of the metric on the resampled test set, A minus
    B. See the module docstring for why and for how items are counted, and
    :class:`~fkdlib.evaluation.similarity.BootstrapResult` for the interval, p-value and
    standard error.

    Args:
        metric: a metric following the :mod:`.similarity` contract, e.g.
            :func:`~fkdlib.evaluation.similarity.best_threshold_accuracy` or
            ``functools.partial(tar_at_far, far=1e-3)``.
        scores_a, scores_b: one ``(n,)`` score array per training seed of each method (a single
            array is one seed); every array scores the same ``n`` items in the same order.
        labels: ``(n,)`` labels passed to the metric (bool ``issame`` for pairs).
        identities: ``(n,)`` identity of each item, or a tuple ``(first, second)`` of two
            ``(n,)`` arrays, the identities of each pair's two images. Any hashable labels that
            :func:`numpy.unique` can sort.
        n_boot: number of resamples.
        seed: seed of the resampling.
        ci: confidence level.
        paired_seeds: the two methods' runs correspond (same seeds, in order; needs as many runs
            per method), so one seed draw serves both. Otherwise, or when the counts differ,
            each method's runs are drawn on their own.

    Raises:
        ConfigError: no runs for a method, fewer than 2 identities, or bad ``n_boot``/``ci``.
        DataFormatError: lengths disagree or scores are not finite.
    """
    _check_bootstrap_args(n_boot, ci)
    y = _as_numpy(labels)
    if y.ndim != 1:
        raise DataFormatError(f"hierarchical_bootstrap: labels must be (n,), got shape "
                              f"{y.shape}")
    n = y.size
    first, second, num_identities = _identity_indices(identities, n)
    runs_a = [_sorted_run(s, y, first, second) for s in _seed_scores(scores_a, n, "scores_a")]
    runs_b = [_sorted_run(s, y, first, second) for s in _seed_scores(scores_b, n, "scores_b")]
    runs = runs_a + runs_b
    effect = (np.mean([float(run.metric(metric)) for run in runs_a])
              - np.mean([float(run.metric(metric)) for run in runs_b]))
    shared_seeds = paired_seeds and len(runs_a) == len(runs_b)
    rng = np.random.default_rng(seed)
    rows_per_block = max(1, _BLOCK_ELEMENTS // n)
    differences = []
    # The moment metrics' (resamples x n) @ (n x 6) products are memory-bound; with torch
    # loaded, a second OpenBLAS thread waiting for a busy core made them ~100x slower in our
    # runs on a two-core machine.
    with threadpool_limits(limits=1, user_api="blas"):
        for start in range(0, n_boot, rows_per_block):
            rows = min(rows_per_block, n_boot - start)
            counts = _uniform_counts(rng, np.full(rows, num_identities), num_identities)
            # Every run is scored on the block's identity draw; the seed draw then only picks
            # columns, so resampling seeds costs no further metric evaluations.
            values = np.stack([np.asarray(run.metric(metric, counts), dtype=np.float64)
                               for run in runs], axis=1)
            picks_a = _seed_picks(rng, rows, len(runs_a))
            picks_b = picks_a if shared_seeds else _seed_picks(rng, rows, len(runs_b))
            differences.append(_seed_mean(values[:, :len(runs_a)], picks_a)
                               - _seed_mean(values[:, len(runs_a):], picks_b))
    return _summarise(float(effect), np.concatenate(differences), n_boot, ci)


def _identity_indices(identities: Identities, n: int
                      ) -> tuple[np.ndarray, np.ndarray | None, int]:
    """``(first, second or None, K)``: identity labels mapped to indices ``0 .. K-1``."""
    is_pairs = (isinstance(identities, tuple) and len(identities) == 2
                and all(np.ndim(side) == 1 for side in identities))
    sides = [_as_numpy(side) for side in identities] if is_pairs else [_as_numpy(identities)]
    for name, side in zip(("first", "second") if is_pairs else ("identities",), sides):
        if side.shape != (n,):
            raise DataFormatError(f"hierarchical_bootstrap: {name} must give one identity per "
                                  f"item, {n} for {n} labels, got shape {side.shape}")
    # One mapping over both sides, so the same identity gets the same index in either.
    _, inverse = np.unique(np.concatenate(sides), return_inverse=True)
    inverse = inverse.ravel()
    num_identities = int(inverse.max()) + 1 if inverse.size else 0
    if num_identities < 2:
        raise ConfigError(f"hierarchical_bootstrap: need at least 2 identities to resample, "
                          f"got {num_identities}")
    return inverse[:n], (inverse[n:] if is_pairs else None), num_identities


def _seed_scores(scores: ScoreRuns, n: int, what: str) -> list[np.ndarray]:
    if isinstance(scores, (np.ndarray, torch.Tensor)) and scores.ndim == 1:
        runs = [scores]
    else:
        runs = list(scores)
        if runs and np.ndim(runs[0]) == 0:
            runs = [np.asarray(runs)]
    if not runs:
        raise ConfigError(f"hierarchical_bootstrap: {what} holds no training runs; pass one "
                          "(n,) score array per seed")
    checked = []
    for index, run in enumerate(runs):
        s = _as_numpy(run).astype(np.float64, copy=False)
        if s.shape != (n,):
            raise DataFormatError(f"hierarchical_bootstrap: {what}[{index}] must score the "
                                  f"{n} labelled items, got shape {s.shape}")
        if not np.isfinite(s).all():
            raise DataFormatError(f"hierarchical_bootstrap: {what}[{index}] holds "
                                  f"{int((~np.isfinite(s)).sum())} NaN or inf score(s)")
        checked.append(s)
    return checked


def _sorted_run(scores: np.ndarray, labels: np.ndarray, first: np.ndarray,
                second: np.ndarray | None) -> _Run:
    order = np.argsort(scores, kind="stable")
    return _Run(scores[order], labels[order], first[order],
                None if second is None else second[order])


def _seed_picks(rng: np.random.Generator, rows: int, num_runs: int) -> np.ndarray | None:
    """``(rows, num_runs)`` run indices drawn with replacement; None for a single run, which
    every draw would pick."""
    return None if num_runs == 1 else rng.integers(0, num_runs, size=(rows, num_runs))


def _seed_mean(values: np.ndarray, picks: np.ndarray | None) -> np.ndarray:
    if picks is None:
        return values[:, 0]
    return np.take_along_axis(values, picks, axis=1).mean(axis=1)


def minimum_detectable_effect(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true effect a two-sided test at level ``alpha`` detects with probability
    ``power``.

    The standard normal-approximation power formula (e.g. Cohen 1988, "Statistical Power
    Analysis for the Behavioral Sciences", or any statistics text on sample size): an estimate
    with standard error ``se`` is significant when ``|effect| > z_{1-alpha/2} * se``; a true
    effect ``d`` clears that bar with probability ``power`` when
    ``d = (z_{1-alpha/2} + z_{power}) * se``, about ``2.80 * se`` at the defaults. Use the
    ``se`` of a :class:`~fkdlib.evaluation.similarity.BootstrapResult`.

    Returns:
        The effect in the metric's units; NaN when ``se`` is NaN.

    Raises:
        ConfigError: ``alpha`` or ``power`` outside (0, 1), or a negative ``se``.
    """
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ConfigError(f"minimum_detectable_effect: alpha and power must be in (0, 1), got "
                          f"alpha={alpha!r}, power={power!r}")
    if math.isnan(se):
        return float("nan")
    if se < 0:
        raise ConfigError(f"minimum_detectable_effect: se must be >= 0, got {se!r}")
    # NormalDist's quantile (Wichura's AS 241) is accurate to double precision, like scipy's.
    normal = NormalDist()
    return (normal.inv_cdf(1 - alpha / 2) + normal.inv_cdf(power)) * float(se)
