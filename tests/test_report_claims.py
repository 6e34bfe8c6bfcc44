import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from fkdlib.errors import ConfigError
from fkdlib.report.claims import COLUMNS, Claim, ClaimSet, Evidence, verdict


@dataclass
class BootstrapLike:
    """The fields of fkdlib.evaluation.similarity.paired_bootstrap's result."""

    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    n_boot: int


def claim(direction, id="c"):
    return Claim(id, "ArcFace beats Softmax", "ArcFace Table 2", "accuracy (%)", direction)


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
    result = claim(direction).evaluate({"effect": (low + high) / 2, "ci_low": low, "ci_high": high})
    assert result.status == status
    assert result.effect == pytest.approx((low + high) / 2)


def test_smoke_profile_records_the_effect_without_a_verdict():
    result = claim("greater").evaluate(Evidence(1.2, 0.5, 2.0, compared="A - B"), assess=False)
    assert result.status == "not assessed"
    assert (result.effect, result.ci_low, result.ci_high) == (1.2, 0.5, 2.0)
    assert result.evidence == "A - B; not assessed at this profile"


def test_undefined_interval_is_not_assessed():
    result = claim("greater").evaluate({"effect": float("nan"), "ci_low": float("nan"),
                                        "ci_high": float("nan")})
    assert result.status == "not assessed"
    assert "undefined" in result.evidence


def test_bootstrap_result_fits_directly():
    boot = BootstrapLike(effect=0.8, ci_low=0.3, ci_high=1.4, p_value=0.002, n_boot=2000)
    result = claim("greater").evaluate(boot)
    assert result.status == "holds" and result.p_value == 0.002
    assert result.n is None
    assert result.evidence == "2000 bootstrap resamples"


def test_bad_evidence_is_refused_clearly():
    with pytest.raises(ConfigError, match="lacks ci_high"):
        claim("greater").evaluate({"effect": 1.0, "ci_low": 0.5})
    with pytest.raises(ConfigError, match="reversed"):
        claim("greater").evaluate(Evidence(1.0, 2.0, 0.5))
    with pytest.raises(ConfigError, match="must be a number"):
        claim("greater").evaluate({"effect": "big", "ci_low": 0.0, "ci_high": 1.0})


def test_claims_are_validated():
    with pytest.raises(ConfigError, match="greater, less, no_greater"):
        claim("bigger")
    with pytest.raises(ConfigError, match="statement must be a non-empty string"):
        Claim("x", " ", "src", "metric", "greater")


def test_claim_set_frame_and_files(tmp_path):
    claims = ClaimSet()
    claims.register("margin>softmax", "Every margin beats Softmax", "ArcFace Sec. 3",
                    "accuracy (%)", "greater")
    claims.register("al~bl", "AL is not clearly better than BL", "Thesis Table 3.1",
                    "TAR@FAR=1e-4", "no_greater")
    claims.register("pending", "Not run yet", "somewhere", "metric", "less")
    claims.evaluate("margin>softmax", {"effect": 1.5, "ci_low": 0.4, "ci_high": 2.6,
                                       "p_value": 0.01, "n": 3000, "compared": "ArcFace - Softmax"})
    claims.evaluate("al~bl", Evidence(0.01, -0.02, 0.04))
    with pytest.raises(ConfigError, match="already registered"):
        claims.register("al~bl", "dup", "src", "m", "greater")
    with pytest.raises(ConfigError, match="no claim 'nope'"):
        claims.evaluate("nope", Evidence(0, 0, 0))

    frame = claims.to_frame()
    assert tuple(frame.columns) == COLUMNS
    assert list(frame["status"]) == ["holds", "holds", "not evaluated"]
    assert frame.loc[0, "evidence"] == "ArcFace - Softmax; n=3000"
    assert frame.loc[0, "n"] == 3000 and pd.isna(frame.loc[1, "n"])
    assert math.isnan(frame.loc[2, "effect"])

    paths = claims.save(tmp_path / "claims")
    back = pd.read_csv(paths["csv"])
    assert list(back.columns) == list(COLUMNS)
    np.testing.assert_allclose(back["effect"], [1.5, 0.01, np.nan])
    np.testing.assert_allclose(back["p_value"], [0.01, np.nan, np.nan])
    markdown = paths["md"].read_text().splitlines()
    assert markdown[0].startswith("| id | statement | source | status | effect | ci_low")
    assert markdown[2].startswith("| margin>softmax | Every margin beats Softmax |")
    assert "| holds | 1.5 | 0.4 | 2.6 | 0.01 |" in markdown[2]
