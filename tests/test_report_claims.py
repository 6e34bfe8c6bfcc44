"""Claims declared once and checked by one evaluator: verdicts, bounds, equivalence, tests."""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from fkdlib.errors import ConfigError
from fkdlib.report.claims import (
    COLUMNS, Claim, Evidence, best_of, check_claim, claims_beside_paper, evaluate_claims, rival,
    save_claims, verdict)


@dataclass
class BootstrapLike:
    """The fields of fkdlib.evaluation.similarity.paired_bootstrap's result."""

    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    n_boot: int


def claim(direction="greater", id="c", **fields):
    options = {"margin": 0.05} if direction == "equivalent" else {}
    options.update(fields)
    test = options.pop("test", "pairs:accuracy")
    return Claim(id, "ArcFace beats Softmax", "ArcFace Table 2", "accuracy (%)", test,
                 ("ArcFace", "Softmax"), "lfw", direction, **options)


@pytest.mark.parametrize("direction,low,high,status", [
    ("greater", 0.1, 0.5, "holds"),
    ("greater", -0.5, -0.1, "contradicted"),
    ("greater", -0.1, 0.5, "not significant"),
    ("greater", 0.0, 0.5, "not significant"),
    ("less", -0.5, -0.1, "holds"),
    ("less", 0.1, 0.5, "contradicted"),
    ("less", -0.5, 0.1, "not significant"),
    ("less", -0.5, 0.0, "not significant"),
    ("no_greater", -0.5, 0.5, "holds"),
    ("no_greater", -0.5, -0.1, "holds"),
    ("no_greater", 0.0, 0.5, "holds"),
    ("no_greater", 0.1, 0.5, "contradicted"),
])
def test_every_status_branch(direction, low, high, status):
    assert verdict(direction, low, high) == status
    result = check_claim(claim(direction), Evidence((low + high) / 2, low, high))
    assert result.status == status
    assert result.effect == pytest.approx((low + high) / 2)


def test_a_bound_shifts_effect_and_interval():
    """"Lower by more than 0.05": the effect is measured from the bound −0.05."""
    lower = claim("less", bound=-0.05)
    result = check_claim(lower, Evidence(-0.15, -0.2, -0.1, p_value=0.001))
    assert (result.effect, result.ci_low, result.ci_high) == pytest.approx((-0.1, -0.15, -0.05))
    assert result.status == "holds"
    assert result.p_value is None  # it tested Δ = 0, not the bound
    # lower, but not by more than the bound
    assert check_claim(lower, Evidence(-0.05, -0.08, -0.02)).status == "not significant"


@pytest.mark.parametrize("low, high, expected", [
    (-0.01, 0.02, "holds"), (0.03, 0.07, "not significant"), (0.06, 0.09, "contradicted"),
    (-0.09, -0.06, "contradicted"), (-0.04, -0.01, "holds"), (-0.06, 0.01, "not significant"),
])
def test_equivalence_interval_is_the_range_of_abs_difference(low, high, expected):
    margin = 0.05
    result = check_claim(claim("equivalent", margin=margin),
                         Evidence((low + high) / 2, low, high, p_value=0.5))
    assert result.p_value is None
    grid = np.abs(np.linspace(low, high, 100_001)) - margin  # brute force over Δ's interval
    assert result.ci_low == pytest.approx(grid.min(), abs=1e-6)
    assert result.ci_high == pytest.approx(grid.max(), abs=1e-12)
    assert result.effect == pytest.approx(abs((low + high) / 2) - margin)
    assert result.status == expected
    assert "margin ±0.05" in result.evidence


def test_equivalence_keeps_an_undefined_interval_undefined_and_needs_a_margin():
    result = check_claim(claim("equivalent"), Evidence(0.1, math.nan, math.nan))
    assert math.isnan(result.ci_low) and math.isnan(result.ci_high)
    assert result.status == "not assessed"
    with pytest.raises(ConfigError, match="margin must be a finite number > 0"):
        claim("equivalent", margin=0.0)
    with pytest.raises(ConfigError, match="needs a margin"):
        Claim("x", "s", "src", "m", "pairs:accuracy", direction="equivalent")
    with pytest.raises(ConfigError, match="needs a margin, and only it takes one"):
        claim("greater", margin=0.1)


def test_smoke_profile_records_the_effect_without_a_verdict():
    result = check_claim(claim(), Evidence(1.2, 0.5, 2.0, compared="A - B"), assess=False)
    assert result.status == "not assessed"
    assert (result.effect, result.ci_low, result.ci_high) == (1.2, 0.5, 2.0)
    assert result.evidence == "A - B"
    assert result.reason == "not assessed at this profile (too small for a verdict)"


def test_undefined_interval_is_not_assessed():
    result = check_claim(claim(), Evidence(math.nan, math.nan, math.nan))
    assert result.status == "not assessed"
    assert "undefined" in result.reason


