"""Evaluation protocols on test identities: verification pairs, all-pairs lists, galleries.

Every protocol is a pure function of ``(metadata, sizes, seed)``. ``metadata`` is a pandas
DataFrame with one row per sample in dataset order, so a *row* below always means a row
**position** (``0 .. len(metadata) - 1``, the sample index in the dataset), never the
DataFrame's index labels. Only the columns a protocol needs are required, so the same
functions serve SynthFace and real datasets (for example a folder dataset with an
``identity`` column only):

=========================  ===================================================
protocol                   columns
=========================  ===================================================
:func:`lfw_pairs`          ``identity``
:func:`cfp_fp_pairs`       ``identity``, ``yaw``
:func:`agedb_pairs`        ``identity``, ``age``
:func:`ijb_pairs`          ``identity``
:func:`ijb_template_pairs` ``identity``
identification split       ``identity`` (+ ``global_identity`` for the leak check)
=========================  ===================================================

Pairs follow the insightface ``.bin`` convention: a flat array of ``2N`` rows where pair ``k``
is ``(rows[2k], rows[2k + 1])``. The 10-fold protocols put fold ``f`` in the contiguous block
``f`` of equal size, positives first, like LFW's ``pairs.txt``; so scikit-learn's
``KFold(n_splits=folds, shuffle=False)`` over pair indices - the insightface evaluation -
reproduces exactly the protocol's identity-disjoint folds.

A *template* protocol (:func:`ijb_template_pairs`, as IJB-B/C 1:1) compares sets of images:
its :class:`Templates` lists which rows form each template, and its pair ``rows`` index
templates instead of images. :meth:`Templates.pool` turns image embeddings into template
embeddings (mean of the L2-normalised image embeddings, renormalised), which are then scored
like image embeddings.

When the requested sizes cannot be met the functions raise :class:`~fkdlib.errors.ConfigError`
saying how many pairs were needed and found and what to change; they never return fewer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fkdlib.errors import ConfigError, DataFormatError

# Rows of the first pool examined at once when counting and drawing negative pairs; bounds
# the boolean candidate matrix to about this many rows times the size of the second pool.
_NEGATIVE_CHUNK_ROWS = 512
# An all-pairs list above this many pairs (16 bytes each) needs ``max_negatives``.
_MAX_ALL_PAIRS = 50_000_000

PairConstraint = Callable[[np.ndarray, np.ndarray], np.ndarray]


# eq=False: fields hold arrays, whose == is elementwise, not a truth value.
@dataclass(frozen=True, eq=False)
class PairProtocol:
    """A verification pair list in insightface order.

    Attributes:
        name: protocol name, e.g. ``"lfw"``, ``"cfp_fp"``, ``"agedb"``, ``"ijb"``.
        rows: ``(2N,)`` int64 row positions into the metadata; pair ``k`` is
            ``(rows[2k], rows[2k + 1])``.
        issame: ``(N,)`` bool, True for a positive (same identity) pair.
        labels: ``(2N,)`` identity labels of ``rows`` (the metadata's ``identity``).
        fold: ``(N,)`` int64 fold of each pair (identity-disjoint, contiguous, equal-size
            blocks), or ``None`` for all-pairs lists, which have no folds.
        templates: ``None`` for image pairs; for a template protocol the templates, and then
            ``rows`` index templates (``0 .. templates.num_templates - 1``), not images.
    """

    name: str
    rows: np.ndarray
    issame: np.ndarray
    labels: np.ndarray
    fold: np.ndarray | None
    templates: Templates | None = None

    @property
    def num_pairs(self) -> int:
        """Number of pairs N."""
        return int(self.issame.size)

    @property
    def num_positive(self) -> int:
        """Number of same-identity pairs."""
        return int(self.issame.sum())

    @property
    def num_negative(self) -> int:
        """Number of different-identity pairs."""
        return self.num_pairs - self.num_positive

    @property
    def min_far(self) -> float:
        """Lowest false accept rate the negatives can measure: ``1 / num_negative``."""
        return 1.0 / self.num_negative if self.num_negative else float("nan")

    @property
    def first(self) -> np.ndarray:
        """First row of every pair, ``rows[0::2]``."""
        return self.rows[0::2]

    @property
    def second(self) -> np.ndarray:
        """Second row of every pair, ``rows[1::2]``."""
        return self.rows[1::2]

    @property
    def num_templates(self) -> int | None:
        """Number of templates of a template protocol, ``None`` for image pairs."""
        return None if self.templates is None else self.templates.num_templates

    @property
    def num_identities(self) -> int:
        """Distinct identities appearing in the list (``labels``)."""
        return int(np.unique(self.labels).size)


# eq=False: fields hold arrays, whose == is elementwise, not a truth value.
@dataclass(frozen=True, eq=False)
class Templates:
    """Disjoint sets of images of one identity each, in CSR form (IJB "templates").

    Template ``t`` is the images ``rows[offsets[t]:offsets[t + 1]]`` (row positions into the
    metadata, ascending) of identity ``identity[t]``.

    Attributes:
        rows: ``(R,)`` int64 image rows of every template, template after template.
        offsets: ``(T + 1,)`` int64 start of each template in ``rows``; ``offsets[0] == 0``,
            ``offsets[-1] == R``, strictly increasing (no template is empty).
        identity: ``(T,)`` identity label of each template.
    """

    rows: np.ndarray
    offsets: np.ndarray
    identity: np.ndarray

    @property
    def num_templates(self) -> int:
        """Number of templates T."""
        return int(self.identity.size)

    @property
    def sizes(self) -> np.ndarray:
        """``(T,)`` images per template."""
        return np.diff(self.offsets)

    def template_rows(self, template: int) -> np.ndarray:
        """Image rows of one template."""
        return self.rows[self.offsets[template]:self.offsets[template + 1]]

    def pool(self, embeddings: np.ndarray, eps: float = 1e-12) -> np.ndarray:
        """Template embeddings ``(T, D)``: the mean of each template's L2-normalised image
        embeddings, L2-normalised again (the usual IJB-B/C template feature, e.g. insightface's
        ``IJB_11`` evaluation without its detector-score weights).

        ``embeddings`` is ``(num_images, D)``, indexed by metadata row. A zero vector stays zero
        (``eps`` guards the divisions).
        """
        emb = np.asarray(embeddings, dtype=np.float64)
        if emb.ndim != 2:
            raise ConfigError(f"Templates.pool: embeddings must be 2-D, got shape {emb.shape}")
        if self.rows.size and self.rows.max() >= emb.shape[0]:
            raise ConfigError(
                f"Templates.pool: templates use row {int(self.rows.max())} but only "
                f"{emb.shape[0]} embeddings were given"
            )
        images = emb[self.rows]
        images = images / np.maximum(np.linalg.norm(images, axis=1, keepdims=True), eps)
        sums = np.add.reduceat(images, self.offsets[:-1], axis=0)
        means = sums / self.sizes[:, None]
        return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), eps)


# eq=False: fields hold arrays, whose == is elementwise, not a truth value.
@dataclass(frozen=True, eq=False)
class IdentificationSplit:
    """A MegaFace-like closed-set identification split (rank-1 / CMC).

    Attributes:
        gallery_rows: row positions (into ``meta``) of the enrolled images.
        gallery_labels: identity of each gallery row.
        probe_rows: row positions (into ``meta``) of the queries: every image not enrolled.
        probe_labels: identity of each probe row (always present in the gallery).
        distractor_rows: row positions into ``distractor_meta`` (empty without it); they join
            the gallery as identities no probe can match.
        distractor_labels: identity of each distractor row, kept for inspection only.
    """

    gallery_rows: np.ndarray
    gallery_labels: np.ndarray
    probe_rows: np.ndarray
    probe_labels: np.ndarray
    distractor_rows: np.ndarray
    distractor_labels: np.ndarray


@dataclass(frozen=True)
class _PairRule:
    """Which rows may form a pair: first-element and second-element pools plus a constraint."""

    description: str
    first_ok: np.ndarray
    second_ok: np.ndarray
    symmetric: bool
    constraint: PairConstraint | None
    remedy: str


# ----------------------------------------------------------------------------- validation


def require_columns(meta: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Check that ``meta`` is a DataFrame holding ``columns`` without missing values.

    Raises:
        DataFormatError: naming the missing column(s) or the column with missing values.
    """
    if not isinstance(meta, pd.DataFrame):
        raise DataFormatError(
            f"{what}: metadata must be a pandas DataFrame (one row per sample), "
            f"got {type(meta).__name__}"
        )
    missing = [column for column in columns if column not in meta.columns]
    if missing:
        raise DataFormatError(
            f"{what}: metadata lacks column(s) {missing}; it has {list(meta.columns)}. "
            f"Add them to the metadata (required: {list(columns)})"
        )
    for column in columns:
        holes = int(meta[column].isna().sum())
        if holes:
            raise DataFormatError(
                f"{what}: column {column!r} has {holes} missing value(s); "
                "fill or drop those rows first"
            )


def _identity_column(first: pd.DataFrame, second: pd.DataFrame) -> str:
    # ``identity`` may be a per-split label (0..K-1 in every split); ``global_identity`` is
    # unique across splits, so it is the only safe key when both frames have it.
    if "global_identity" in first.columns and "global_identity" in second.columns:
        return "global_identity"
    return "identity"


def check_identity_disjoint(
    first: pd.DataFrame,
    second: pd.DataFrame,
    column: str | None = None,
    names: tuple[str, str] = ("train", "test"),
) -> None:
    """Raise if any identity appears in both metadata frames (an identity leak).

    Args:
        first, second: metadata frames, e.g. training and test sets.
        column: identity column to compare; by default ``global_identity`` when both frames
            have it (split-local ``identity`` labels may coincide by construction) and
            ``identity`` otherwise.
        names: how the two frames are called in the error message.

    Raises:
        DataFormatError: listing the overlapping identities (up to 20) and their count.
    """
    key = column or _identity_column(first, second)
    require_columns(first, [key], f"identity check ({names[0]})")
    require_columns(second, [key], f"identity check ({names[1]})")
    shared = np.intersect1d(first[key].to_numpy(), second[key].to_numpy())
    if shared.size:
        shown = ", ".join(str(value) for value in shared[:20])
        more = f" and {shared.size - 20} more" if shared.size > 20 else ""
        raise DataFormatError(
            f"identity leak: {shared.size} {key} value(s) appear in both {names[0]} and "
            f"{names[1]}: {shown}{more}. Build the two sets from disjoint identities"
        )


def _check_fold_sizes(folds: int, pairs_per_fold: int, num_identities: int, what: str) -> None:
    if not isinstance(folds, (int, np.integer)) or folds < 1:
        raise ConfigError(f"{what}: folds must be a positive integer, got {folds!r}")
    if (
        not isinstance(pairs_per_fold, (int, np.integer))
        or pairs_per_fold < 2
        or pairs_per_fold % 2
    ):
        raise ConfigError(
            f"{what}: pairs_per_fold must be an even integer >= 2 (half positive, half "
            f"negative), got {pairs_per_fold!r}"
        )
    if num_identities < 2 * folds:
        raise ConfigError(
            f"{what}: {folds} identity-disjoint folds need at least {2 * folds} identities "
            f"(two per fold, for negative pairs), found {num_identities}; "
            "use fewer folds or more test identities"
        )


# ----------------------------------------------------------------------------- pair engine


def _group_rows(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Unique identities (sorted) and, for each, its row positions in ascending order."""
    identities, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=identities.size))[:-1]
    return identities, np.split(order, bounds)


def _candidate_mask(
    first: np.ndarray, second: np.ndarray, rule: _PairRule, labels: np.ndarray, same: bool
) -> np.ndarray:
    """Boolean ``(len(first), len(second))`` matrix of admissible pairs under ``rule``."""
    a, b = first[:, None], second[None, :]
    mask = (labels[a] == labels[b]) if same else (labels[a] != labels[b])
    if rule.symmetric:
        mask &= a < b  # an unordered pair is listed once, never a row with itself
    if rule.constraint is not None:
        mask &= rule.constraint(a, b)
    return mask


def _positive_candidates(
    rows: np.ndarray, rule: _PairRule, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All admissible same-identity pairs among one identity's ``rows``."""
    first = rows[rule.first_ok[rows]]
    second = rows[rule.second_ok[rows]]
    i, j = np.nonzero(_candidate_mask(first, second, rule, labels, same=True))
    return first[i], second[j]


def _round_robin(
    candidates: list[tuple[np.ndarray, np.ndarray]], count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` pairs spreading them evenly over identities.

    Each identity's candidates are shuffled; round ``r`` takes the ``r``-th candidate of every
    identity that has one (identities in a random order). Uniform sampling over all candidate
    pairs would instead let an identity with many images supply most positives (in LFW,
    George W. Bush's 530 images alone give C(530, 2) = 140,185 possible positive pairs).
    """
    firsts, seconds, rounds, ranks = [], [], [], []
    identity_rank = rng.permutation(len(candidates))
    for position, (first, second) in enumerate(candidates):
        shuffle = rng.permutation(first.size)
        firsts.append(first[shuffle])
        seconds.append(second[shuffle])
        rounds.append(np.arange(first.size))
        ranks.append(np.full(first.size, identity_rank[position]))
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    take = np.lexsort((np.concatenate(ranks), np.concatenate(rounds)))[:count]
    return first[take], second[take]


def _sample_negatives(
    rows: np.ndarray, rule: _PairRule, labels: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[int, np.ndarray, np.ndarray]:
    """Count the admissible different-identity pairs among ``rows`` and draw ``count`` of them
    uniformly without replacement.

    Two passes over chunks of the first pool keep memory bounded whatever the pool size: the
    first counts, the second picks the pairs whose rank among all admissible pairs was drawn.
    Returns ``(available, first, second)``; fewer than ``count`` available returns empty arrays.
    """
    first_pool = rows[rule.first_ok[rows]]
    second_pool = rows[rule.second_ok[rows]]
    starts = range(0, first_pool.size, _NEGATIVE_CHUNK_ROWS)
    chunk_counts = [
        int(_candidate_mask(first_pool[s : s + _NEGATIVE_CHUNK_ROWS], second_pool, rule,
                            labels, same=False).sum())
        for s in starts
    ]
    available = int(sum(chunk_counts))
    if available < count:
        return available, np.empty(0, np.int64), np.empty(0, np.int64)
    chosen = np.sort(rng.choice(available, size=count, replace=False))
    firsts, seconds = [], []
    offset = 0
    for start, chunk_count in zip(starts, chunk_counts):
        lo, hi = np.searchsorted(chosen, [offset, offset + chunk_count])
        if hi > lo:
            chunk = first_pool[start : start + _NEGATIVE_CHUNK_ROWS]
            flat = np.flatnonzero(_candidate_mask(chunk, second_pool, rule, labels, same=False))
            picked = flat[chosen[lo:hi] - offset]
            firsts.append(chunk[picked // second_pool.size])
            seconds.append(second_pool[picked % second_pool.size])
        offset += chunk_count
    return available, np.concatenate(firsts), np.concatenate(seconds)


def _serpentine_folds(capacity: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Assign identities to folds, balancing their number of candidate positive pairs.

    Identities are ranked by capacity (ties in random order) and dealt like a snake draft
    (0..F-1, F-1..0, ...): every fold gets the same number of identities (within one) and
    about the same capacity, so a fold runs out of positives only when the data really is short.
    """
    order = rng.permutation(capacity.size)
    order = order[np.argsort(-capacity[order], kind="stable")]
    position = np.arange(capacity.size)
    lap, seat = np.divmod(position, folds)
    dealt = np.where(lap % 2 == 0, seat, folds - 1 - seat)
    fold_of = np.empty(capacity.size, np.int64)
    fold_of[order] = dealt
    return fold_of


def _fold_protocol(
    name: str,
    meta: pd.DataFrame,
    rule: _PairRule,
    folds: int,
    pairs_per_fold: int,
    seed: int,
) -> PairProtocol:
    """Build an identity-disjoint, balanced, k-fold pair list under ``rule`` (see module doc)."""
    labels = meta["identity"].to_numpy()
    identities, groups = _group_rows(labels)
    _check_fold_sizes(folds, pairs_per_fold, identities.size, name)
    rng = np.random.default_rng(seed)
    half = pairs_per_fold // 2

    candidates = [_positive_candidates(rows, rule, labels) for rows in groups]
    capacity = np.array([first.size for first, _ in candidates])
    fold_of = _serpentine_folds(capacity, folds, rng)

    rows_out, same_out = [], []
    for fold in range(folds):
        members = np.flatnonzero(fold_of == fold)
        fold_candidates = [candidates[i] for i in members]
        found = int(capacity[members].sum())
        if found < half:
            raise ConfigError(
                f"{name}: fold {fold} needs {half} positive pairs ({rule.description}, same "
                f"identity) but its {members.size} identities offer only {found} (all "
                f"{identities.size} identities offer {int(capacity.sum())}; {folds} folds x "
                f"{half} = {folds * half} are needed). Lower pairs_per_fold (now "
                f"{pairs_per_fold}), use fewer folds, or {rule.remedy}"
            )
        pos_first, pos_second = _round_robin(fold_candidates, half, rng)
        fold_rows = np.sort(np.concatenate([groups[i] for i in members]))
        available, neg_first, neg_second = _sample_negatives(fold_rows, rule, labels, half, rng)
        if available < half:
            raise ConfigError(
                f"{name}: fold {fold} needs {half} negative pairs ({rule.description}, "
                f"different identities) but its {members.size} identities offer only "
                f"{available}. Lower pairs_per_fold (now {pairs_per_fold}), use fewer folds, "
                f"or {rule.remedy}"
            )
        pos_order, neg_order = rng.permutation(half), rng.permutation(half)
        first = np.concatenate([pos_first[pos_order], neg_first[neg_order]])
        second = np.concatenate([pos_second[pos_order], neg_second[neg_order]])
        rows_out.append(np.stack([first, second], axis=1).reshape(-1))
        same_out.append(np.repeat([True, False], half))

    rows = np.concatenate(rows_out).astype(np.int64)
    return PairProtocol(
        name=name,
        rows=rows,
        issame=np.concatenate(same_out),
        labels=labels[rows],
        fold=np.repeat(np.arange(folds, dtype=np.int64), pairs_per_fold),
    )


# ----------------------------------------------------------------------------- protocols


def lfw_pairs(
    meta: pd.DataFrame, folds: int = 10, pairs_per_fold: int = 600, seed: int = 0
) -> PairProtocol:
    """LFW-like verification pairs (Huang et al. 2007, "View 2").

    LFW's ``pairs.txt`` holds 10 identity-disjoint folds of 300 positive and 300 negative pairs.
    Here identities are dealt to ``folds`` folds (balancing their possible positive pairs);
    each fold gets ``pairs_per_fold / 2`` positive pairs spread evenly over its identities and
    as many negative pairs drawn uniformly from pairs of different identities in the fold.
    No pair is repeated. Requires the ``identity`` column.

    Args:
        meta: sample metadata (see module doc).
        folds: number of identity-disjoint folds (LFW: 10).
        pairs_per_fold: pairs per fold, half positive (LFW: 600).
        seed: seed of every random choice; the result is a pure function of the arguments.

    Raises:
        ConfigError: a fold cannot get enough positive or negative pairs.
        DataFormatError: a required column is missing.
    """
    require_columns(meta, ["identity"], "lfw_pairs")
    everyone = np.ones(len(meta), dtype=bool)
    rule = _PairRule(
        description="any two images",
        first_ok=everyone,
        second_ok=everyone,
        symmetric=True,
        constraint=None,
        remedy="add images per identity (at least 2) or identities",
    )
    return _fold_protocol("lfw", meta, rule, folds, pairs_per_fold, seed)


def cfp_fp_pairs(
    meta: pd.DataFrame,
    folds: int = 10,
    pairs_per_fold: int = 700,
    frontal_max_yaw: float = 15.0,
    profile_min_yaw: float = 60.0,
    seed: int = 0,
) -> PairProtocol:
    """CFP-FP-like frontal-to-profile pairs (Sengupta et al. 2016, CFP "FP" protocol).

    CFP-FP has 10 folds of 350 positive and 350 negative pairs, each pair one frontal and one
    profile image. Here a frontal image has ``|yaw| <= frontal_max_yaw`` and a profile image
    ``|yaw| >= profile_min_yaw`` (degrees); every pair lists the frontal image first. Folds are
    identity-disjoint and built as in :func:`lfw_pairs`. Requires ``identity`` and ``yaw``.

    Raises:
        ConfigError: the thresholds are inconsistent, or a fold cannot get enough pairs (too few
            profile images: raise the images per identity or the pose difficulty).
        DataFormatError: a required column is missing.
    """
    require_columns(meta, ["identity", "yaw"], "cfp_fp_pairs")
    if not 0 <= frontal_max_yaw < profile_min_yaw:
        raise ConfigError(
            f"cfp_fp_pairs: need 0 <= frontal_max_yaw < profile_min_yaw, got "
            f"{frontal_max_yaw} and {profile_min_yaw}"
        )
    yaw = np.abs(meta["yaw"].to_numpy(dtype=np.float64))
    rule = _PairRule(
        description=f"frontal |yaw| <= {frontal_max_yaw:g} with profile |yaw| >= "
        f"{profile_min_yaw:g}",
        first_ok=yaw <= frontal_max_yaw,
        second_ok=yaw >= profile_min_yaw,
        symmetric=False,
        constraint=None,
        remedy=(
            f"get more profile images ({int((yaw >= profile_min_yaw).sum())} of {yaw.size} "
            f"have |yaw| >= {profile_min_yaw:g}): more images per identity, a harder pose "
            "difficulty, or lower profile_min_yaw"
        ),
    )
    return _fold_protocol("cfp_fp", meta, rule, folds, pairs_per_fold, seed)


def agedb_pairs(
    meta: pd.DataFrame,
    min_age_gap: float = 30.0,
    folds: int = 10,
    pairs_per_fold: int = 600,
    seed: int = 0,
) -> PairProtocol:
    """AgeDB-like cross-age pairs (Moschoglou et al. 2017, AgeDB-30 protocol).

    AgeDB-30 has 10 folds of 300 positive and 300 negative pairs whose ages differ by the
    protocol's gap. Here both images of every pair, positive *and* negative, differ in age by
    at least ``min_age_gap`` years (our choice for the negatives: the age difference itself
    then cannot tell positives from negatives). Folds are identity-disjoint and built as in
    :func:`lfw_pairs`. Requires ``identity`` and ``age``.

    Raises:
        ConfigError: ``min_age_gap`` is negative or a fold cannot get enough pairs (the message
            gives the largest age gap within one identity).
        DataFormatError: a required column is missing.
    """
    require_columns(meta, ["identity", "age"], "agedb_pairs")
    if not min_age_gap >= 0:
        raise ConfigError(f"agedb_pairs: min_age_gap must be >= 0 years, got {min_age_gap!r}")
    age = meta["age"].to_numpy(dtype=np.float64)
    spans = meta.groupby("identity", sort=False)["age"].agg(lambda a: a.max() - a.min())
    everyone = np.ones(len(meta), dtype=bool)
    rule = _PairRule(
        description=f"age gap >= {min_age_gap:g} years",
        first_ok=everyone,
        second_ok=everyone,
        symmetric=True,
        constraint=lambda a, b: np.abs(age[a] - age[b]) >= min_age_gap,
        remedy=(
            f"lower min_age_gap (the largest age gap within one identity is "
            f"{float(spans.max()):.1f} years) or add images with a wider age drift"
        ),
    )
    return _fold_protocol("agedb", meta, rule, folds, pairs_per_fold, seed)


def _decode_upper_triangle(linear: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Map indices of the row-major strict upper triangle of an ``n x n`` matrix to (i, j)."""
    row_starts = np.concatenate([[0], np.cumsum(np.arange(n - 1, 0, -1))])
    i = np.searchsorted(row_starts, linear, side="right") - 1
    return i, linear - row_starts[i] + i + 1


def _all_pairs(
    labels: np.ndarray, max_negatives: int | None, rng: np.random.Generator, what: str,
    unit: str = "samples",
) -> tuple[np.ndarray, np.ndarray]:
    """Every same-label pair among ``labels`` and every different-label pair, or
    ``max_negatives`` of those drawn uniformly without replacement, in a seeded random order.

    Returns ``(rows, issame)`` in the flat ``.bin`` layout (``rows`` of length ``2N``).
    """
    n = labels.size
    _, groups = _group_rows(labels)
    sizes = np.array([rows.size for rows in groups], dtype=np.int64)
    total = n * (n - 1) // 2
    num_positive = int((sizes * (sizes - 1) // 2).sum())
    all_negatives = total - num_positive
    if num_positive == 0 or all_negatives == 0:
        raise ConfigError(
            f"{what}: {n} {unit} of {sizes.size} identities give {num_positive} positive and "
            f"{all_negatives} negative pairs; both must be > 0 (need an identity with 2+ "
            f"{unit} and at least 2 identities)"
        )
    if max_negatives is not None and (
        isinstance(max_negatives, bool)
        or not isinstance(max_negatives, (int, np.integer)) or max_negatives < 1
    ):
        raise ConfigError(
            f"{what}: max_negatives must be a positive integer or None, got {max_negatives!r}"
        )
    wanted = all_negatives if max_negatives is None else min(int(max_negatives), all_negatives)
    if num_positive + wanted > _MAX_ALL_PAIRS:
        raise ConfigError(
            f"{what}: {num_positive + wanted} pairs requested ({all_negatives} negatives "
            f"exist); pass max_negatives (at most {_MAX_ALL_PAIRS - num_positive})"
        )

    everyone = np.ones(n, dtype=bool)
    rule = _PairRule(description="any two", first_ok=everyone, second_ok=everyone,
                     symmetric=True, constraint=None, remedy="")
    positives = [_positive_candidates(rows, rule, labels) for rows in groups]
    pos_first = np.concatenate([first for first, _ in positives])
    pos_second = np.concatenate([second for _, second in positives])

    # A random ordering of all pairs, filtered to negatives and truncated, is a uniform subset
    # of the negatives; draw enough pairs that ``wanted`` negatives survive, more if unlucky.
    draw = min(total, int(wanted * total / all_negatives * 1.02) + 64)
    while True:
        i, j = _decode_upper_triangle(rng.choice(total, size=draw, replace=False), n)
        negative = labels[i] != labels[j]
        if negative.sum() >= wanted or draw == total:
            break
        draw = min(total, 2 * draw)
    neg_first, neg_second = i[negative][:wanted], j[negative][:wanted]

    first = np.concatenate([pos_first, neg_first])
    second = np.concatenate([pos_second, neg_second])
    issame = np.concatenate([np.ones(pos_first.size, bool), np.zeros(neg_first.size, bool)])
    order = rng.permutation(issame.size)
    rows = np.stack([first[order], second[order]], axis=1).reshape(-1).astype(np.int64)
    return rows, issame[order]


def ijb_pairs(
    meta: pd.DataFrame, max_negatives: int | None = None, seed: int = 0
) -> PairProtocol:
    """IJB-like all-pairs 1:1 verification list of single *images* (see
    :func:`ijb_template_pairs` for the template protocol the benchmark uses).

    IJB-B/C compare every template with every other and report TAR at FARs down to 1e-6; this
    image-level analogue lists every same-identity pair and every different-identity pair among
    the samples, or ``max_negatives`` negatives drawn uniformly without replacement. The
    lowest FAR the list can measure is :attr:`PairProtocol.min_far` ``= 1 / num_negative``.
    Pairs come in a seeded random order so that contiguous cross-validation blocks are random
    subsets (they are *not* identity-disjoint). ``fold`` is ``None``. Requires ``identity``.

    Raises:
        ConfigError: no positive or no negative pair exists, ``max_negatives`` is not positive,
            or the full list would exceed 50 million pairs without ``max_negatives``.
        DataFormatError: a required column is missing.
    """
    require_columns(meta, ["identity"], "ijb_pairs")
    labels = meta["identity"].to_numpy()
    rows, issame = _all_pairs(labels, max_negatives, np.random.default_rng(seed), "ijb_pairs")
    return PairProtocol(name="ijb", rows=rows, issame=issame, labels=labels[rows], fold=None)


def split_templates(
    meta: pd.DataFrame, templates_per_identity: int = 2, seed: int = 0
) -> Templates:
    """Split every identity's images into ``templates_per_identity`` disjoint templates.

    Each identity's rows are shuffled with ``seed`` and cut into ``templates_per_identity``
    parts whose sizes differ by at most one (``numpy.array_split``); an identity with fewer
    images gets one single-image template per image. Every image is in exactly one template.
    Templates are listed identity by identity (identities in ascending order), their rows
    ascending. Requires ``identity``.

    Raises:
        ConfigError: ``templates_per_identity`` is not a positive integer.
        DataFormatError: a required column is missing.
    """
    require_columns(meta, ["identity"], "split_templates")
    if (
        isinstance(templates_per_identity, bool)
        or not isinstance(templates_per_identity, (int, np.integer))
        or templates_per_identity < 1
    ):
        raise ConfigError(
            "split_templates: templates_per_identity must be a positive integer, got "
            f"{templates_per_identity!r}"
        )
    labels = meta["identity"].to_numpy()
    identities, groups = _group_rows(labels)
    rng = np.random.default_rng(seed)
    parts, identity = [], []
    for label, rows in zip(identities, groups):
        shuffled = rng.permutation(rows)
        for part in np.array_split(shuffled, min(int(templates_per_identity), rows.size)):
            parts.append(np.sort(part))
            identity.append(label)
    sizes = np.array([part.size for part in parts], dtype=np.int64)
    return Templates(
        rows=np.concatenate(parts).astype(np.int64),
        offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        identity=np.asarray(identity, dtype=labels.dtype),
    )


def ijb_template_pairs(
    meta: pd.DataFrame,
    templates_per_identity: int = 2,
    max_negatives: int | None = None,
    seed: int = 0,
) -> PairProtocol:
    """IJB-like 1:1 verification of templates (Whitelam et al. 2017, IJB-B; Maze et al. 2018,
    IJB-C).

    IJB-B/C compare *templates*, each a set of images of one subject pooled into one feature,
    and report TAR at FARs down to 1e-6 over every genuine and (a large set of) impostor
    template pairs. Here every identity's images are split into ``templates_per_identity``
    disjoint templates of about equal size (:func:`split_templates`, seeded); the positives
    are every pair of templates of one identity (``C(templates_per_identity, 2)`` per
    identity) and the negatives every pair of templates of different identities, or
    ``max_negatives`` of them drawn uniformly without replacement. Pairs come in a seeded
    random order; ``fold`` is ``None``.

    The result's ``rows`` index :attr:`PairProtocol.templates` (not images) and ``labels`` is
    the identity of each side; score it on :meth:`Templates.pool` of the image embeddings.
    Requires ``identity``.

    Raises:
        ConfigError: no positive or no negative template pair exists (an identity needs 2+
            images), ``templates_per_identity`` or ``max_negatives`` is not a positive integer.
        DataFormatError: a required column is missing.
    """
    require_columns(meta, ["identity"], "ijb_template_pairs")
    rng = np.random.default_rng(seed)
    templates = split_templates(meta, templates_per_identity, seed=int(rng.integers(2**31)))
    rows, issame = _all_pairs(templates.identity, max_negatives, rng, "ijb_template_pairs",
                              unit="templates")
    return PairProtocol(name="ijb", rows=rows, issame=issame,
                        labels=templates.identity[rows], fold=None, templates=templates)


def identification_split(
    meta: pd.DataFrame,
    distractor_meta: pd.DataFrame | None = None,
    gallery_per_identity: int = 1,
    seed: int = 0,
) -> IdentificationSplit:
    """MegaFace-like identification split (Kemelmacher-Shlizerman et al. 2016).

    MegaFace enrolls a FaceScrub identity's image among up to a million distractors of other
    people and asks whether the probe's mate is ranked first. Here ``gallery_per_identity``
    images of every identity (drawn with ``seed``) form the gallery, all its other images are
    probes, and every row of ``distractor_meta`` (identities disjoint from ``meta``'s, checked)
    joins the gallery as a non-matching entry. Requires ``identity``.

    Raises:
        ConfigError: an identity has too few images to leave a probe.
        DataFormatError: a required column is missing, or distractor identities overlap.
    """
    require_columns(meta, ["identity"], "identification_split")
    if not isinstance(gallery_per_identity, (int, np.integer)) or gallery_per_identity < 1:
        raise ConfigError(
            "identification_split: gallery_per_identity must be a positive integer, got "
            f"{gallery_per_identity!r}"
        )
    labels = meta["identity"].to_numpy()
    identities, groups = _group_rows(labels)
    short = [identity for identity, rows in zip(identities, groups)
             if rows.size <= gallery_per_identity]
    if short:
        raise ConfigError(
            f"identification_split: {len(short)} of {identities.size} identities have "
            f"<= {gallery_per_identity} image(s), leaving no probe (e.g. {short[:10]}); "
            f"lower gallery_per_identity or use identities with at least "
            f"{gallery_per_identity + 1} images"
        )
    rng = np.random.default_rng(seed)
    gallery, probes = [], []
    for rows in groups:
        shuffled = rng.permutation(rows)
        gallery.append(np.sort(shuffled[:gallery_per_identity]))
        probes.append(np.sort(shuffled[gallery_per_identity:]))
    gallery_rows = np.concatenate(gallery).astype(np.int64)
    probe_rows = np.concatenate(probes).astype(np.int64)

    if distractor_meta is None:
        distractor_rows = np.empty(0, np.int64)
        distractor_labels = np.empty(0, labels.dtype)
    else:
        require_columns(distractor_meta, ["identity"], "identification_split (distractors)")
        check_identity_disjoint(meta, distractor_meta, names=("gallery", "distractors"))
        distractor_rows = np.arange(len(distractor_meta), dtype=np.int64)
        distractor_labels = distractor_meta["identity"].to_numpy()
    return IdentificationSplit(
        gallery_rows=gallery_rows,
        gallery_labels=labels[gallery_rows],
        probe_rows=probe_rows,
        probe_labels=labels[probe_rows],
        distractor_rows=distractor_rows,
        distractor_labels=distractor_labels,
    )
