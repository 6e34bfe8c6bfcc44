"""FAN (fkdlib.models.fan): parameter counts against the published architecture, shapes of the
maps FAN-Face integrates, and the hourglass and ConvBlock wiring computed by hand."""

import pytest
import torch
import torch.nn.functional as F

from fkdlib.errors import ConfigError
from fkdlib.models import create_model
from fkdlib.models.fan import FAN, ConvBlock, Hourglass


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _bn(c: int) -> int:
    return 2 * c


def _conv_block(i: int, o: int) -> int:
    """Learnable parameters of ConvBlock(i, o) from its description (3x3 convs without bias)."""
    half, quarter = o // 2, o // 4
    count = _bn(i) + 9 * i * half + _bn(half) + 9 * half * quarter + _bn(quarter)
    count += 9 * quarter * quarter
    return count + (_bn(i) + i * o if i != o else 0)


def _fan(stacks: int, points: int, c64: int = 64, c128: int = 128, f: int = 256,
         depth: int = 4) -> int:
    stem = 3 * c64 * 49 + c64 + _bn(c64) + _conv_block(c64, c128) + _conv_block(c128, c128)
    stem += _conv_block(c128, f)
    hourglass = (3 * depth + 1) * _conv_block(f, f)
    head = _conv_block(f, f) + (f * f + f) + _bn(f) + (f * points + points)
    between = (f * f + f) + (points * f + f)
    return stem + stacks * (hourglass + head) + (stacks - 1) * between


def test_full_width_parameter_counts_match_the_published_network():
    # The published 2D-FAN (4 stacks, 68 points) has 23.82M parameters: its released weights,
    # 2DFAN4, are about 91 MiB of float32 (23,820,176 x 4 bytes = 90.9 MiB).
    assert _fan(4, 68) == 23_820_176
    assert _params(FAN(stacks=4, num_landmarks=68)) == 23_820_176
    assert _params(FAN()) == _fan(2, 51)  # FAN-Face's two stacks and 51 heatmaps
    assert _params(FAN(stacks=1, num_landmarks=68)) == _fan(1, 68)


def test_width_scales_every_channel_count():
    model = FAN(width=0.25)
    assert model.features == 64
    assert _params(model) == _fan(2, 51, c64=16, c128=32, f=64)


def test_heatmaps_and_both_halves_of_the_last_hourglass_have_the_stated_shapes():
    torch.manual_seed(0)
    model = create_model("fan", width=0.125).eval()
    out = model.forward_features(torch.randn(2, 3, 64, 64))
    assert [h.shape for h in out.heatmaps] == [(2, 51, 16, 16)] * 2
    assert sorted(out.high_to_low) == sorted(out.low_to_high) == [1, 2, 4, 8, 16]
    for side in (1, 2, 4, 8, 16):
        assert out.high_to_low[side].shape == (2, model.features, side, side)
        assert out.low_to_high[side].shape == (2, model.features, side, side)
    assert torch.equal(model(torch.zeros(1, 3, 128, 128))[1],
                       model.forward_features(torch.zeros(1, 3, 128, 128)).heatmaps[1])


def test_inputs_that_the_hourglass_cannot_halve_are_refused():
    model = FAN(width=0.125)
    with pytest.raises(ConfigError, match="multiple of 64"):
        model(torch.zeros(1, 3, 96, 96))
    with pytest.raises(ConfigError, match="square"):
        model(torch.zeros(1, 3, 64, 128))


def test_conv_block_concatenates_three_chained_branches_onto_the_projected_input():
    torch.manual_seed(1)
    block = ConvBlock(8, 16).eval()
    x = torch.randn(2, 8, 5, 5)
    a = block.branches[0](x)
    b = block.branches[1](a)
    c = block.branches[2](b)
    assert (a.shape[1], b.shape[1], c.shape[1]) == (8, 4, 4)
    torch.testing.assert_close(block(x), torch.cat([a, b, c], 1) + block.shortcut(x))
    same = ConvBlock(16, 16).eval()
    y = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(
        same(y), torch.cat([same.branches[0](y), same.branches[1](same.branches[0](y)),
                            same.branches[2](same.branches[1](same.branches[0](y)))], 1) + y)
    with pytest.raises(ConfigError, match="divisible by 4"):
        ConvBlock(8, 10)


def test_hourglass_of_depth_two_computed_by_hand():
    torch.manual_seed(2)
    hg = Hourglass(2, 8).eval()
    x = torch.randn(1, 8, 8, 8)
    down1 = hg.down[0](F.max_pool2d(x, 2))
    down2 = hg.down[1](F.max_pool2d(down1, 2))
    up2 = hg.up[1](hg.bottom(down2))
    level1 = hg.upper[1](down1) + F.interpolate(up2, scale_factor=2.0, mode="nearest")
    up1 = hg.up[0](level1)
    expected = hg.upper[0](x) + F.interpolate(up1, scale_factor=2.0, mode="nearest")
    out, high_to_low, low_to_high = hg(x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(high_to_low[8], hg.upper[0](x))
    torch.testing.assert_close(high_to_low[4], down1)
    torch.testing.assert_close(high_to_low[2], down2)
    torch.testing.assert_close(low_to_high[2], up2)
    torch.testing.assert_close(low_to_high[4], up1)
    torch.testing.assert_close(low_to_high[8], expected)


def test_second_stack_sees_the_first_stacks_features_and_heatmaps():
    torch.manual_seed(3)
    model = FAN(width=0.125).eval()
    x = torch.randn(1, 3, 64, 64)
    stem = model.stem(x)
    out1, _, _ = model.hourglasses[0](stem)
    head1 = model.heads[0](out1)
    heat1 = model.to_heatmaps[0](head1)
    again = stem + model.features_back[0](head1) + model.heatmaps_back[0](heat1)
    out2, _, _ = model.hourglasses[1](again)
    heat2 = model.to_heatmaps[1](model.heads[1](out2))
    got = model(x)
    torch.testing.assert_close(got[0], heat1)
    torch.testing.assert_close(got[1], heat2)


def test_input_size_must_survive_the_stem_and_every_halving():
    assert FAN(width=0.125, input_size=64).input_size == 64
    with pytest.raises(ConfigError, match="multiple of 64"):
        FAN(width=0.125, input_size=112)
    with pytest.raises(ConfigError, match="multiple of 16"):
        FAN(width=0.125, depth=2, input_size=40)


def test_profile_model_counts_the_fan():
    from fkdlib.evaluation.complexity import profile_model

    report = profile_model("fan", input_size=256)
    assert report.params == _fan(2, 51)
    assert report.input_shape == (1, 3, 256, 256)
