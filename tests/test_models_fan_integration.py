"""FAN-Face's integration layers (fkdlib.models.fan_integration): AdaIN statistics, each layer
computed by hand from its parts, parameter increments, the 1-M gates."""

import pytest
import torch
import torch.nn.functional as F

from fkdlib.errors import ConfigError
from fkdlib.models.fan_integration import (
    INTEGRATION_LAYERS,
    ONE_TO_MANY_GATE_START,
    AdvancedLayer,
    BasicLayer,
    GatedIntegration,
    SimpleLayer,
    adain,
)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_adain_gives_the_content_the_styles_channel_statistics():
    torch.manual_seed(0)
    content = torch.randn(3, 4, 6, 6) * 5.0 + 2.0
    style = torch.randn(3, 4, 6, 6) * torch.tensor([0.5, 1.0, 2.0, 3.0]).view(1, 4, 1, 1) - 1.0
    out = adain(content, style)
    torch.testing.assert_close(out.mean((2, 3)), style.mean((2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((2, 3), unbiased=False), style.std((2, 3), unbiased=False),
                               atol=1e-3, rtol=1e-3)
    # the content's spatial pattern survives: a per-channel affine map of it
    c = content[0, 0].flatten()
    o = out[0, 0].flatten()
    assert torch.corrcoef(torch.stack([c, o]))[0, 1] > 0.9999
    with pytest.raises(ConfigError, match="same batch and channels"):
        adain(content, style[:, :2])


def test_simple_layer_adds_the_aligned_fan_map():
    torch.manual_seed(1)
    point = GatedIntegration("simple", 16, 8).eval()
    fan, y = torch.randn(2, 16, 8, 8), torch.randn(2, 8, 8, 8)
    layer = point.layer
    assert isinstance(layer, SimpleLayer)
    expected = y + adain(layer.align[1](layer.align[0](fan)), y)
    torch.testing.assert_close(point(fan, y), expected)


def test_basic_layer_concatenates_then_mixes_back_to_the_recognition_channels():
    torch.manual_seed(2)
    layer = BasicLayer(16, 8).eval()
    fan, y = torch.randn(2, 16, 14, 14), torch.randn(2, 8, 7, 7)  # FAN map at twice the side
    resized = F.interpolate(fan, size=(7, 7), mode="bilinear", align_corners=False)
    aligned = adain(layer.align(resized), y)
    conv, bn, prelu = layer.mix
    torch.testing.assert_close(layer(fan, y), prelu(bn(conv(torch.cat([aligned, y], 1)))))
    assert layer(fan, y).shape == y.shape
    # BN(fan) + 1x1 fan->C + 1x1 2C->C + BN(C) + PReLU(C)
    assert _params(layer) == 2 * 16 + 16 * 8 + 2 * 8 * 8 + 2 * 8 + 8


def test_advanced_layer_replaces_the_mixing_convolution_by_a_bottleneck():
    layer = AdvancedLayer(16, 8)
    convs = [m for m in layer.mix if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (16, 4, (1, 1)), (4, 4, (3, 3)), (4, 8, (1, 1))]
    assert layer(torch.randn(1, 16, 4, 4), torch.randn(1, 8, 4, 4)).shape == (1, 8, 4, 4)


def test_one_to_many_gates_start_as_stated_and_learn():
    one_to_one = GatedIntegration("basic", 16, 8)
    assert one_to_one.gate is None
    gated = GatedIntegration("basic", 16, 8, gated=True)
    assert gated.gate.item() == ONE_TO_MANY_GATE_START == 1.0
    assert gated.gate.requires_grad
    gated(torch.randn(2, 16, 4, 4), torch.randn(2, 8, 4, 4)).sum().backward()
    assert gated.gate.grad is not None and gated.gate.grad.abs() > 0


def test_layers_are_chosen_by_name():
    assert INTEGRATION_LAYERS.names() == ["advanced", "basic", "simple"]
    with pytest.raises(ConfigError, match="known: advanced, basic, simple"):
        GatedIntegration("fancy", 16, 8)
