"""FAN-Face (fkdlib.models.fan_face): what the FAN feeds the FRN in each ablation, the frozen
FAN, the parameter increments of the integration layers."""

import pytest
import torch

from fkdlib.errors import ConfigError
from fkdlib.models import create_model
from fkdlib.models.fan import FAN
from fkdlib.models.fan_face import FanFace, nearest_side

R18 = (2, 2, 2, 2)


def _params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _model(**options) -> FanFace:
    torch.manual_seed(0)
    fan = FAN(width=0.125, input_size=64)
    defaults = dict(input_size=64, width=0.125, embedding_size=16)
    return FanFace(R18, fan, **{**defaults, **options})


def test_the_frozen_fan_gets_no_gradient_and_stays_in_eval_mode():
    model = _model().train()
    assert not model.fan.training and model.layer1.training
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is None for p in model.fan.parameters())
    assert all(not p.requires_grad for p in model.fan.parameters())
    assert model.conv1.weight.grad is not None
    assert model.integrations[0].layer.mix[0].weight.grad is not None


def test_h2_stacks_the_heatmaps_with_the_image_and_h2_plus_at_every_later_stage():
    h2 = _model(heatmaps="h2", integration=None)
    assert h2.conv1.in_channels == 3 + 51 and h2.in_channels == 3
    features = h2.forward_features(torch.randn(2, 3, 64, 64))
    assert features["fan_heatmaps"].shape == (2, 51, 16, 16)
    assert features["embedding"].shape == (2, 16)
    plus = _model(heatmaps="h2+", integration=None)
    channels = plus.stage_channels
    assert [plus.layer2[0].conv1.in_channels, plus.layer3[0].conv1.in_channels,
            plus.layer4[0].conv1.in_channels] == [c + 51 for c in channels[:3]]
    assert plus(torch.randn(2, 3, 64, 64)).shape == (2, 16)


def test_one_to_one_joins_each_stage_end_and_one_to_many_every_block_with_a_gate():
    one = _model(connectivity="1-1")
    assert len(one.integrations) == 4
    assert all(point.gate is None for point in one.integrations)
    many = _model(connectivity="1-M")
    assert [len(stage) for stage in many.integrations] == list(R18)
    assert all(point.gate.item() == 1.0 for stage in many.integrations for point in stage)
    assert many(torch.randn(2, 3, 64, 64)).shape == (2, 16)


def test_fan_maps_are_taken_at_the_nearest_side():
    # FRN at 64 px: stage ends at 32, 16, 8, 4; FAN at 64 px: hourglass sides 16 .. 1
    assert [nearest_side([16, 8, 4, 2, 1], s) for s in (32, 16, 8, 4)] == [16, 16, 8, 4]
    assert nearest_side([32, 16], 24) == 32  # a tie on the log scale takes the larger
    x = torch.randn(2, 3, 64, 64)
    h2l = _model(fan_half="h2l").eval()
    l2h = _model(fan_half="l2h").eval()
    assert not torch.allclose(h2l(x), l2h(x))


def test_basic_layer_adds_its_own_parameters_and_nothing_else():
    base = _model(integration=None)
    basic = _model(integration="basic")
    fan_channels = basic.fan.features
    expected = sum(2 * fan_channels + fan_channels * c + 2 * c * c + 2 * c + c
                   for c in basic.stage_channels)
    assert _params(basic, True) - _params(base, True) == expected
    # frozen: the FAN, and (as in every IResNet) the embedding BatchNorm's fixed scale
    assert _params(basic) - _params(basic, True) == _params(basic.fan) + 16


def test_multitask_baseline_predicts_heatmaps_after_the_last_stage_without_a_fan():
    torch.manual_seed(0)
    model = FanFace(R18, None, heatmaps="none", integration=None, multitask=True,
                    input_size=64, width=0.125, embedding_size=16)
    assert model.fan is None
    features = model.forward_features(torch.randn(2, 3, 64, 64))
    assert features["heatmaps"].shape == (2, 51, 4, 4)
    with pytest.raises(ConfigError, match="multi-task baseline has no FAN"):
        _model(multitask=True)
    with pytest.raises(ConfigError, match="needs a FAN"):
        FanFace(R18, None, input_size=64, width=0.125)


def test_options_are_checked_and_the_registry_builds_it():
    with pytest.raises(ConfigError, match="connectivity must be one of"):
        _model(connectivity="1-2")
    with pytest.raises(ConfigError, match="integration must be one of"):
        _model(integration="fancy")
    model = create_model("fan_face", depth=18, input_size=64, width=0.125, fan_width=0.125)
    assert model.fan.input_size == 64
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 512)
