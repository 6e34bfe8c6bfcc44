"""Parameter and FLOP counting against hand computations."""

import pytest
import torch
from torch import nn

from fkdlib.errors import ConfigError
from fkdlib.evaluation.complexity import (
    ComplexityReport,
    count_flops,
    count_parameters,
    profile_model,
)


def test_single_conv2d_macs_and_flops_by_hand():
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
    report = count_flops(conv, 10)
    # Output 8 x 5 x 5, each a 3*3*3-term dot product; the bias addition is not a MAC.
    assert report.macs == 8 * 5 * 5 * 3 * 3 * 3 == 5400
    assert report.flops == 2 * 5400
    assert report.params == 8 * 3 * 3 * 3 + 8
    assert report.input_shape == (1, 3, 10, 10)


def test_grouped_and_rectangular_conv_by_hand():
    conv = nn.Conv2d(8, 12, kernel_size=(3, 1), groups=4, bias=False)
    report = count_flops(conv, (7, 5), channels=8, batch=3)
    # Output 12 x 5 x 5 per image; each output sees 8/4 input channels over a 3x1 window.
    assert report.macs == 3 * 12 * 5 * 5 * (8 // 4) * 3 * 1
    assert report.params == 12 * 2 * 3


def test_linear_macs_scale_with_batch():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
    one = count_flops(model, 4)
    assert one.macs == 48 * 10 and one.params == 48 * 10 + 10
    assert count_flops(model, 4, batch=5).macs == 5 * one.macs


def test_elementwise_layers_cost_nothing():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.PReLU(3), nn.ReLU())
    assert count_flops(model, 8).macs == 0


def test_trainable_only_skips_frozen_parameters_and_shared_ones_count_once():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 2))
    assert count_parameters(model) == 20 + 10
    model[3].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 20 + 2


def test_mode_is_restored_and_meta_models_work():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    report = count_flops(model, 6)
    assert model.training
    assert report.macs == 4 * 3 * 36


def test_report_labels_both_conventions():
    report = ComplexityReport(params=2_000_000, macs=3_000_000_000, flops=6_000_000_000,
                              input_shape=(1, 3, 112, 112))
    assert report.params_m == 2.0 and report.gmacs == 3.0 and report.gflops == 6.0
    text = str(report)
    assert "GMACs" in text and "GFLOPs (2 x MACs)" in text and "1x3x112x112" in text
    assert report.to_dict()["gflops"] == 6.0


def test_profile_model_builds_on_meta_and_matches_the_reference():
    report = profile_model("iresnet50", 112)
    assert report.params / 1e6 == pytest.approx(43.59, rel=0.01)
    assert report.gmacs == pytest.approx(6.31, rel=0.01)
    assert report.flops == 2 * report.macs
    stacked = profile_model("iresnet18", 16, width=0.125, in_channels=5)
    assert stacked.input_shape == (1, 5, 16, 16)


@pytest.mark.parametrize("kwargs", [{"input_size": 0}, {"input_size": (8, 8, 8)},
                                    {"input_size": 8, "batch": 0},
                                    {"input_size": 8, "channels": 1.5}])
def test_bad_sizes_are_refused(kwargs):
    with pytest.raises(ConfigError):
        count_flops(nn.Conv2d(3, 3, 1), **kwargs)
