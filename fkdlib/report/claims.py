"""Claims as data: each notebook registers a paper's claims and checks them against evidence.

A :class:`Claim` names a metric and a direction; the evidence is an effect (ours minus the
comparison, e.g. ArcFace accuracy − Softmax accuracy) with a confidence interval, typically
the result of :func:`fkdlib.evaluation.similarity.paired_bootstrap` (anything with
``effect``, ``ci_low``, ``ci_high`` attributes or keys fits). The verdict follows from the
interval alone:

============  =======================  =======================  ===================
direction     holds                    contradicted             otherwise
============  =======================  =======================  ===================
greater       ci_low > 0               ci_high < 0              not significant
less          ci_high < 0              ci_low > 0               not significant
no_greater    ci_low <= 0              ci_low > 0               (never)
============  =======================  =======================  ===================

``no_greater`` is for claims of the form "A is not (clearly) better than B": a
non-superiority claim that holds unless the data show A significantly better. It is weaker
than the others by design: a small experiment cannot contradict it easily, so read it with
the interval. When the interval is undefined (NaN, e.g. TAR at a FAR below what the number of
pairs resolves) or ``assess=False`` (the smoke profile), the status is ``not assessed`` and
the effect is still recorded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError
from ..io import atomic_write_text
from .results import markdown_table

DIRECTIONS = ("greater", "less", "no_greater")
HOLDS, NOT_SIGNIFICANT, CONTRADICTED = "holds", "not significant", "contradicted"
NOT_ASSESSED, NOT_EVALUATED = "not assessed", "not evaluated"
COLUMNS = ("id", "statement", "source", "status", "effect", "ci_low", "ci_high", "p_value",
           "evidence", "metric", "direction", "n")


@dataclass(frozen=True)
class Evidence:
    """An effect with its confidence interval; what :meth:`Claim.evaluate` reads.

    Attributes:
        effect: the estimated difference (ours − comparison) on the full sample.
        ci_low, ci_high: the confidence interval of ``effect``.
        p_value: optional two-sided p-value.
        n: optional sample size (pairs, seeds).
        compared: what was compared, e.g. "ArcFace − Softmax, LFW-like 10-fold accuracy".
        n_boot: optional number of bootstrap resamples behind the interval.
    """

    effect: float
    ci_low: float
    ci_high: float
    p_value: float | None = None
    n: int | None = None
    compared: str = ""
    n_boot: int | None = None


def _read(evidence: Any, name: str, default: Any = None) -> Any:
    if isinstance(evidence, Mapping):
        return evidence.get(name, default)
    return getattr(evidence, name, default)


def _number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"evidence field {what} must be a number, got {value!r}") from None


def as_evidence(evidence: Any) -> Evidence:
    """Read ``effect``, ``ci_low``, ``ci_high`` (required) and ``p_value``, ``n`` (or
    ``n_pairs``), ``compared`` (or ``description``), ``n_boot`` from an object or a mapping."""
    if isinstance(evidence, Evidence):
        return evidence
    missing = [name for name in ("effect", "ci_low", "ci_high") if _read(evidence, name) is None]
    if missing:
        raise ConfigError(
            f"evidence {type(evidence).__name__} lacks {', '.join(missing)}; expected an object "
            "or mapping with effect, ci_low, ci_high (e.g. a paired_bootstrap result)"
        )
    p_value = _read(evidence, "p_value")
    n = _read(evidence, "n", _read(evidence, "n_pairs"))
    n_boot = _read(evidence, "n_boot")
    return Evidence(
        effect=_number(_read(evidence, "effect"), "effect"),
        ci_low=_number(_read(evidence, "ci_low"), "ci_low"),
        ci_high=_number(_read(evidence, "ci_high"), "ci_high"),
        p_value=None if p_value is None else _number(p_value, "p_value"),
        n=None if n is None else int(n),
        compared=str(_read(evidence, "compared", _read(evidence, "description", "")) or ""),
        n_boot=None if n_boot is None else int(n_boot),
    )


def verdict(direction: str, ci_low: float, ci_high: float) -> str:
    """The status of a claim in ``direction`` given a confidence interval (module table)."""
    if math.isnan(ci_low) or math.isnan(ci_high):
        return NOT_ASSESSED
    if direction == "greater":
        return HOLDS if ci_low > 0 else CONTRADICTED if ci_high < 0 else NOT_SIGNIFICANT
    if direction == "less":
        return HOLDS if ci_high < 0 else CONTRADICTED if ci_low > 0 else NOT_SIGNIFICANT
    if direction == "no_greater":
        return CONTRADICTED if ci_low > 0 else HOLDS
    raise ConfigError(f"unknown direction {direction!r}; expected one of {', '.join(DIRECTIONS)}")


@dataclass(frozen=True)
class ClaimResult:
    """The outcome of checking one claim."""

    status: str
    effect: float
    ci_low: float
    ci_high: float
    p_value: float | None
    n: int | None
    evidence: str


@dataclass
class Claim:
    """A paper's claim to check.

    Attributes:
        id: short unique key within a notebook, e.g. ``"arcface>softmax:verification"``.
        statement: the claim in words, as the paper makes it.
        source: where the paper makes it (paper, section, table or figure).
        metric: what the effect measures, e.g. "10-fold verification accuracy (%)".
        direction: ``"greater"`` (effect > 0 expected), ``"less"`` or ``"no_greater"``.
        result: the last :meth:`evaluate` outcome, ``None`` before.
    """

    id: str
    statement: str
    source: str
    metric: str
    direction: str
    result: ClaimResult | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("id", "statement", "source", "metric"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"claim {name} must be a non-empty string, got {value!r}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                f"claim {self.id!r}: unknown direction {self.direction!r}; "
                f"expected one of {', '.join(DIRECTIONS)}"
            )

    def evaluate(self, evidence: Any, assess: bool = True) -> ClaimResult:
        """Check the claim against ``evidence``; store and return the result.

        Args:
            evidence: anything with ``effect``, ``ci_low``, ``ci_high`` (attributes or keys),
                optionally ``p_value``, ``n``, ``compared``; see :func:`as_evidence`.
            assess: ``False`` records the effect but gives the status ``not assessed`` (the
                smoke profile is too small for a verdict).
        """
        found = as_evidence(evidence)
        if found.ci_low > found.ci_high:
            raise ConfigError(
                f"claim {self.id!r}: confidence interval is reversed "
                f"(ci_low {found.ci_low} > ci_high {found.ci_high})"
            )
        status = verdict(self.direction, found.ci_low, found.ci_high) if assess else NOT_ASSESSED
        parts = [found.compared] if found.compared else []
        if found.n is not None:
            parts.append(f"n={found.n}")
        if found.n_boot is not None:
            parts.append(f"{found.n_boot} bootstrap resamples")
        if math.isnan(found.ci_low) or math.isnan(found.ci_high):
            parts.append("confidence interval undefined (NaN) at this sample size")
        elif not assess:
            parts.append("not assessed at this profile")
        self.result = ClaimResult(status, found.effect, found.ci_low, found.ci_high,
                                  found.p_value, found.n, "; ".join(parts))
        return self.result

    def row(self) -> dict[str, Any]:
        """One row of the claims table (status ``not evaluated`` before :meth:`evaluate`)."""
        result = self.result
        nan = float("nan")
        return {
            "id": self.id, "statement": self.statement, "source": self.source,
            "status": result.status if result else NOT_EVALUATED,
            "effect": result.effect if result else nan,
            "ci_low": result.ci_low if result else nan,
            "ci_high": result.ci_high if result else nan,
            "p_value": result.p_value if result and result.p_value is not None else nan,
            "evidence": result.evidence if result else "",
            "metric": self.metric, "direction": self.direction,
            "n": result.n if result and result.n is not None else None,
        }


class ClaimSet:
    """The claims of one notebook, in registration order, with unique ids."""

    def __init__(self, claims: list[Claim] | None = None) -> None:
        self._claims: dict[str, Claim] = {}
        for claim in claims or []:
            self.add(claim)

    def add(self, claim: Claim) -> Claim:
        """Register ``claim``; a second claim with the same id is refused."""
        if not isinstance(claim, Claim):
            raise ConfigError(f"expected a Claim, got {type(claim).__name__}")
        if claim.id in self._claims:
            raise ConfigError(f"a claim with id {claim.id!r} is already registered")
        self._claims[claim.id] = claim
        return claim

    def register(self, id: str, statement: str, source: str, metric: str,
                 direction: str) -> Claim:
        """Create and add a :class:`Claim`."""
        return self.add(Claim(id, statement, source, metric, direction))

    def __getitem__(self, claim_id: str) -> Claim:
        if claim_id not in self._claims:
            raise ConfigError(
                f"no claim {claim_id!r}; registered: {', '.join(self._claims) or 'none'}"
            )
        return self._claims[claim_id]

    def __iter__(self) -> Iterator[Claim]:
        return iter(self._claims.values())

    def __len__(self) -> int:
        return len(self._claims)

    def evaluate(self, claim_id: str, evidence: Any, assess: bool = True) -> ClaimResult:
        """Evaluate the registered claim ``claim_id`` (see :meth:`Claim.evaluate`)."""
        return self[claim_id].evaluate(evidence, assess=assess)

    def to_frame(self) -> pd.DataFrame:
        """One row per claim with the columns of :data:`COLUMNS`."""
        frame = pd.DataFrame([claim.row() for claim in self], columns=list(COLUMNS))
        frame["n"] = frame["n"].astype("Int64")
        return frame

    def save(self, path_stem: str | os.PathLike) -> dict[str, Path]:
        """Write ``<stem>.csv`` (full precision) and ``<stem>.md`` atomically."""
        stem = Path(path_stem)
        frame = self.to_frame()
        paths = {"csv": stem.with_name(f"{stem.name}.csv"),
                 "md": stem.with_name(f"{stem.name}.md")}
        atomic_write_text(paths["csv"], frame.to_csv(index=False))
        shown = frame[["id", "statement", "source", "status", "effect", "ci_low", "ci_high",
                       "p_value", "evidence"]]
        atomic_write_text(paths["md"], markdown_table(shown, float_format="{:.4g}"))
        return paths
