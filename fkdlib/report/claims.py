"""Claims as data: each paper's claims are declared once and checked by one evaluator.

A :class:`Claim` says what it compares (the models, the protocol), how that is measured (its
``test``: the name of an evidence function, with an argument after a colon, e.g.
``"pairs:tar@1e-3"``), in which direction the paper says the effect goes, where the paper says
so, and the paper's own effect where the paper gives one. :func:`evaluate_claims` calls each
claim's test, which returns :class:`Evidence` (an effect with its confidence interval), and
turns it into a verdict. The verdict follows from the interval alone, measured from the
claim's ``bound`` (0 unless the claim is "larger *by more than* b"):

============  =======================  =======================  ===================
direction     holds                    contradicted             otherwise
============  =======================  =======================  ===================
greater       ci_low > bound           ci_high < bound          not significant
less          ci_high < bound          ci_low > bound           not significant
no_greater    ci_low <= bound          ci_low > bound           (never)
equivalent    |Δ| < margin shown       |Δ| > margin shown       not significant
============  =======================  =======================  ===================

``no_greater`` is for claims of the form "A is not (clearly) better than B": weaker than the
others by design, so read it with the interval. ``equivalent`` ("A matches B within ±margin")
is reported as ``|Δ| − margin`` with the interval of that quantity over Δ's interval, so it
holds when Δ's whole interval lies inside ``(−margin, margin)``. When the interval is undefined
(NaN, e.g. TAR at a FAR below what the number of pairs resolves) or ``assess=False`` (the smoke
profile), the status is ``not assessed`` and the effect is still recorded.

Three more rules make a verdict trustworthy:

- **Power.** Each claim carries the minimum detectable effect (``mde``) of its test at 80%
  power, from the interval's standard error
  (:func:`~fkdlib.evaluation.uncertainty.minimum_detectable_effect`). A claim that is
  ``not significant`` although the paper's own effect is smaller than the ``mde`` is
  ``untestable at this scale``: this profile could not have seen the paper's effect. Where the
  paper gives no effect size, ``not significant`` stands and the ``reason`` column says so.
- **Training health.** A claim that compares a model failing the training-health gate
  (:class:`~fkdlib.evaluation.health.HealthGate`) is ``not assessed``, the reason named.
- **Data.** A claim whose test needs a protocol the data lacks (the test raises
  :class:`~fkdlib.errors.DataUnavailable`, e.g. no IJB-like list in a set of real ``.bin``
  files) is ``not assessed``, the missing protocol named.
- **Premises.** A claim may require others (``requires``: ids of claims in the same list, e.g.
  "the teacher is more compact than the student"); unless each of them holds, it is
  ``not assessed``, the failed premise named.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError, DataUnavailable
from ..io import atomic_write_text
from .results import markdown_table

DIRECTIONS = ("greater", "less", "no_greater", "equivalent")
HOLDS, NOT_SIGNIFICANT, CONTRADICTED = "holds", "not significant", "contradicted"
UNTESTABLE, NOT_ASSESSED = "untestable at this scale", "not assessed"
STATUSES = (HOLDS, CONTRADICTED, NOT_SIGNIFICANT, UNTESTABLE, NOT_ASSESSED)
COLUMNS = ("id", "statement", "source", "status", "effect", "ci_low", "ci_high", "p_value",
           "evidence", "metric", "direction", "n", "paper_effect", "mde", "seeds",
           "identities", "reason")


@dataclass(frozen=True)
class Evidence:
    """An effect with its confidence interval: what every claim test returns.

    Attributes:
        effect: the estimated difference (ours − comparison) on the full sample.
        ci_low, ci_high: its confidence interval (equal to ``effect`` for exact counts).
        p_value: optional two-sided p-value of "no difference".
        n: optional number of units resampled (pairs, probes, images).
        compared: what was compared, e.g. "ArcFace − Softmax, accuracy on lfw pairs".
        n_boot: optional number of bootstrap resamples behind the interval.
        se: standard error of the effect (the bootstrap's standard deviation; 0 for exact
            counts), from which the minimum detectable effect follows.
        seeds: training seeds per model behind the effect.
        identities: test identities resampled (the units of the interval).
    """

    effect: float
    ci_low: float
    ci_high: float
    p_value: float | None = None
    n: int | None = None
    compared: str = ""
    n_boot: int | None = None
    se: float | None = None
    seeds: int | None = None
    identities: int | None = None

    def __post_init__(self) -> None:
        for name in ("effect", "ci_low", "ci_high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"evidence field {name} must be a number, got {value!r}")
        if self.ci_low > self.ci_high:
            raise ConfigError(f"the confidence interval is reversed (ci_low {self.ci_low} > "
                              f"ci_high {self.ci_high})")

    @classmethod
    def from_bootstrap(cls, result: Any, compared: str, n: int | None = None,
                       seeds: int | None = None, identities: int | None = None) -> Evidence:
        """From a :class:`~fkdlib.evaluation.similarity.BootstrapResult`."""
        se = getattr(result, "se", None)
        return cls(float(result.effect), float(result.ci_low), float(result.ci_high),
                   float(result.p_value), n, compared, int(result.n_boot),
                   None if se is None else float(se), seeds, identities)

    @classmethod
    def exact(cls, effect: float, compared: str) -> Evidence:
        """An exact difference (counts, not samples): the interval is the point itself."""
        return cls(float(effect), float(effect), float(effect), compared=compared, se=0.0)

    @property
    def is_exact(self) -> bool:
        """An exact count (:meth:`exact`), not an estimate from trained models."""
        return self.se == 0 and self.ci_low == self.effect == self.ci_high

    @property
    def mde(self) -> float:
        """Minimum detectable effect at 80% power (NaN without a standard error)."""
        from ..evaluation.uncertainty import minimum_detectable_effect

        return math.nan if self.se is None else minimum_detectable_effect(self.se)


def verdict(direction: str, ci_low: float, ci_high: float) -> str:
    """The status of a claim in ``direction`` given an interval measured from its bound
    (module table; an ``equivalent`` claim's interval is that of ``|Δ| − margin``)."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"unknown direction {direction!r}; expected one of "
                          f"{', '.join(DIRECTIONS)}")
    if math.isnan(ci_low) or math.isnan(ci_high):
        return NOT_ASSESSED
    if direction == "greater":
        return HOLDS if ci_low > 0 else CONTRADICTED if ci_high < 0 else NOT_SIGNIFICANT
    if direction == "no_greater":
        return CONTRADICTED if ci_low > 0 else HOLDS
    return HOLDS if ci_high < 0 else CONTRADICTED if ci_low > 0 else NOT_SIGNIFICANT


