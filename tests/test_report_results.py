import json

import numpy as np
import pandas as pd
import pytest

from fkdlib.errors import ConfigError
from fkdlib.io import sha256_file
from fkdlib.report.results import latex_escape, markdown_table, save_table, side_by_side


def table():
    return pd.DataFrame({
        "method": ["arc_face", "soft|max", "cos%face"],
        "LFW": [99.8312, 97.88, np.nan],
        "pairs": [6000, 6000, 3000],
    })


def test_save_table_writes_every_format(tmp_path):
    paths = save_table(table(), tmp_path / "sub" / "verification", caption="LFW_like accuracy",
                       provenance={"profile": "smoke", "seed": 0})
    assert set(paths) == {"csv", "md", "tex", "provenance"}
    assert [p.name for p in sorted((tmp_path / "sub").iterdir())] == [
        "verification.csv", "verification.md", "verification.provenance.json", "verification.tex"]

    # CSV keeps full precision and round-trips.
    back = pd.read_csv(paths["csv"])
    pd.testing.assert_frame_equal(back, table())

    markdown = paths["md"].read_text().splitlines()
    assert markdown[0] == "LFW_like accuracy"
    assert markdown[2] == "| method | LFW | pairs |"
    assert markdown[3] == "|:---|---:|---:|"
    assert markdown[4] == "| arc_face | 99.83 | 6000 |"
    assert markdown[5] == "| soft\\|max | 97.88 | 6000 |"
    assert markdown[6] == "| cos%face | – | 3000 |"

    tex = paths["tex"].read_text()
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert tex.count(rule) == 1
    assert "\\caption{LFW\\_like accuracy}" in tex
    assert "arc\\_face & 99.83 & 6000 \\\\" in tex
    assert "cos\\%face & -- & 3000 \\\\" in tex
    assert "\\begin{tabular}{lrr}" in tex

    record = json.loads(paths["provenance"].read_text())
    assert record["provenance"] == {"profile": "smoke", "seed": 0}
    assert record["rows"] == 3 and record["columns"] == ["method", "LFW", "pairs"]
    assert record["files"] == {p.name: sha256_file(p)
                               for key, p in paths.items() if key != "provenance"}


def test_default_provenance_records_the_environment(tmp_path):
    paths = save_table(table(), tmp_path / "t")
    record = json.loads(paths["provenance"].read_text())["provenance"]
    assert {"time_utc", "python", "packages", "git_sha"} <= set(record)
    assert record["packages"]["pandas"] == pd.__version__


def test_float_format_and_named_index(tmp_path):
    frame = pd.DataFrame({"acc": [0.123456]}, index=pd.Index(["arcface"], name="method"))
    paths = save_table(frame, tmp_path / "t", float_format="{:.4f}")
    assert "| arcface | 0.1235 |" in paths["md"].read_text()
    assert list(pd.read_csv(paths["csv"]).columns) == ["method", "acc"]
    assert "0.123456" in paths["csv"].read_text()
    assert markdown_table(frame, float_format=lambda v: f"{100 * v:.1f}%").splitlines()[2] == \
        "| arcface | 12.3% |"


def test_bad_float_format_and_stem_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="float_format"):
        save_table(table(), tmp_path / "t", float_format="{:d}")
    with pytest.raises(ConfigError, match="DataFrame"):
        save_table([1, 2], tmp_path / "t")


def test_latex_escape():
    assert latex_escape("a_b & 5% {x} #1 $") == r"a\_b \& 5\% \{x\} \#1 \$"


def test_side_by_side_pairs_columns_and_keeps_row_order():
    ours = pd.DataFrame({"method": ["ArcFace", "Softmax", "Extra"], "LFW": [99.1, 98.2, 97.0],
                         "AUC": [0.99, 0.98, 0.9]})
    paper = pd.DataFrame({"method": ["Softmax", "ArcFace", "Norm"], "LFW": [97.88, 99.53, 99.0],
                          "YTF": [93.1, np.nan, 95.0]})
    both = side_by_side(ours, paper, on="method")
    assert list(both.columns) == ["method", "LFW (ours)", "LFW (paper)", "AUC (ours)",
                                  "YTF (paper)"]
    assert list(both["method"]) == ["ArcFace", "Softmax", "Extra", "Norm"]
    np.testing.assert_array_equal(both["LFW (ours)"], [99.1, 98.2, 97.0, np.nan])
    np.testing.assert_array_equal(both["LFW (paper)"], [99.53, 97.88, np.nan, 99.0])
    np.testing.assert_array_equal(both["YTF (paper)"], [np.nan, 93.1, np.nan, 95.0])


def test_side_by_side_refuses_missing_or_duplicated_keys():
    ours = pd.DataFrame({"method": ["a", "a"], "x": [1, 2]})
    paper = pd.DataFrame({"name": ["a"], "x": [1]})
    with pytest.raises(ConfigError, match="not in the paper table"):
        side_by_side(ours.iloc[:1], paper, on="method")
    with pytest.raises(ConfigError, match="not unique in the ours table"):
        side_by_side(ours, paper.rename(columns={"name": "method"}), on="method")
