"""Pair similarities, their summary statistics and paired bootstrap comparisons of methods.

The papers compare methods by the similarity distributions of positive and negative pairs
(ArcFace, ICD-Face) and by verification metrics. To say whether method A beats method B on the
*same* test pairs we use the paired bootstrap (Efron & Tibshirani 1993, "An Introduction to the
Bootstrap"; Koehn 2004 for comparing two systems on one test set): resample the pairs with
replacement, the same resample for both methods, and look at the distribution of
``metric(A) - metric(B)``.

Bootstrap metrics
-----------------
A *metric* is a function ``metric(scores, labels, weights=None)``: ``scores`` ``(n,)``
similarities (higher = more alike), ``labels`` ``(n,)`` bool (True = same identity) and
``weights`` ``(R, n)`` where ``weights[r, i]`` is how many times pair ``i`` is drawn in
resample ``r``. It returns one value per resample, shape ``(R,)``, or a float when ``weights``
is None (every pair once). Evaluating a resample through counts on the original pairs lets the
ranking metrics sort the scores once per block of resamples: 2000 resamples of 10^5 pairs take
seconds.
The helpers here follow that contract: :func:`best_threshold_accuracy`, :func:`tar_at_far`
(bind ``far`` with :func:`functools.partial`), :func:`roc_auc`,
:func:`mean_positive_similarity`, :func:`mean_negative_similarity` and :func:`d_prime`.

TAR at a low FAR on a long all-pairs list (IJB-like: 10^5-10^6 negatives) depends on the
negatives only through the few that score highest, so :func:`paired_bootstrap` draws it
hierarchically (:func:`_tar_tail_bootstrap`): each positive and each negative of either
method's top tail gets its own count, all other negatives one pooled count, which is the same
multinomial resample at a fraction of the cost; the rare resample whose threshold falls below
the tail is completed pair by pair and scored in full, so the distribution stays exact.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from fkdlib.errors import ConfigError, DataFormatError

Metric = Callable[..., "np.ndarray | float"]

# Elements of a (resamples x pairs) block processed at once: 16 MB per int32 array.
_BLOCK_ELEMENTS = 1 << 22
# Slack for float rounding when turning ``far * num_negatives`` into an integer count.
_COUNT_EPS = 1e-9
# TAR@FAR bootstraps keep individual counts for the top TAIL_FACTOR * (k + 1) + TAIL_EXTRA
# negatives of each method (k negatives may pass the threshold): a resample draws about as many
# of them, so fewer than k + 1 (the rare case completed pair by pair) is many sigmas away.
TAIL_FACTOR = 2
TAIL_EXTRA = 64


# ----------------------------------------------------------------------------- inputs


def _as_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def pair_similarities(
    embeddings: np.ndarray | torch.Tensor, issame: np.ndarray | Sequence[bool]
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of positive and negative pairs from pair-ordered embeddings.

    Args:
        embeddings: ``(2N, D)`` embeddings, pair ``k`` at rows ``2k`` and ``2k + 1`` (any norm:
            rows are normalised here).
        issame: ``(N,)`` bool.

    Returns:
        ``(positive, negative)`` float64 arrays of cosine similarities, in pair order.

    Raises:
        DataFormatError: shapes disagree, a row is zero, or values are not finite.
    """
    scores, same = pair_scores(embeddings, issame, "pair_similarities")
    return scores[same], scores[~same]