def distance_beyond_margin(evidence: Evidence, margin: float) -> tuple[float, float, float]:
    """``|Δ| − margin`` and its interval over Δ's interval ``[l, h]``: from
    ``(0 if l <= 0 <= h else min(|l|, |h|)) − margin`` to ``max(|l|, |h|) − margin``."""
    low, high = evidence.ci_low, evidence.ci_high
    if math.isnan(low) or math.isnan(high):
        return abs(evidence.effect) - margin, math.nan, math.nan
    upper = max(abs(low), abs(high))
    lower = 0.0 if low <= 0 <= high else min(abs(low), abs(high))
    return abs(evidence.effect) - margin, lower - margin, upper - margin


@dataclass(frozen=True)
class Claim:
    """A paper's claim, declared once with everything needed to check it.

    Attributes:
        id: short key, unique within a notebook, e.g. ``"ArcFace>Softmax:LFW"``.
        statement: the claim in our words.
        source: where the paper makes it (paper, section, table, figure or equation), as a
            citation a reader can find.
        metric: what the effect measures, in words (the claims table's column).
        test: the evidence function, by name, with an optional argument after a colon
            (``"pairs:accuracy"``, ``"exact:params (M)"``); see :func:`evaluate_claims`.
        compares: the models compared, ``(a, b)`` for ``a − b``; ``b`` may be a tuple of models,
            meaning the best of them (the test decides what "best" is, in the claim's
            direction); a single model for a within-model effect (first vs last epoch).
        protocol: the benchmark protocol the test reads (``"lfw"``, ``"ijb"``), if any.
        direction: one of :data:`DIRECTIONS`.
        bound: the value the effect is compared with (0: "larger"; b: "larger by more than b").
        margin: the equivalence margin of an ``equivalent`` claim.
        paper_effect: the paper's own effect in the same units, where the paper gives one.
        paper_says: the paper's words, where we have them.
        requires: ids of premise claims (in the same list) that must hold for this claim to
            be assessed.
    """

    id: str
    statement: str
    source: str
    metric: str
    test: str
    compares: tuple[Any, ...] = ()
    protocol: str | None = None
    direction: str = "greater"
    bound: float = 0.0
    margin: float | None = None
    paper_effect: float | None = None
    paper_says: str = ""
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("id", "statement", "source", "metric", "test"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"claim {name} must be a non-empty string, got {value!r}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"claim {self.id!r}: unknown direction {self.direction!r}; "
                              f"expected one of {', '.join(DIRECTIONS)}")
        if (self.direction == "equivalent") != (self.margin is not None):
            raise ConfigError(f"claim {self.id!r}: an 'equivalent' claim needs a margin, and "
                              "only it takes one")
        if self.margin is not None and not (math.isfinite(self.margin) and self.margin > 0):
            raise ConfigError(f"claim {self.id!r}: the margin must be a finite number > 0, "
                              f"got {self.margin!r}")

    @property
    def test_name(self) -> str:
        return self.test.partition(":")[0]

    @property
    def test_argument(self) -> str:
        return self.test.partition(":")[2]

    @property
    def models(self) -> tuple[str, ...]:
        """Every model the claim compares (the members of a "best of" tuple included)."""
        out: list[str] = []
        for entry in self.compares:
            out.extend([entry] if isinstance(entry, str) else list(entry))
        return tuple(out)

    @property
    def highest_is_best(self) -> bool:
        """Whether "the best of several models" is the one scoring highest (the rival a claim
        in this direction must beat)."""
        return self.direction in ("greater", "no_greater")


