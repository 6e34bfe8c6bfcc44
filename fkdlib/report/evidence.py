"""Claim tests on the face benchmark: comparisons of two models on the same pairs.

:func:`face_tests` gives the tests that most face claims use, keyed by the name a
:class:`~fkdlib.report.claims.Claim` gives in its ``test`` field. Each model is given as its
runs (one :class:`~fkdlib.evaluation.benchmark.Evaluation` per training seed, or a single
one), and every interval resamples the seeds and the test identities
(:mod:`fkdlib.evaluation.comparisons`):

- ``"pairs:<metric>"``: ``metric(a) − metric(b)`` over the protocol's pairs, with any metric of
  :func:`fkdlib.evaluation.comparisons.metric_function` (``accuracy``, ``auc``,
  ``mean_positive``, ``mean_negative``, ``d_prime``, ``tar@<far>``);
- ``"stratified:positive"`` / ``"stratified:negative"``: the difference of mean similarities
  over one class of pairs only
  (:func:`~fkdlib.evaluation.comparisons.stratified_mean_bootstrap`);
- ``"closeness:<reference>"``: whether ``a``'s mean positive similarity is closer to the
  reference model's than ``b``'s is
  (:func:`~fkdlib.evaluation.comparisons.closeness_bootstrap`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..evaluation.benchmark import PROTOCOL_LABELS, Evaluation
from ..evaluation.comparisons import (
    MAX_BOOTSTRAP_PAIRS, as_runs, closeness_bootstrap, compare, count_identities,
    pair_identities, stratified_mean_bootstrap, stratum_rows)
from .claims import Claim, ClaimTest, Evidence, rival


def _models(claim: Claim, evaluations: Mapping[str, list[Evaluation]]) -> tuple[str, str]:
    first, second = claim.compares[0], rival(claim)
    missing = [name for name in (first, second) if name not in evaluations]
    if missing:
        raise ConfigError(f"claim {claim.id!r} needs the evaluation of {', '.join(missing)}; "
                          f"evaluated: {', '.join(evaluations)}")
    if claim.protocol is None:
        raise ConfigError(f"claim {claim.id!r} names no protocol for its test {claim.test!r}")
    return first, second


def face_tests(evaluations: Mapping[str, Evaluation | Sequence[Evaluation]], n_boot: int,
               seed: int = 0) -> dict[str, ClaimTest]:
    """The face-benchmark claim tests (module docstring) over ``evaluations``."""
    runs = {name: as_runs(value) for name, value in evaluations.items()}

    def where(protocol: str) -> str:
        return f"{PROTOCOL_LABELS.get(protocol, protocol)} pairs"

    def evidence(result, compared: str, claim: Claim, models: Sequence[str],
                 rows: np.ndarray | None = None) -> Evidence:
        units = pair_identities(runs[models[0]][0], claim.protocol, rows)
        n = runs[models[0]][0].issame[claim.protocol].size if rows is None else rows.size
        return Evidence.from_bootstrap(result, compared, n=int(n),
                                       seeds=min(len(runs[m]) for m in models),
                                       identities=count_identities(units))

    def pairs(claim: Claim) -> Evidence:
        a, b = _models(claim, runs)
        metric = claim.test_argument
        result = compare(runs[a], runs[b], claim.protocol, metric, n_boot=n_boot, seed=seed)
        return evidence(result, f"{a} − {b}, {metric} on {where(claim.protocol)}", claim,
                        (a, b))

    def stratified(claim: Claim) -> Evidence:
        a, b = _models(claim, runs)
        side = claim.test_argument
        if side not in ("positive", "negative"):
            raise ConfigError(f"claim {claim.id!r}: test 'stratified' takes 'positive' or "
                              f"'negative', got {side!r}")
        positive = side == "positive"
        result = stratified_mean_bootstrap(runs[a], runs[b], claim.protocol, positive, n_boot,
                                           seed)
        rows = stratum_rows(runs[a][0], claim.protocol, positive, MAX_BOOTSTRAP_PAIRS, seed)
        return evidence(result, f"{a} − {b}, mean {side} similarity on "
                        f"{where(claim.protocol)}", claim, (a, b), rows)

    def closeness(claim: Claim) -> Evidence:
        a, b = _models(claim, runs)
        reference = claim.test_argument
        if reference not in runs:
            raise ConfigError(f"claim {claim.id!r}: no evaluation of the reference "
                              f"{reference!r}")
        result = closeness_bootstrap(runs[a], runs[b], runs[reference], claim.protocol,
                                     n_boot, seed)
        rows = stratum_rows(runs[reference][0], claim.protocol, True, MAX_BOOTSTRAP_PAIRS, seed)
        return evidence(result, f"|mean pos {a} − {reference}| − |mean pos {b} − "
                        f"{reference}| on {where(claim.protocol)}", claim,
                        (a, b, reference), rows)

    return {"pairs": pairs, "stratified": stratified, "closeness": closeness}
