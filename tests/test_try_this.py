"""Each notebook's closing "Try this" list: every suggestion is a valid run, and what it says
about the model zoo (reuses the trained models, or retrains them) is true."""

import json
import re
from pathlib import Path

import pytest

from fkdlib.cli import build_parser
from fkdlib.evaluation.benchmark import face_benchmark
from fkdlib.experiments import arcface, fan_face, icd_face, srrl, vargfacenet
from fkdlib.profiles import get_profile, parse_overrides

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SUGGESTION = re.compile(r'^\d+\. \*\*(?P<title>[^*]+)\*\* `overrides = "(?P<overrides>[^"]+)"`, '
                        r"or `(?P<command>fkd reproduce [^`]+)`\. (?P<what>.+)$")


def suggestions(name: str) -> list[dict]:
    cells = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
    last = "".join(cells[-1]["source"])
    assert cells[-1]["cell_type"] == "markdown" and last.startswith("## Try this"), \
        f"{name} does not end with a 'Try this' list"
    found = [match.groupdict() for line in last.splitlines() if (match := SUGGESTION.match(line))]
    assert len(found) == sum(line[:1].isdigit() for line in last.splitlines())
    return found


def model_keys(name: str, overrides: dict) -> set[str]:
    profile = get_profile("default", **overrides)
    if name == "03_srrl":
        specs = srrl.specs(srrl.build_study(profile, 0))
    elif name == "05_fan_face":
        specs = fan_face.specs(face_benchmark(profile, 0, aligned=False))
    else:
        module = {"01_arcface": arcface, "02_vargfacenet": vargfacenet,
                  "04_icd_face": icd_face}[name]
        specs = module.specs(face_benchmark(profile, 0))
    return {spec.key for spec in specs.values()}


@pytest.mark.parametrize("name", sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
def test_every_suggestion_is_a_valid_run_and_says_truly_whether_it_retrains(name):
    items = suggestions(name)
    assert len(items) >= 3
    committed = model_keys(name, {})
    for item in items:
        args = build_parser().parse_args(item["command"].split()[1:])
        assert args.only == name
        assert parse_overrides(",".join(args.overrides)) == parse_overrides(item["overrides"])
        overrides = parse_overrides(item["overrides"])
        reuses = model_keys(name, overrides) == committed
        assert item["what"].startswith("Reuses") or item["what"].startswith("No retraining") \
            if reuses else "retrains" in item["what"].lower(), item