ClaimTest = Callable[[Claim], Evidence]


@dataclass(frozen=True)
class ClaimResult:
    """One checked claim: the verdict and the effect measured from the claim's bound."""

    claim: Claim
    status: str
    effect: float
    ci_low: float
    ci_high: float
    p_value: float | None
    n: int | None
    evidence: str
    mde: float = math.nan
    seeds: int | None = None
    identities: int | None = None
    reason: str = ""

    def row(self) -> dict[str, Any]:
        claim, nan = self.claim, float("nan")
        return {"id": claim.id, "statement": claim.statement, "source": claim.source,
                "status": self.status, "effect": self.effect, "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "p_value": nan if self.p_value is None else self.p_value,
                "evidence": self.evidence, "metric": claim.metric,
                "direction": claim.direction, "n": self.n,
                "paper_effect": nan if claim.paper_effect is None else claim.paper_effect,
                "mde": self.mde, "seeds": self.seeds, "identities": self.identities,
                "reason": self.reason}

    def not_assessed(self, reason: str) -> ClaimResult:
        """This result with the status ``not assessed`` for ``reason`` (effect kept)."""
        return dataclasses.replace(self, status=NOT_ASSESSED, reason=reason)


def check_claim(claim: Claim, evidence: Evidence, assess: bool = True) -> ClaimResult:
    """The verdict on ``claim`` given its ``evidence`` (``assess=False``: effect only)."""
    if not isinstance(evidence, Evidence):
        raise ConfigError(f"the test {claim.test!r} of claim {claim.id!r} returned "
                          f"{type(evidence).__name__}; claim tests return Evidence")
    if claim.direction == "equivalent":
        effect, low, high = distance_beyond_margin(evidence, claim.margin)
    else:
        effect, low, high = (evidence.effect - claim.bound, evidence.ci_low - claim.bound,
                             evidence.ci_high - claim.bound)
    mde = evidence.mde
    if math.isnan(low) or math.isnan(high):
        status, reason = NOT_ASSESSED, "confidence interval undefined (NaN) at this sample size"
    elif not assess:
        status, reason = NOT_ASSESSED, "not assessed at this profile (too small for a verdict)"
    else:
        status, reason = _with_power(claim, verdict(claim.direction, low, high), mde)
    # a p-value tests "no difference"; it says nothing of a bound or an equivalence margin
    p_value = None if claim.bound or claim.direction == "equivalent" else evidence.p_value
    parts = [evidence.compared] if evidence.compared else []
    if claim.direction == "equivalent":
        parts.append(f"Δ = {evidence.effect:+.4f}, 95% CI [{evidence.ci_low:+.4f}, "
                     f"{evidence.ci_high:+.4f}], margin ±{claim.margin:g}")
    elif claim.bound:
        parts.append(f"measured from the bound {claim.bound:+g}")
    if evidence.n is not None:
        parts.append(f"n={evidence.n}")
    if evidence.n_boot is not None:
        parts.append(f"{evidence.n_boot} bootstrap resamples")
    return ClaimResult(claim, status, effect, low, high, p_value, evidence.n, "; ".join(parts),
                       mde, evidence.seeds, evidence.identities, reason)