@pytest.mark.parametrize("paper_effect,se,status,reason", [
    # MDE = 2.8016 * se: 0.28 at se 0.1
    (0.1, 0.1, "untestable at this scale", "the paper's effect 0.1 is below the smallest"),
    (0.5, 0.1, "not significant", "could have seen the paper's effect 0.5 (MDE 0.28)"),
    (None, 0.1, "not significant", "the paper gives no effect size"),
])
def test_not_significant_is_read_against_the_power_of_the_test(paper_effect, se, status,
                                                                 reason):
    result = check_claim(claim(paper_effect=paper_effect), Evidence(0.05, -0.15, 0.25, se=se))
    assert result.status == status
    assert reason in result.reason
    assert result.mde == pytest.approx(2.8016 * se, abs=1e-4)


def test_power_never_changes_a_decided_verdict_and_reads_the_bound():
    held = check_claim(claim(paper_effect=0.01), Evidence(1.0, 0.5, 1.5, se=0.25))
    assert (held.status, held.reason) == ("holds", "")
    # "larger by more than 0.05": the paper's 0.08 is 0.03 beyond the bound, below MDE 0.056
    bounded = check_claim(claim(bound=0.05, paper_effect=0.08),
                          Evidence(0.06, 0.03, 0.09, se=0.02))
    assert bounded.status == "untestable at this scale"
    assert "effect 0.03 is below" in bounded.reason
    exact = Evidence.exact(0.2, "A − B")
    assert exact.se == 0 and exact.mde == 0


def test_gates_and_premises_make_a_claim_not_assessed_but_keep_its_effect():
    premise = Claim("premise", "the teacher is more compact", "paper", "mean positive",
                    "exact", ("Teacher", "Student"))
    dependent = claim(id="dep", test="exact", requires=("premise",))
    other = Claim("other", "FCD beats the better of both", "paper", "TAR", "exact",
                  ("FCD", ("Student", "Teacher")))
    effects = {"premise": -0.05, "dep": 0.3, "other": 0.2}
    # estimates from trained models (an interval, a standard error), not exact counts
    tests = {"exact": lambda c: Evidence(effects[c.id], effects[c.id] - 0.01,
                                         effects[c.id] + 0.01, se=0.005, compared=c.id)}
    frame = evaluate_claims([premise, dependent, other], tests,
                            unhealthy={"Teacher": "seed 0: training top-1 40.0% < 90%"})
    rows = frame.set_index("id")
    # the premise itself involves the unhealthy teacher: not assessed, so "dep" is too
    assert rows.loc["premise", "status"] == "not assessed"
    assert "Teacher failed the training-health gate (seed 0" in rows.loc["premise", "reason"]
    assert rows.loc["dep", "status"] == "not assessed"
    assert rows.loc["dep", "reason"] == "premise 'premise' is not assessed"
    assert rows.loc["dep", "effect"] == 0.3
    assert "Teacher failed" in rows.loc["other", "reason"]

    counts = Claim("count", "FCD has fewer parameters", "paper", "params", "exact",
                   ("FCD", "Teacher"), direction="less")
    exact = evaluate_claims([counts], {"exact": lambda c: Evidence.exact(-0.4, "FCD − Teacher")},
                            unhealthy={"Teacher": "seed 0: ..."})
    assert exact.loc[0, "status"] == "holds"  # a count does not depend on training

    healthy = evaluate_claims([premise, dependent], tests).set_index("id")
    assert healthy.loc["premise", "status"] == "contradicted"
    assert healthy.loc["dep", "reason"] == "premise 'premise' is contradicted"
    effects["premise"] = 0.05
    assert evaluate_claims([premise, dependent], tests).set_index("id").loc[
        "dep", "status"] == "holds"
    with pytest.raises(ConfigError, match="requires \\['premise'\\], which must be listed"):
        evaluate_claims([dependent, premise], tests)


def test_one_evidence_type_built_from_a_bootstrap_or_an_exact_count():
    boot = BootstrapLike(effect=0.8, ci_low=0.3, ci_high=1.4, p_value=0.002, n_boot=2000)
    evidence = Evidence.from_bootstrap(boot, "A − B", n=300)
    result = check_claim(claim(), evidence)
    assert result.status == "holds" and result.p_value == 0.002 and result.n == 300
    assert result.evidence == "A − B; n=300; 2000 bootstrap resamples"
    exact = Evidence.exact(-0.3, "params")
    assert (exact.effect, exact.ci_low, exact.ci_high) == (-0.3, -0.3, -0.3)
    assert check_claim(claim("less"), exact).status == "holds"
    with pytest.raises(ConfigError, match="reversed"):
        Evidence(1.0, 2.0, 0.5)
    with pytest.raises(ConfigError, match="must be a number"):
        Evidence("big", 0.0, 1.0)
    with pytest.raises(ConfigError, match="returned dict; claim tests return Evidence"):
        check_claim(claim(), {"effect": 1.0, "ci_low": 0.0, "ci_high": 2.0})


