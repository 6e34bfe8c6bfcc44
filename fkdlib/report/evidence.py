"""Claim tests on the face benchmark: paired comparisons of two models on the same pairs.

:func:`face_tests` gives the tests that most face claims use, keyed by the name a
:class:`~fkdlib.report.claims.Claim` gives in its ``test`` field:

- ``"pairs:<metric>"``: a paired bootstrap over the protocol's pairs of ``metric(a) −
  metric(b)``, with any metric of :func:`fkdlib.evaluation.benchmark.metric_function`
  (``accuracy``, ``auc``, ``mean_positive``, ``mean_negative``, ``d_prime``,
  ``tar@<far>``);
- ``"stratified:positive"`` / ``"stratified:negative"``: the difference of mean similarities
  over one class of pairs only (:func:`~fkdlib.evaluation.benchmark.stratified_mean_bootstrap`);
- ``"closeness:<reference>"``: whether ``a``'s mean positive similarity is closer to the
  reference model's than ``b``'s is
  (:func:`~fkdlib.evaluation.benchmark.closeness_bootstrap`).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError
from ..evaluation.benchmark import (
    MAX_BOOTSTRAP_PAIRS, PROTOCOL_LABELS, Evaluation, closeness_bootstrap, compare,
    stratified_mean_bootstrap)
from .claims import Claim, ClaimTest, Evidence, rival


def _models(claim: Claim, evaluations: Mapping[str, Evaluation]) -> tuple[str, str]:
    first, second = claim.compares[0], rival(claim)
    missing = [name for name in (first, second) if name not in evaluations]
    if missing:
        raise ConfigError(f"claim {claim.id!r} needs the evaluation of {', '.join(missing)}; "
                          f"evaluated: {', '.join(evaluations)}")
    if claim.protocol is None:
        raise ConfigError(f"claim {claim.id!r} names no protocol for its test {claim.test!r}")
    return first, second


def face_tests(evaluations: Mapping[str, Evaluation], n_boot: int,
               seed: int = 0) -> dict[str, ClaimTest]:
    """The face-benchmark claim tests (module docstring) over ``evaluations``."""

    def where(protocol: str) -> str:
        return f"{PROTOCOL_LABELS.get(protocol, protocol)} pairs"

    def pairs(claim: Claim) -> Evidence:
        a, b = _models(claim, evaluations)
        metric = claim.test_argument
        result = compare(evaluations[a], evaluations[b], claim.protocol, metric,
                         n_boot=n_boot, seed=seed)
        return Evidence.from_bootstrap(result, f"{a} − {b}, {metric} on "
                                       f"{where(claim.protocol)}",
                                       n=int(evaluations[a].issame[claim.protocol].size))

    def stratified(claim: Claim) -> Evidence:
        a, b = _models(claim, evaluations)
        side = claim.test_argument
        if side not in ("positive", "negative"):
            raise ConfigError(f"claim {claim.id!r}: test 'stratified' takes 'positive' or "
                              f"'negative', got {side!r}")
        positive = side == "positive"
        issame = evaluations[a].issame[claim.protocol]
        count = int(issame.sum() if positive else (~issame).sum())
        result = stratified_mean_bootstrap(evaluations[a], evaluations[b], claim.protocol,
                                           positive, n_boot, seed)
        return Evidence.from_bootstrap(
            result, f"{a} − {b}, mean {side} similarity on {where(claim.protocol)}",
            n=min(count, MAX_BOOTSTRAP_PAIRS))

    def closeness(claim: Claim) -> Evidence:
        a, b = _models(claim, evaluations)
        reference = claim.test_argument
        if reference not in evaluations:
            raise ConfigError(f"claim {claim.id!r}: no evaluation of the reference "
                              f"{reference!r}")
        issame = evaluations[reference].issame[claim.protocol]
        result = closeness_bootstrap(evaluations[a], evaluations[b], evaluations[reference],
                                     claim.protocol, n_boot, seed)
        return Evidence.from_bootstrap(
            result, f"|mean pos {a} − {reference}| − |mean pos {b} − {reference}| on "
            f"{where(claim.protocol)}", n=min(int(issame.sum()), MAX_BOOTSTRAP_PAIRS))

    return {"pairs": pairs, "stratified": stratified, "closeness": closeness}
