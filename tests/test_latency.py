"""Latency measured in one run, as ratios to a reference network."""

import pytest

from fkdlib.errors import ConfigError
from fkdlib.evaluation.latency import measure_latency


def test_measure_latency_ratios_and_call_pattern(sleeper):
    Sleeper = sleeper
    models = {"reference": Sleeper(0.02), "half": Sleeper(0.01)}
    table = measure_latency(models, input_size=4, batch_sizes=(1, 2), repeats=3, warmup=1,
                            reference="reference")
    ratio = table.set_index(["backbone", "batch"])["ratio to reference"]
    assert ratio[("reference", 1)] == ratio[("reference", 2)] == 1.0
    assert ratio[("half", 1)] == pytest.approx(0.5, abs=0.15)
    assert ratio[("half", 2)] == pytest.approx(0.5, abs=0.15)
    per_image = table.set_index(["backbone", "batch"])["per image (ms)"]
    assert per_image[("reference", 2)] == pytest.approx(20, rel=0.3)
    # warm-up once at the smallest batch, then 3 interleaved rounds per batch size
    assert models["half"].calls == [1, 1, 1, 1, 2, 2, 2]
    with pytest.raises(ConfigError, match="reference"):
        measure_latency({"half": Sleeper(0.0)}, input_size=4, reference="reference")
    with pytest.raises(ConfigError, match="repeats"):
        measure_latency(models, input_size=4, repeats=0)