def test_claims_are_validated():
    with pytest.raises(ConfigError, match="greater, less, no_greater, equivalent"):
        claim("bigger")
    with pytest.raises(ConfigError, match="statement must be a non-empty string"):
        Claim("x", " ", "src", "metric", "pairs:accuracy")
    assert claim(test="closeness:Teacher").test_argument == "Teacher"
    assert claim().test_name == "pairs"


def test_rival_is_the_named_model_or_the_best_of_several():
    scores = {"L_FM": 0.6, "L_SR": 0.7, "KD": 0.2}
    higher = Claim("x", "s", "src", "m", "t", ("ours", ("L_FM", "L_SR", "KD")))
    lower = Claim("y", "s", "src", "m", "t", ("ours", ("L_FM", "L_SR", "KD")),
                  direction="less")
    assert rival(higher, scores.get) == "L_SR" and rival(lower, scores.get) == "KD"
    assert best_of(higher, ["KD"], scores.get) == "KD"
    assert rival(claim()) == "Softmax"
    with pytest.raises(ConfigError, match="cannot rank"):
        rival(higher)
    with pytest.raises(ConfigError, match="needs two models"):
        rival(Claim("z", "s", "src", "m", "t", ("ours",)))


def test_one_evaluator_dispatches_on_the_declared_test(tmp_path):
    calls = []

    def pairs(c):
        calls.append((c.id, c.test_argument, c.compares, c.protocol))
        return Evidence(1.5, 0.4, 2.6, p_value=0.01, n=3000, compared="ArcFace - Softmax")

    claims = [
        Claim("margin>softmax", "Every margin beats Softmax", "ArcFace Sec. 3", "accuracy",
              "pairs:accuracy", ("ArcFace", "Softmax"), "lfw", paper_effect=0.55,
              paper_says="ArcFace wins"),
        Claim("al~bl", "AL is not clearly better than BL", "Thesis Table 3.1",
              "TAR@FAR=1e-4", "exact", ("AL", "BL"), direction="no_greater"),
    ]
    tests = {"pairs": pairs, "exact": lambda c: Evidence.exact(0.01, "AL − BL")}
    frame = evaluate_claims(claims, tests)
    assert calls == [("margin>softmax", "accuracy", ("ArcFace", "Softmax"), "lfw")]
    assert tuple(frame.columns) == COLUMNS
    assert list(frame["status"]) == ["holds", "contradicted"]
    assert frame.loc[0, "evidence"] == "ArcFace - Softmax; n=3000"
    assert frame.loc[0, "n"] == 3000 and pd.isna(frame.loc[1, "n"])
    assert frame.loc[0, "paper_effect"] == 0.55 and math.isnan(frame.loc[1, "paper_effect"])

    beside = claims_beside_paper(claims, frame).set_index("id")
    assert beside.loc["margin>softmax", "paper says"] == "ArcFace wins"
    assert beside.loc["al~bl", "paper says"] == "AL is not clearly better than BL"

    with pytest.raises(ConfigError, match="no claim test named 'exact'; available: pairs"):
        evaluate_claims(claims, {"pairs": pairs})
    with pytest.raises(ConfigError, match="two claims have the id 'al~bl'"):
        evaluate_claims([claims[1], claims[1]], tests)

    paths = save_claims(frame, tmp_path / "claims")
    back = pd.read_csv(paths["csv"])
    assert list(back.columns) == list(COLUMNS)
    np.testing.assert_allclose(back["effect"], [1.5, 0.01])
    np.testing.assert_allclose(back["p_value"], [0.01, np.nan])
    markdown = paths["md"].read_text().splitlines()
    assert markdown[0].startswith("| id | statement | source | status | effect | ci_low")
    assert markdown[2].startswith("| margin>softmax | Every margin beats Softmax |")
    assert "| holds | 1.5 | 0.4 | 2.6 | 0.01 |" in markdown[2]


def test_verdict_summary_reads_the_statuses_and_reasons():
    from fkdlib.report.claims import verdict_summary

    frame = pd.DataFrame({
        "id": ["a", "b", "c", "d"],
        "statement": ["A beats B", "C beats D", "E beats F", "G beats H"],
        "status": ["holds", "untestable at this scale", "holds", "not assessed"],
        "reason": ["", "the paper's effect 0.005 is below ... (MDE 0.02)", "",
                   "Teacher failed the training-health gate (seed 0: ...)"]})
    text = verdict_summary(frame)
    lines = text.splitlines()
    assert lines[0] == "**2 holds, 1 untestable at this scale, 1 not assessed** of 4 claims."
    assert "*Held:*" in lines and "- A beats B (`a`)" in lines and "- E beats F (`c`)" in lines
    assert "- C beats D (`b`) — the paper's effect 0.005 is below ... (MDE 0.02)" in lines
    assert lines.index("*Held:*") < lines.index("- A beats B (`a`)")
    assert "Contradicted" not in text
    assert verdict_summary(frame.iloc[:0]) == "No claim was checked."
