"""IResNet against insightface's reference sizes, closed-form counts and hand-computed blocks."""

import pytest
import torch
import torch.nn.functional as F

from fkdlib.errors import ConfigError
from fkdlib.evaluation.complexity import count_flops, count_parameters
from fkdlib.models import create_model
from fkdlib.models.iresnet import IBasicBlock
from fkdlib.models.layers import scale_channels

DEPTHS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
# insightface_model_sizes: computed from insightface's code at 112x112, 512-d.
REFERENCE_PARAMS_M = {"iresnet18": 24.03, "iresnet34": 34.14, "iresnet50": 43.59,
                      "iresnet100": 65.16}
REFERENCE_GMACS = {"iresnet18": 2.61, "iresnet34": 4.46, "iresnet50": 6.31, "iresnet100": 12.09}


def closed_form_counts(depths, input_size, width, embedding, in_channels=3):
    """Parameters and conv/linear MACs of IResNet, written out from the architecture alone."""
    channels = [scale_channels(c, width) for c in (64, 128, 256, 512)]
    params = in_channels * 9 * channels[0] + 3 * channels[0]  # stem conv, BN (2), PReLU (1)
    macs = in_channels * 9 * channels[0] * input_size**2
    resolution, previous = input_size, channels[0]
    for depth, out in zip(depths, channels):
        for index in range(depth):
            cin = previous if index == 0 else out
            res_in = resolution
            res_out = resolution // 2 if index == 0 else resolution
            # bn1 (2 cin) + conv1 + bn2 (2 out) + prelu (out) + conv2 + bn3 (2 out)
            params += 2 * cin + 9 * cin * out + 3 * out + 9 * out * out + 2 * out
            macs += 9 * cin * out * res_in**2 + 9 * out * out * res_out**2
            if index == 0:  # 1x1 stride-2 shortcut with BN
                params += cin * out + 2 * out
                macs += cin * out * res_out**2
            resolution = res_out
        previous = out
    flat = channels[-1] * (input_size // 16) ** 2
    params += 2 * channels[-1] + flat * embedding + embedding + 2 * embedding  # bn2, fc, bn1d
    macs += flat * embedding
    return params, macs


@pytest.mark.parametrize("name", sorted(DEPTHS))
def test_size_and_cost_at_112_match_papers_md_within_one_percent(name):
    with torch.device("meta"):
        model = create_model(name)
    report = count_flops(model, 112)
    assert report.params / 1e6 == pytest.approx(REFERENCE_PARAMS_M[name], rel=0.01)
    assert report.macs / 1e9 == pytest.approx(REFERENCE_GMACS[name], rel=0.01)
    assert (report.params, report.macs) == closed_form_counts(DEPTHS[name], 112, 1.0, 512)


@pytest.mark.parametrize(
    "name, input_size, width, embedding",
    [("iresnet18", 48, 0.25, 128), ("iresnet50", 16, 0.125, 64), ("iresnet34", 64, 0.5, 256)],
)
def test_counts_follow_the_closed_form_for_other_sizes_and_widths(name, input_size, width,
                                                                  embedding):
    with torch.device("meta"):
        model = create_model(name, input_size=input_size, width=width, embedding_size=embedding)
    report = count_flops(model, input_size)
    assert (report.params, report.macs) == closed_form_counts(
        DEPTHS[name], input_size, width, embedding
    )


def test_forward_features_names_shapes_and_fc_input_length():
    torch.manual_seed(0)
    model = create_model("iresnet18", input_size=32, width=0.25, embedding_size=40).eval()
    assert model.stage_channels == [16, 32, 64, 128]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        embedding = model(x)
    expected = {
        "stem": (2, 16, 32, 32),
        "layer1": (2, 16, 16, 16),
        "layer2": (2, 32, 8, 8),
        "layer3": (2, 64, 4, 4),
        "layer4": (2, 128, 2, 2),
        "pooled": (2, 128 * 2 * 2),  # 512 * width * (input_size / 16)^2
        "embedding": (2, 40),
    }
    assert {k: tuple(v.shape) for k, v in features.items()} == expected
    assert model.head.fc.in_features == 128 * 2 * 2
    torch.testing.assert_close(embedding, features["embedding"])
    # pooled is the flattened BN2d output, and the embedding is BN1d(FC(pooled)) (no dropout).
    torch.testing.assert_close(features["pooled"], model.bn2(features["layer4"]).flatten(1))
    head = model.head
    manual = F.batch_norm(
        F.linear(features["pooled"], head.fc.weight, head.fc.bias),
        head.bn.running_mean, head.bn.running_var, head.bn.weight, head.bn.bias, eps=1e-5,
    )
    torch.testing.assert_close(embedding, manual)


def test_ibasicblock_matches_a_hand_written_forward():
    torch.manual_seed(1)
    block = IBasicBlock(8, 16, stride=2)
    for bn in (block.bn1, block.bn2, block.bn3, block.downsample.bn):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.normal_()
        bn.bias.data.normal_()
    block.prelu.weight.data.uniform_(-0.5, 0.5)
    block.eval()
    x = torch.randn(2, 8, 10, 10)

    def bn(layer, t):
        return F.batch_norm(t, layer.running_mean, layer.running_var, layer.weight, layer.bias,
                            eps=1e-5)

    out = bn(block.bn1, x)
    out = F.conv2d(out, block.conv1.weight, padding=1)
    out = F.prelu(bn(block.bn2, out), block.prelu.weight)
    out = bn(block.bn3, F.conv2d(out, block.conv2.weight, stride=2, padding=1))
    shortcut = bn(block.downsample.bn, F.conv2d(x, block.downsample.conv.weight, stride=2))
    with torch.no_grad():
        torch.testing.assert_close(block(x), out + shortcut)  # no activation after the sum
    assert all(m.eps == 1e-5 for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_identity_shortcut_inside_a_stage():
    block = IBasicBlock(8, 8, stride=1)
    assert block.downsample is None
    # Zeroing the last BN's scale and shift leaves only the shortcut: the block is the identity.
    torch.nn.init.zeros_(block.bn3.weight)
    torch.nn.init.zeros_(block.bn3.bias)
    x = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(block.eval()(x), x)


def test_embedding_bn_weight_is_fixed_at_one_and_not_trained():
    torch.manual_seed(2)
    model = create_model("iresnet18", input_size=16, width=0.125, embedding_size=8)
    weight, bias = model.head.bn.weight, model.head.bn.bias
    assert not weight.requires_grad and torch.equal(weight, torch.ones(8))
    assert count_parameters(model) - count_parameters(model, trainable_only=True) == 8
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, weight_decay=0.1)
    bias_before = bias.detach().clone()
    model(torch.randn(4, 3, 16, 16)).pow(2).sum().backward()
    optimizer.step()
    assert torch.equal(weight, torch.ones(8))
    assert not torch.equal(bias, bias_before)


def test_dropout_acts_only_after_the_pooled_feature():
    torch.manual_seed(3)
    model = create_model("iresnet18", input_size=16, width=0.125, embedding_size=8, dropout=0.5)
    model.train()
    features = model.forward_features(torch.randn(4, 3, 16, 16))
    # Dropout is not in-place: "pooled" keeps no zeroed entries from it.
    expected = model.bn2(features["layer4"]).flatten(1)
    torch.testing.assert_close(features["pooled"], expected)
    assert model.head.dropout.p == 0.5


def test_convolutions_use_the_insightface_initialisation():
    torch.manual_seed(4)
    model = create_model("iresnet50", input_size=16, width=0.5)
    weights = torch.cat([m.weight.flatten() for m in model.modules()
                         if isinstance(m, torch.nn.Conv2d)])
    assert weights.mean().item() == pytest.approx(0.0, abs=2e-3)
    assert weights.std().item() == pytest.approx(0.1, rel=0.02)


def test_extra_input_channels_for_stacked_heatmaps():
    model = create_model("iresnet18", input_size=16, width=0.125, in_channels=5).eval()
    assert model.conv1.in_channels == 5
    assert model(torch.randn(1, 5, 16, 16)).shape == (1, 512)


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (1, 1, 16, 16), (3, 16, 16)])
def test_wrong_input_shape_says_what_the_model_was_built_for(shape):
    model = create_model("iresnet18", input_size=16, width=0.125).eval()
    with pytest.raises(ConfigError) as excinfo:
        model(torch.randn(*shape))
    message = str(excinfo.value)
    assert "(batch, 3, 16, 16)" in message and str(tuple(shape)) in message


@pytest.mark.parametrize(
    "width, expected",
    [(1.0, [64, 128, 256, 512]), (0.25, [16, 32, 64, 128]), (0.1, [8, 16, 24, 48]),
     (0.01, [8, 8, 8, 8]), (1.5, [96, 192, 384, 768])],
)
def test_width_rounds_to_the_nearest_multiple_of_eight_and_at_least_eight(width, expected):
    with torch.device("meta"):
        model = create_model("iresnet18", width=width)
    assert model.stage_channels == expected