def _with_power(claim: Claim, status: str, mde: float) -> tuple[str, str]:
    """A ``not significant`` verdict read against the test's power: ``untestable at this
    scale`` when the paper's effect is below the minimum detectable effect, with the reason."""
    if status != NOT_SIGNIFICANT or claim.direction == "equivalent" or math.isnan(mde):
        return status, ""
    if claim.paper_effect is None:
        return status, ("the paper gives no effect size to set beside the smallest effect this "
                        f"test detects at 80% power (MDE {mde:.3g})")
    paper = abs(claim.paper_effect - claim.bound)
    if paper < mde:
        return UNTESTABLE, (f"the paper's effect {paper:.3g} is below the smallest effect this "
                            f"test detects at 80% power (MDE {mde:.3g})")
    return status, (f"the test could have seen the paper's effect {paper:.3g} (MDE {mde:.3g}) "
                    "and did not")


def check_unique(claims: Sequence[Claim]) -> None:
    """Claim ids must be unique within a notebook."""
    seen: set[str] = set()
    for claim in claims:
        if not isinstance(claim, Claim):
            raise ConfigError(f"expected a Claim, got {type(claim).__name__}")
        if claim.id in seen:
            raise ConfigError(f"two claims have the id {claim.id!r}")
        seen.add(claim.id)


