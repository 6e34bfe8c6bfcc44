import math

import pandas as pd
import pytest

from fkdlib.errors import ConfigError
from fkdlib.report.references import (
    REFERENCE_COLUMNS,
    list_references,
    load_reference,
    reference_table,
)

# Every stored table is read by a notebook; a table nothing reads is not kept.
REQUIRED = [
    "arcface_combined_margin", "vargfacenet_official", "fanface_table_3_1", "fanface_table_3_2",
    "srrl_table_4_2",
    "srrl_table_4_3", "srrl_table_4_4", "srrl_table_4_5", "srrl_table_4_12", "srrl_table_4_13",
    "srrl_table_4_19", "insightface_model_sizes", "vargfacenet_size",
]


def value(name, method, metric, setting=""):
    frame = load_reference(name)
    row = frame[(frame["method"] == method) & (frame["metric"] == metric)
                & (frame["setting"] == setting)]
    assert len(row) == 1, (name, method, metric, setting)
    return row["value"].iloc[0]


def test_every_table_loads_with_its_source():
    names = list_references()
    assert set(names) == set(REQUIRED)
    for name in names:
        frame = load_reference(name)
        assert tuple(frame.columns) == REFERENCE_COLUMNS, name
        assert len(frame) > 0, name
        assert (frame["source"].str.strip() != "").all(), name
        assert (frame["method"].str.strip() != "").all(), name
        assert not frame.duplicated(["setting", "method", "metric"]).any(), name
        assert frame["value"].notna().any(), name
        assert frame["value"].dtype == float, name


@pytest.mark.parametrize("name,method,metric,setting,expected", [
    # insightface_model_sizes
    ("arcface_combined_margin", "ArcFace (1,0.5,0)", "LFW", "", 99.83),
    ("arcface_combined_margin", "Norm-Softmax", "CFP-FP", "", 88.50),
    ("arcface_combined_margin", "CM (1,0.3,0.2)", "AgeDB-30", "", 98.13),
    ("fanface_table_3_1", "AS5 ResNet34-Softmax", "TAR@FAR=1e-5", "", 0.619),
    ("fanface_table_3_1", "Baseline ArcFace (ResNet34)", "TAR@FAR=1e-3", "", 0.929),
    ("fanface_table_3_1", "AS7 Multi-task", "TAR@FAR=1e-2", "", 0.927),
    ("fanface_table_3_2", "H2, 1-M, BL", "Parameters", "ResNet50", 42.7),
    ("fanface_table_3_2", "H2, 1-1, AL", "FLOPs", "ResNet34", 4.87),
    ("insightface_model_sizes", "IResNet-100", "MACs", "", 12.09),
    # 02 VarGFaceNet
    ("vargfacenet_official", "recursive 2", "DeepGlint-light TPR@FPR=1e-8", "", 0.88784),
    ("vargfacenet_official", "from scratch", "CFP-FP", "", 98.086),
    ("vargfacenet_size", "VarGFaceNet (with SE)", "params", "", 5.20),
    # 03 SRRL
    ("srrl_table_4_12", "Ours", "Ver TAR@FAR=1e-6", "", 94.17),
    ("srrl_table_4_12", "Teacher", "Id rank-1", "", 98.82),
    ("srrl_table_4_2", "L_FM+L_SR", "Top-1", "conv4", 79.58),
    ("srrl_table_4_2", "Student (WRN-16-4)", "Top-1", "", 76.97),
    ("srrl_table_4_5", "Student", "L2 distance", "", 1.48),
    ("srrl_table_4_5", "L_FM+L_SR", "NMI", "", 79.85),
    ("srrl_table_4_3", "L_SR", "KL with teacher", "", 0.4828),
    ("srrl_table_4_4", "L_FM+L_SR-CE", "Top-1", "", 78.80),
    ("srrl_table_4_13", "PKT", "CPLFW", "", 89.93),
    ("srrl_table_4_19", "Ours (trained on D+U)", "CFP-FP", "", 92.91),
    ("srrl_table_4_2", "L_FM+L_SR", "Top-1", "conv2", 77.03),
])
def test_spot_checks_against_the_papers_and_the_thesis(name, method, metric, setting, expected):
    assert value(name, method, metric, setting) == pytest.approx(expected, abs=1e-9)


def test_missing_cells_are_nan_not_zero():
    assert math.isnan(value("vargfacenet_size", "VarGFaceNet (without SE)", "MACs"))


def test_reference_table_is_wide_in_the_papers_order():
    wide = reference_table("arcface_combined_margin")
    assert list(wide.columns) == ["method", "LFW", "CFP-FP", "AgeDB-30"]
    assert list(wide["method"]) == ["Norm-Softmax", "SphereFace (1.5,0,0)", "CosFace (1,0,0.35)",
                                    "ArcFace (1,0.5,0)", "CM (1,0.3,0.2)"]
    assert list(wide["CFP-FP"]) == [88.50, 94.17, 94.4, 94.04, 94.51]
    by_position = reference_table("srrl_table_4_2")
    assert list(by_position.columns) == ["setting", "method", "Top-1", "Top-5"]
    one_position = reference_table("srrl_table_4_2", setting="conv4")
    assert list(one_position["method"])[:3] == ["L_FM", "L_SR", "L_FM+L_SR"]
    assert one_position.set_index("method").loc["L_FM+L_SR", "Top-1"] == 79.58


def test_unknown_names_are_refused_with_the_list():
    with pytest.raises(ConfigError, match="available: arcface_combined_margin"):
        load_reference("arcface_table")
    with pytest.raises(ConfigError, match="no setting 'R18'"):
        reference_table("srrl_table_4_2", setting="R18")


def test_natural_order():
    names = list_references()
    assert names.index("srrl_table_4_2") < names.index("srrl_table_4_12")
    assert isinstance(load_reference(names[0]), pd.DataFrame)
