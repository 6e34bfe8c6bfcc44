"""Notebook 05's size and cost table (fkdlib.experiments.fan_face) against hand counts."""

import pytest

from fkdlib.experiments.fan_face import complexity_table

STAGES = ((64, 56), (128, 28), (256, 14), (512, 7))  # IResNet channels and sides at 112 px
H2_PARAMS = 51 * 64 * 9  # the first convolution also reads the 51 heatmaps
H2_MACS = H2_PARAMS * 112 * 112


@pytest.fixture(scope="module")
def table():
    return complexity_table(112).set_index(["network", "variant"])


def test_baselines_are_insightfaces_iresnets_and_the_thesis_numbers_sit_beside_them(table):
    r34 = table.loc[("ResNet34", "ArcFace (baseline)")]
    assert r34["params_M"] == pytest.approx(34.14, abs=0.005)
    assert r34["GMACs"] == pytest.approx(4.46, abs=0.005)
    assert r34["thesis_params_M"] == 31.8 and r34["thesis_GFLOPs"] == 3.71
    bl50 = table.loc[("ResNet50", "H2, 1-1, BL")]
    assert bl50["thesis_params_added_M"] == pytest.approx(0.4)
    assert bl50["thesis_GFLOPs_added"] == pytest.approx(0.54)


def test_basic_layer_increments_counted_by_hand(table):
    # per stage: BN(256) + 1x1 256->c + 1x1 2c->c + BN(c) + PReLU(c); the FAN is left out
    params = H2_PARAMS + sum(2 * 256 + 256 * c + 2 * c * c + 3 * c for c, _ in STAGES)
    macs = H2_MACS + sum((256 * c + 2 * c * c) * side * side for c, side in STAGES)
    for network in ("ResNet34", "ResNet50"):
        row = table.loc[(network, "H2, 1-1, BL")]
        assert row["params_added_M"] * 1e6 == pytest.approx(params, abs=0.5)
        assert row["GMACs_added"] * 1e9 == pytest.approx(macs, abs=0.5)


def test_simple_layer_adds_only_the_alignment(table):
    macs = H2_MACS + sum(256 * c * side * side for c, side in STAGES)
    assert table.loc[("ResNet34", "H2, 1-1, SL"), "GMACs_added"] * 1e9 == pytest.approx(macs,
                                                                                        abs=0.5)