def pair_scores(
    embeddings: np.ndarray | torch.Tensor, issame: np.ndarray | Sequence[bool], what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validate pair-ordered embeddings and return ``(cosine similarity (N,), issame (N,))``."""
    emb = _as_numpy(embeddings).astype(np.float64, copy=False)
    same = _as_numpy(issame)
    if emb.ndim != 2 or emb.shape[0] % 2:
        raise DataFormatError(
            f"{what}: embeddings must be (2N, D) with pairs at rows (2k, 2k+1), got shape "
            f"{emb.shape}" + (" (an odd number of rows)" if emb.ndim == 2 else "")
        )
    if same.ndim != 1 or same.size != emb.shape[0] // 2:
        raise DataFormatError(
            f"{what}: issame must hold one flag per pair, {emb.shape[0] // 2} for "
            f"{emb.shape[0]} embedding rows, got shape {same.shape}"
        )
    if not np.isfinite(emb).all():
        bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
        raise DataFormatError(
            f"{what}: {bad.size} embedding row(s) hold NaN or inf (first: row {bad[0]}); "
            "the model or the extraction produced invalid values"
        )
    norms = np.linalg.norm(emb, axis=1)
    if (norms == 0).any():
        raise DataFormatError(
            f"{what}: {int((norms == 0).sum())} embedding row(s) are all zero; cosine "
            "similarity is undefined for them"
        )
    unit = emb / norms[:, None]
    scores = np.einsum("ij,ij->i", unit[0::2], unit[1::2])
    return np.clip(scores, -1.0, 1.0), same.astype(bool)


def _check_scores(scores: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    s = _as_numpy(scores).astype(np.float64, copy=False)
    y = _as_numpy(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise DataFormatError(
            f"{what}: scores and labels must be 1-D of the same length, got shapes {s.shape} "
            f"and {y.shape}"
        )
    if not np.isfinite(s).all():
        raise DataFormatError(f"{what}: {int((~np.isfinite(s)).sum())} score(s) are NaN or inf")
    return s, y.astype(bool)


def _check_weights(weights: np.ndarray | None, n: int, what: str) -> np.ndarray:
    if weights is None:
        return np.ones((1, n), dtype=np.int64)
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[1] != n:
        raise DataFormatError(
            f"{what}: weights must be (resamples, {n}) counts, got shape {w.shape}"
        )
    return w


def _result(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray | float:
    return float(values[0]) if weights is None else values


# ----------------------------------------------------------------------------- metrics


def _class_moments(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Weighted mean and population variance of positive and negative scores, per resample.

    One matrix product gives the count, sum and sum of squares of both classes.
    """
    columns = np.stack([labels, scores * labels, scores**2 * labels,
                        ~labels, scores * ~labels, scores**2 * ~labels], axis=1)
    sums = weights @ columns.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p, mean_n = sums[:, 1] / sums[:, 0], sums[:, 4] / sums[:, 3]
        var_p = np.maximum(sums[:, 2] / sums[:, 0] - mean_p**2, 0.0)
        var_n = np.maximum(sums[:, 5] / sums[:, 3] - mean_n**2, 0.0)
    return mean_p, var_p, mean_n, var_n


def mean_positive_similarity(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray | float:
    """Mean score of positive pairs (the ArcFace / ICD-Face "positive similarity")."""
    s, y = _check_scores(scores, labels, "mean_positive_similarity")
    w = _check_weights(weights, s.size, "mean_positive_similarity")
    return _result(_class_moments(s, y, w)[0], weights)


def mean_negative_similarity(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray | float:
    """Mean score of negative pairs."""
    s, y = _check_scores(scores, labels, "mean_negative_similarity")
    w = _check_weights(weights, s.size, "mean_negative_similarity")
    return _result(_class_moments(s, y, w)[2], weights)


def d_prime(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray | float:
    """Decidability index d' = |mu_p - mu_n| / sqrt((var_p + var_n) / 2) (Daugman 2004).

    Variances are population variances (divide by the count). Two point masses at different
    values give ``inf``.
    """
    s, y = _check_scores(scores, labels, "d_prime")
    mean_p, var_p, mean_n, var_n = _class_moments(s, y, _check_weights(weights, s.size,
                                                                       "d_prime"))
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.abs(mean_p - mean_n) / np.sqrt((var_p + var_n) / 2.0)
    return _result(value, weights)


@dataclass(frozen=True)
class _RankedPairs:
    """Weights in ascending score order, class masks and the tie structure of the scores.

    Attributes:
        weights: ``(R, n)`` weights permuted to ascending score order.
        positive: ``(n,)`` bool labels in that order.
        boundaries: ``0``, then the end (exclusive) of every group of tied scores; a threshold
            can only fall on a boundary. ``None`` when no scores tie (every position is one).
        group_start, group_stop: for each sorted position, the start and end (exclusive) of
            its tie group; ``None`` when no scores tie.
    """

    weights: np.ndarray
    positive: np.ndarray
    boundaries: np.ndarray | None
    group_start: np.ndarray | None
    group_stop: np.ndarray | None

    def at_boundaries(self, cumulative: np.ndarray) -> np.ndarray:
        """Columns of a padded cumulative array at the tie-group boundaries."""
        return cumulative if self.boundaries is None else cumulative[:, self.boundaries]


def _rank(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> _RankedPairs:
    ascending = bool(np.all(scores[1:] >= scores[:-1]))
    # Already sorted input (as paired_bootstrap arranges) skips an (R, n) random gather.
    order = None if ascending else np.argsort(scores, kind="stable")
    ordered = scores if order is None else scores[order]
    sorted_weights = weights if order is None else weights[:, order]
    positive = labels if order is None else labels[order]
    if np.all(ordered[1:] > ordered[:-1]):
        return _RankedPairs(sorted_weights, positive, None, None, None)
    stops = np.append(np.flatnonzero(ordered[1:] > ordered[:-1]) + 1, ordered.size)
    starts = np.concatenate([[0], stops[:-1]])
    return _RankedPairs(
        weights=sorted_weights,
        positive=positive,
        boundaries=np.concatenate([[0], stops]),
        group_start=np.repeat(starts, stops - starts),
        group_stop=np.repeat(stops, stops - starts),
    )


def _padded_cumsum(values: np.ndarray) -> np.ndarray:
    """Row-wise cumulative sums with a leading zero column: ``out[:, b] = values[:, :b].sum(1)``."""
    out = np.zeros((values.shape[0], values.shape[1] + 1), dtype=values.dtype)
    np.cumsum(values, axis=1, dtype=values.dtype, out=out[:, 1:])
    return out


def best_threshold_accuracy(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray | float:
    """Verification accuracy at the best threshold chosen on the same pairs (accept score > t).

    Optimistic by construction (the threshold sees the test pairs): use it to compare methods
    on the same pairs, and :func:`~fkdlib.evaluation.verification.evaluate_verification`'s
    10-fold accuracy to report a method. Tied scores are never split by a threshold.
    """
    s, y = _check_scores(scores, labels, "best_threshold_accuracy")
    ranked = _rank(s, y, _check_weights(weights, s.size, "best_threshold_accuracy"))
    w = ranked.weights
    # Rejecting the pairs below boundary b gets the negatives below right and loses the
    # positives below: correct(b) = num_pos + (negatives - positives) below b.
    sign = np.where(ranked.positive, -1, 1).astype(w.dtype)
    gain = ranked.at_boundaries(_padded_cumsum(w * sign)).max(axis=1)
    num_pos = w @ ranked.positive.astype(w.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (num_pos + gain) / w.sum(axis=1)
    return _result(value, weights)


def tar_at_far(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None, *, far: float
) -> np.ndarray | float:
    """True accept rate at a false accept rate (accept a pair when its score > threshold).

    Rule: with ``N`` negatives, at most ``k = floor(far * N)`` of them may score above the
    threshold. The threshold is the lowest one that satisfies this, which is the ``(k+1)``-th
    largest negative score (ties included), and the result is the fraction of positives
    scoring strictly above it; no threshold with FAR <= ``far`` accepts more positives.
    When ``far < 1 / N`` (``k = 0``) the negatives are too few to measure that FAR and the
    value is NaN, never an extrapolation.
    """
    if not 0 < far < 1:
        raise ConfigError(f"tar_at_far: far must be in (0, 1), got {far!r}")
    s, y = _check_scores(scores, labels, "tar_at_far")
    ranked = _rank(s, y, _check_weights(weights, s.size, "tar_at_far"))
    w = ranked.weights
    cum_neg = _padded_cumsum(w * ~ranked.positive)
    cum_pos = _padded_cumsum(w * ranked.positive)
    num_pos, num_neg = cum_pos[:, -1], cum_neg[:, -1]
    allowed = np.floor(far * num_neg + _COUNT_EPS)
    # Accepting everything at or above boundary b admits num_neg - cum_neg[b] negatives; the
    # lowest admissible boundary is the first with cum_neg[b] >= num_neg - allowed. The last
    # boundary has every negative below it, so one always exists.
    first_ok = (ranked.at_boundaries(cum_neg) < (num_neg - allowed)[:, None]).sum(axis=1)
    boundary = first_ok if ranked.boundaries is None else ranked.boundaries[first_ok]
    accepted = num_pos - np.take_along_axis(cum_pos, boundary[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where((allowed >= 1) & (num_pos > 0), accepted / num_pos, np.nan)
    return _result(value, weights)


def roc_auc(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray | float:
    """Area under the ROC curve: P(positive score > negative score) + 0.5 P(tie).

    The Mann-Whitney form, equal to :func:`sklearn.metrics.roc_auc_score` (with
    ``sample_weight=weights[r]`` for a resample).
    """
    s, y = _check_scores(scores, labels, "roc_auc")
    ranked = _rank(s, y, _check_weights(weights, s.size, "roc_auc"))
    w = ranked.weights
    cum_neg = _padded_cumsum(w * ~ranked.positive)
    pos_w = w * ranked.positive
    if ranked.boundaries is None:
        # Each positive beats the negatives below it; without ties there is nothing to halve.
        twice_wins = 2 * np.einsum("ij,ij->i", pos_w, cum_neg[:, :-1], dtype=np.float64)
    else:
        below = cum_neg[:, ranked.group_start]
        tied = cum_neg[:, ranked.group_stop] - below
        twice_wins = np.einsum("ij,ij->i", pos_w, 2 * below + tied, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = twice_wins / (2.0 * pos_w.sum(axis=1) * cum_neg[:, -1])
    return _result(value, weights)


# ----------------------------------------------------------------------------- statistics


def similarity_stats(
    positive: np.ndarray,
    negative: np.ndarray,
    bins: int = 100,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> dict[str, float]:
    """Summary of positive and negative similarity distributions.

    Returns ``mean_positive``, ``std_positive``, ``mean_negative``, ``std_negative``
    (population std), ``gap`` = mu_p - mu_n, ``d_prime`` = |mu_p - mu_n| /
    sqrt((var_p + var_n) / 2), ``overlap`` and the counts.

    ``overlap`` is the overlap coefficient of the two densities, the integral of
    min(f_p, f_n): both samples are binned on the same ``bins`` equal-width bins spanning
    ``value_range`` (default: 100 bins of width 0.02 on the cosine range [-1, 1]) and
    ``overlap = sum_b min(p_b, n_b)`` with ``p_b``, ``n_b`` the fraction of each sample in bin b.
    It is 1 for identical histograms and 0 for samples in disjoint bins. A fixed grid keeps the
    value comparable between methods.

    Raises:
        DataFormatError: a sample is empty, not finite, or falls outside ``value_range``.
    """
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.asarray(negative, dtype=np.float64).ravel()
    low, high = float(value_range[0]), float(value_range[1])
    if not (isinstance(bins, int) and bins >= 1 and low < high):
        raise ConfigError(f"similarity_stats: need bins >= 1 and a range low < high, got "
                          f"bins={bins!r}, value_range={value_range!r}")
    for name, sample in (("positive", pos), ("negative", neg)):
        if sample.size == 0 or not np.isfinite(sample).all():
            raise DataFormatError(f"similarity_stats: the {name} sample is empty or not finite")
        if sample.min() < low - 1e-6 or sample.max() > high + 1e-6:
            raise DataFormatError(
                f"similarity_stats: {name} values span [{sample.min():.4g}, {sample.max():.4g}], "
                f"outside value_range {value_range}; pass a value_range that covers them"
            )
    # Rounding can put a cosine a hair beyond +-1; np.histogram would silently drop it.
    pos, neg = np.clip(pos, low, high), np.clip(neg, low, high)
    pos_hist, _ = np.histogram(pos, bins=bins, range=(low, high))
    neg_hist, _ = np.histogram(neg, bins=bins, range=(low, high))
    overlap = np.minimum(pos_hist / pos.size, neg_hist / neg.size).sum()
    labels = np.concatenate([np.ones(pos.size, bool), np.zeros(neg.size, bool)])
    return {
        "mean_positive": float(pos.mean()),
        "std_positive": float(pos.std()),
        "mean_negative": float(neg.mean()),
        "std_negative": float(neg.std()),
        "gap": float(pos.mean() - neg.mean()),
        "d_prime": float(d_prime(np.concatenate([pos, neg]), labels)),
        "overlap": float(overlap),
        "num_positive": int(pos.size),
        "num_negative": int(neg.size),
    }


# ----------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class BootstrapResult:
    """A bootstrap comparison of two methods, effect = metric(A) - metric(B).

    Attributes:
        effect: the difference on the full sample (all pairs, or the mean over seeds).
        ci_low, ci_high: percentile confidence interval of the bootstrap differences.
        p_value: two-sided: ``min(1, 2 * q)`` where ``q`` is the fraction of bootstrap
            differences on the other side of 0 from ``effect`` (0 itself counted as the other
            side); 1 when ``effect`` is 0. Its resolution is ``2 / n_valid``: 0 means below it.
        n_boot: resamples drawn.
        n_valid: resamples where both metrics were defined (e.g. TAR at a FAR the resample's
            negatives can measure); the interval and p-value use these.
        ci: confidence level of the interval.
        se: bootstrap standard error, the standard deviation (ddof=1) of the valid bootstrap
            differences; NaN when fewer than 2 are valid. Feed it to
            :func:`~fkdlib.evaluation.uncertainty.minimum_detectable_effect` for power.
    """

    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    n_boot: int
    n_valid: int
    ci: float
    se: float = float("nan")

    @property
    def excludes_zero(self) -> bool:
        """True when the confidence interval lies entirely on one side of 0."""
        return bool(self.ci_low > 0 or self.ci_high < 0)

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict for tables and JSON."""
        return asdict(self)


def _check_bootstrap_args(n_boot: int, ci: float) -> None:
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError(f"bootstrap: n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < ci < 1:
        raise ConfigError(f"bootstrap: ci must be in (0, 1), got {ci!r}")


def _summarise(effect: float, differences: np.ndarray, n_boot: int, ci: float) -> BootstrapResult:
    valid = differences[np.isfinite(differences)]
    se = float(np.std(valid, ddof=1)) if valid.size >= 2 else float("nan")
    if not math.isfinite(effect) or valid.size == 0:
        nan = float("nan")
        return BootstrapResult(float(effect), nan, nan, nan, n_boot, int(valid.size), ci, se)
    low, high = np.quantile(valid, [(1 - ci) / 2, (1 + ci) / 2])
    if effect > 0:
        other_side = np.mean(valid <= 0)
    elif effect < 0:
        other_side = np.mean(valid >= 0)
    else:
        other_side = 0.5
    return BootstrapResult(
        effect=float(effect),
        ci_low=float(low),
        ci_high=float(high),
        p_value=float(min(1.0, 2 * other_side)),
        n_boot=int(n_boot),
        n_valid=int(valid.size),
        ci=float(ci),
        se=se,
    )


def paired_bootstrap(
    metric: Metric,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    labels: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> BootstrapResult:
    """Paired bootstrap of ``metric(A) - metric(B)`` over the same verification pairs.

    Each resample draws ``n`` pair indices with replacement; both methods are scored on the
    same draw, so the pair-to-pair variation they share cancels in the difference. See the
    module docstring for the ``metric`` contract and :class:`BootstrapResult` for the
    interval (percentile) and p-value rules.

    The pairs are treated as independent and each method as fixed: when many pairs share
    identities, or the methods are single training runs, the interval is too narrow; use
    :func:`~fkdlib.evaluation.uncertainty.hierarchical_bootstrap` to resample identities and
    training seeds.

    Args:
        metric: e.g. :func:`roc_auc` or ``functools.partial(tar_at_far, far=1e-3)`` (the
            latter drawn hierarchically when the negatives are many, see the module docstring).
        scores_a, scores_b: ``(n,)`` similarity of each pair under methods A and B.
        labels: ``(n,)`` bool, True for same-identity pairs (shared by both methods).
        n_boot: number of resamples.
        seed: seed of the resampling.
        ci: confidence level.
    """
    _check_bootstrap_args(n_boot, ci)
    a, y = _check_scores(scores_a, labels, "paired_bootstrap (scores_a)")
    b, _ = _check_scores(scores_b, labels, "paired_bootstrap (scores_b)")
    if a.size != b.size:
        raise DataFormatError(f"paired_bootstrap: the methods score {a.size} and {b.size} "
                              "pairs; a paired comparison needs the same pairs")
    far = _bound_far(metric)
    if far is not None:
        tail = _tar_tail(a, b, y, far)
        if tail is not None:
            effect = float(metric(a, y)) - float(metric(b, y))
            differences = _tar_tail_bootstrap(a, b, y, far, tail, n_boot,
                                              np.random.default_rng(seed))
            return _summarise(effect, differences, n_boot, ci)
    # Resampling with replacement does not depend on how the pairs are numbered, so number
    # them in A's score order: ranking metrics then need no per-resample reordering for A.
    order = np.argsort(a, kind="stable")
    a, b, y = a[order], b[order], y[order]
    n = y.size
    effect = float(metric(a, y)) - float(metric(b, y))
    rng = np.random.default_rng(seed)
    rows_per_block = max(1, _BLOCK_ELEMENTS // n)
    differences = []
    for start in range(0, n_boot, rows_per_block):
        rows = min(rows_per_block, n_boot - start)
        counts = _uniform_counts(rng, np.full(rows, n), n)
        # Counts never exceed n, so 32 bits halve the memory traffic of every metric.
        counts = counts.astype(np.int32 if n < 2**31 else np.int64)
        differences.append(np.asarray(metric(a, y, counts)) - np.asarray(metric(b, y, counts)))
    return _summarise(effect, np.concatenate(differences), n_boot, ci)


def _uniform_counts(rng: np.random.Generator, draws: np.ndarray, size: int) -> np.ndarray:
    """(rows, size) counts: row r spreads ``draws[r]`` uniform draws over ``size`` items.

    All rows' draws come from one call; row r's, offset by r * size, count into row r of a
    flat (rows x size) histogram.
    """
    rows = len(draws)
    flat = rng.integers(0, size, size=int(np.sum(draws)))
    flat += np.repeat(np.arange(rows) * size, draws)
    return np.bincount(flat, minlength=rows * size).reshape(rows, size)


def _bound_far(metric: Metric) -> float | None:
    """``far`` when ``metric`` is exactly ``functools.partial(tar_at_far, far=...)``."""
    if (isinstance(metric, functools.partial) and metric.func is tar_at_far
            and not metric.args and set(metric.keywords) == {"far"}):
        return float(metric.keywords["far"])
    return None


def _top(scores: np.ndarray, size: int) -> np.ndarray:
    """Indices of the ``size`` highest scores, highest first, extended through ties with the
    lowest of them, so every score left out is strictly lower than every score kept."""
    order = np.argsort(-scores, kind="stable")
    cut = scores[order[size - 1]]
    return order[:size + int(np.count_nonzero(scores[order[size:]] == cut))]


@dataclass
class _Tail:
    """The negatives a TAR@FAR resample needs counts for.

    Attributes:
        pairs: pair indices of the union of both methods' top tails.
        own_a, own_b: positions in ``pairs`` of each method's own top tail, highest score
            first; every other negative scores strictly lower under that method.
    """

    pairs: np.ndarray
    own_a: np.ndarray
    own_b: np.ndarray


def _tar_tail(a: np.ndarray, b: np.ndarray, y: np.ndarray, far: float) -> _Tail | None:
    """Both methods' top tails of negatives; None when they are not much fewer than all
    negatives (the plain resample is then as cheap)."""
    negatives = np.flatnonzero(~y)
    size = TAIL_FACTOR * (math.floor(far * negatives.size + _COUNT_EPS) + 1) + TAIL_EXTRA
    if 4 * size > negatives.size:
        return None
    top_a = negatives[_top(a[negatives], size)]
    top_b = negatives[_top(b[negatives], size)]
    pairs = np.union1d(top_a, top_b)
    if 2 * pairs.size > negatives.size:
        return None
    return _Tail(pairs, np.searchsorted(pairs, top_a), np.searchsorted(pairs, top_b))


def _tail_tar(scores: np.ndarray, positives: np.ndarray, tail: np.ndarray, own: np.ndarray,
              positive_counts: np.ndarray, tail_counts: np.ndarray, allowed: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """TAR of each resample from the counts of the positives and of the tail negatives.

    The threshold is the (allowed + 1)-th highest resampled negative. All negatives outside
    this method's own tail ``own`` score strictly below it, so the threshold lies in it when
    the tail holds at least allowed + 1 draws; the other resamples come back unresolved (NaN
    here, True in the second array).
    """
    cumulative = np.cumsum(tail_counts[:, own], axis=1)
    position = (cumulative < (allowed + 1)[:, None]).sum(axis=1)
    unresolved = position >= own.size
    threshold = scores[tail[own]][np.minimum(position, own.size - 1)]
    order = np.argsort(scores[positives], kind="stable")
    below = _padded_cumsum(positive_counts[:, order])
    index = np.searchsorted(scores[positives][order], threshold, side="right")
    num_pos = below[:, -1]
    accepted = num_pos - np.take_along_axis(below, index[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where((allowed >= 1) & (num_pos > 0) & ~unresolved, accepted / num_pos,
                         np.nan)
    return value, unresolved


def _completed_tar_difference(a: np.ndarray, b: np.ndarray, y: np.ndarray, far: float,
                              positives: np.ndarray, tail: np.ndarray, pooled: np.ndarray,
                              positive_counts: np.ndarray, tail_counts: np.ndarray,
                              pooled_counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """TAR(A) - TAR(B) of resamples whose pooled draws are first spread over their negatives."""
    rows = pooled_counts.size
    full = np.zeros((rows, y.size), dtype=np.int32)
    full[:, positives] = positive_counts
    full[:, tail] = tail_counts
    full[:, pooled] = _uniform_counts(rng, pooled_counts, pooled.size)
    return tar_at_far(a, y, full, far=far) - tar_at_far(b, y, full, far=far)


def _tar_tail_bootstrap(a: np.ndarray, b: np.ndarray, y: np.ndarray, far: float, tail: _Tail,
                        n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """TAR@FAR(A) - TAR@FAR(B) over ``n_boot`` resamples of the pairs, drawn hierarchically.

    A resample of ``n`` pairs with replacement is a multinomial over the pairs. Drawn as the
    number of draws that hit the positives and tail negatives (binomial), spread uniformly
    over them, the rest pooled, it is the same multinomial; the pooled draws are spread over
    their negatives (uniformly, the exact conditional law) only for the rare resample whose
    threshold falls outside a tail.
    """
    n = y.size
    positives = np.flatnonzero(y)
    pooled = np.setdiff1d(np.flatnonzero(~y), tail.pairs, assume_unique=True)
    individual = positives.size + tail.pairs.size
    rows_per_block = max(1, _BLOCK_ELEMENTS // individual)
    differences = []
    for start in range(0, n_boot, rows_per_block):
        rows = min(rows_per_block, n_boot - start)
        # How many of the n draws hit an individually counted pair, then which ones.
        hits = rng.binomial(n, individual / n, size=rows)
        counts = _uniform_counts(rng, hits, individual)
        pooled_counts = n - hits
        positive_counts = counts[:, :positives.size]
        tail_counts = counts[:, positives.size:]
        num_neg = tail_counts.sum(axis=1) + pooled_counts
        allowed = np.floor(far * num_neg + _COUNT_EPS)
        tar_a, open_a = _tail_tar(a, positives, tail.pairs, tail.own_a, positive_counts,
                                  tail_counts, allowed)
        tar_b, open_b = _tail_tar(b, positives, tail.pairs, tail.own_b, positive_counts,
                                  tail_counts, allowed)
        difference = tar_a - tar_b
        unresolved = np.flatnonzero(open_a | open_b)
        rows_completed_at_once = max(1, _BLOCK_ELEMENTS // n)
        for first in range(0, unresolved.size, rows_completed_at_once):
            part = unresolved[first:first + rows_completed_at_once]
            difference[part] = _completed_tar_difference(
                a, b, y, far, positives, tail.pairs, pooled, positive_counts[part],
                tail_counts[part], pooled_counts[part], rng)
        differences.append(difference)
    return np.concatenate(differences)


def seed_bootstrap(
    values_a: Sequence[float],
    values_b: Sequence[float],
    paired: bool = True,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> BootstrapResult:
    """Bootstrap over training seeds of ``mean(A) - mean(B)``.

    Args:
        values_a, values_b: one metric value per training seed for each method.
        paired: the two lists come from the same seeds in the same order (resample seed
            indices jointly); otherwise each list is resampled on its own.

    With a handful of seeds the interval is coarse (3 seeds allow only 10 distinct resampled
    means): read it as a sanity check, not a test of fine differences.
    """
    _check_bootstrap_args(n_boot, ci)
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or a.size < 2 or b.size < 2:
        raise ConfigError(
            f"seed_bootstrap: need at least 2 seeds per method, got {a.size} and {b.size}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataFormatError("seed_bootstrap: per-seed values must be finite")
    if paired and a.size != b.size:
        raise ConfigError(
            f"seed_bootstrap: paired=True needs the same seeds for both methods, got {a.size} "
            f"and {b.size} values; pass paired=False for unrelated seeds"
        )
    rng = np.random.default_rng(seed)
    if paired:
        differences = (a - b)[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    else:
        differences = (a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
                       - b[rng.integers(0, b.size, size=(n_boot, b.size))].mean(axis=1))
    return _summarise(float(a.mean() - b.mean()), differences, n_boot, ci)