def evaluate_claims(claims: Sequence[Claim], tests: Mapping[str, ClaimTest],
                    assess: bool = True,
                    unhealthy: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Check every claim with its test; one row per claim with the columns of
    :data:`COLUMNS`.

    Args:
        claims: the declared claims of one notebook (unique ids).
        tests: test name -> ``function(claim) -> Evidence``; e.g. the face-benchmark tests of
            :func:`fkdlib.report.evidence.face_tests` plus a paper's own.
        assess: ``False`` records the effects but gives every claim the status
            ``not assessed`` (the smoke profile is too small for a verdict).
        unhealthy: model name -> why it failed the training-health gate
            (:func:`fkdlib.evaluation.health.failed_models`); a claim comparing such a model
            is ``not assessed``, unless its evidence is an exact count (parameters, FLOPs),
            which does not depend on training.

    A test raising :class:`~fkdlib.errors.DataUnavailable` (the data lacks the protocol it
    reads) makes its claim ``not assessed`` with that reason, and so its dependants.

    Raises:
        ConfigError: a claim names a test that ``tests`` lacks, or requires a claim that is
            not listed before it (before any test runs).
    """
    check_unique(claims)
    unknown = sorted({c.test_name for c in claims} - set(tests))
    if unknown:
        raise ConfigError(f"no claim test named {', '.join(map(repr, unknown))}; available: "
                          f"{', '.join(sorted(tests)) or 'none'}")
    listed: set[str] = set()
    for claim in claims:
        missing = [premise for premise in claim.requires if premise not in listed]
        if missing:
            raise ConfigError(f"claim {claim.id!r} requires {missing}, which must be listed "
                              "before it")
        listed.add(claim.id)
    unhealthy = dict(unhealthy or {})
    results: dict[str, ClaimResult] = {}
    for claim in claims:
        try:
            evidence = tests[claim.test_name](claim)
        except DataUnavailable as missing:
            nan = math.nan
            results[claim.id] = ClaimResult(claim, NOT_ASSESSED, nan, nan, nan, None, None, "",
                                            reason=str(missing))
            continue
        result = check_claim(claim, evidence, assess)
        failed = [premise for premise in claim.requires if results[premise].status != HOLDS]
        # an exact count (parameters, FLOPs, groups) does not depend on how a model trained
        sick = [] if evidence.is_exact else [name for name in claim.models if name in unhealthy]
        if failed and assess:
            result = result.not_assessed("premise " + "; ".join(
                f"{p!r} is {results[p].status}" for p in failed))
        elif sick and assess:
            result = result.not_assessed("; ".join(
                f"{name} failed the training-health gate ({unhealthy[name]})" for name in sick))
        results[claim.id] = result
    frame = pd.DataFrame([r.row() for r in results.values()], columns=list(COLUMNS))
    for column in ("n", "seeds", "identities"):
        frame[column] = frame[column].astype("Int64")
    return frame


def claims_beside_paper(claims: Sequence[Claim], checked: pd.DataFrame) -> pd.DataFrame:
    """The paper's words and effect beside our verdict and effect, one row per claim."""
    ours = checked.set_index("id")
    rows = [{"id": c.id, "paper says": c.paper_says or c.statement, "where": c.source,
             "paper effect": c.paper_effect, "status": ours.loc[c.id, "status"],
             "effect": ours.loc[c.id, "effect"], "ci_low": ours.loc[c.id, "ci_low"],
             "ci_high": ours.loc[c.id, "ci_high"]} for c in claims if c.id in ours.index]
    return pd.DataFrame(rows)


def verdict_summary(checked: pd.DataFrame) -> str:
    """The verdicts in words, read from a claims table (:func:`evaluate_claims`): how many
    claims have each status, then the claims of each status with, where a claim is not
    decided, why (power, a failed gate or premise, the profile). Markdown, for a notebook's
    closing cell."""
    if checked.empty:
        return "No claim was checked."
    counts = checked["status"].value_counts()
    lines = ["**" + ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts) + "** of "
             f"{len(checked)} claims.", ""]
    headings = {HOLDS: "Held", CONTRADICTED: "Contradicted (the effect goes the other way)",
                NOT_SIGNIFICANT: "Not significant",
                UNTESTABLE: "Untestable at this scale (the paper's effect is below what this "
                            "profile can detect)",
                NOT_ASSESSED: "Not assessed"}
    for status in STATUSES:
        rows = checked[checked["status"] == status]
        if rows.empty:
            continue
        lines.append(f"*{headings[status]}:*")
        for _, row in rows.iterrows():
            reason = row.get("reason")
            why = f" — {reason}" if isinstance(reason, str) and reason else ""
            lines.append(f"- {row['statement']} (`{row['id']}`){why}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def save_claims(frame: pd.DataFrame, path_stem: str | os.PathLike) -> dict[str, Path]:
    """Write ``<stem>.csv`` (full precision) and ``<stem>.md`` atomically."""
    stem = Path(path_stem)
    paths = {"csv": stem.with_name(f"{stem.name}.csv"), "md": stem.with_name(f"{stem.name}.md")}
    atomic_write_text(paths["csv"], frame.to_csv(index=False))
    shown = frame[["id", "statement", "source", "status", "effect", "ci_low", "ci_high",
                   "p_value", "mde", "paper_effect", "reason", "evidence"]]
    atomic_write_text(paths["md"], markdown_table(shown, float_format="{:.4g}"))
    return paths


def best_of(claim: Claim, candidates: Sequence[str], score: Callable[[str], float]) -> str:
    """The candidate a claim must beat: the highest-scoring one for a claim that its model
    scores higher, the lowest-scoring one for a claim that it scores lower."""
    chooser = max if claim.highest_is_best else min
    return chooser(candidates, key=score)


def rival(claim: Claim, score: Callable[[str], float] | None = None) -> str:
    """The second model of ``claim.compares``; a tuple there means the best of those models
    by ``score`` (:func:`best_of`)."""
    if len(claim.compares) != 2:
        raise ConfigError(f"claim {claim.id!r} compares {claim.compares!r}; its test needs two "
                          "models (a, b)")
    second = claim.compares[1]
    if isinstance(second, str):
        return second
    if score is None:
        raise ConfigError(f"claim {claim.id!r} compares with the best of {second!r}, which its "
                          f"test {claim.test!r} cannot rank")
    return best_of(claim, list(second), score)


__all__ = ["COLUMNS", "DIRECTIONS", "STATUSES", "Claim", "ClaimResult", "ClaimTest", "Evidence",
           "best_of", "check_claim", "claims_beside_paper", "distance_beyond_margin",
           "evaluate_claims", "rival", "save_claims", "verdict", "verdict_summary"]
