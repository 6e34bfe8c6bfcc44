"""CIFAR backbones (WRN, CIFAR ResNet, MobileNetV2): published sizes, closed-form parameter
counts, feature shapes and hand-made block cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from fkdlib.errors import ConfigError
from fkdlib.evaluation.complexity import count_parameters
from fkdlib.heads import SoftmaxHead
from fkdlib.models import cifar
from fkdlib.models.cifar import (
    BasicBlock,
    CifarResNet,
    InvertedResidual,
    MobileNetV2Cifar,
    PreActWideBlock,
    WideResNet,
)
from fkdlib.models.registry import create_model, list_models

# Parameters (millions) with a 100-way linear classifier, as printed. WRN-40-4, WRN-16-4 and
# WRN-16-2: thesis Table 4.8. The others: the CRD benchmark models of RepDistiller (Tian et al.
# 2020), whose code gives 2,255,156 / 861,620 / 278,324 / 7,433,860 / 1,233,540 / 812,836.
PUBLISHED_CIFAR100 = [
    ("wrn_40_4", {}, "8.97"),
    ("wrn_16_4", {}, "2.77"),
    ("wrn_40_2", {}, "2.26"),
    ("wrn_16_2", {}, "0.70"),
    ("resnet56", {}, "0.86"),
    ("resnet20", {}, "0.28"),
    ("resnet32x4", {}, "7.43"),
    ("resnet8x4", {}, "1.23"),
    ("mobilenetv2_cifar", {"width": 0.5}, "0.81"),
    # Thesis Table 4.8, WRN-10-10 and WRN-16-10.
    ("wide_resnet", {"depth": 10, "widen": 10}, "7.49"),
    ("wide_resnet", {"depth": 16, "widen": 10}, "17.2"),
]
# Thesis Table 4.7 (CIFAR-10, 10-way classifier). The thesis prints ResNet14 as 0.17M where its
# 175,258 parameters round to 0.18M (WRN-16-1's 175,066 is printed 0.18M): one unit of the last
# printed digit is allowed.
PUBLISHED_CIFAR10 = [
    ("wrn_16_1", "0.18"),
    ("wrn_16_2", "0.69"),
    ("wrn_40_2", "2.2"),
    ("resnet8", "0.08"),
    ("resnet14", "0.17"),
    ("resnet26", "0.37"),
]
CIFAR_MODELS = {
    "wide_resnet": WideResNet,
    "wrn_16_1": WideResNet,
    "wrn_16_2": WideResNet,
    "wrn_16_4": WideResNet,
    "wrn_40_1": WideResNet,
    "wrn_40_2": WideResNet,
    "wrn_40_4": WideResNet,
    "resnet8": CifarResNet,
    "resnet14": CifarResNet,
    "resnet20": CifarResNet,
    "resnet26": CifarResNet,
    "resnet32": CifarResNet,
    "resnet44": CifarResNet,
    "resnet56": CifarResNet,
    "resnet110": CifarResNet,
    "resnet8x4": CifarResNet,
    "resnet32x4": CifarResNet,
    "mobilenetv2_cifar": MobileNetV2Cifar,
}


def classifier_params(name, num_classes, **options):
    """Backbone + SoftmaxHead parameters, counted on the meta device."""
    with torch.device("meta"):
        backbone = create_model(name, **options)
        head = SoftmaxHead(backbone.embedding_size, num_classes)
    return count_parameters(backbone) + count_parameters(head)


@pytest.mark.parametrize("name, options, published", PUBLISHED_CIFAR100)
def test_cifar100_parameter_counts_match_the_published_ones(name, options, published):
    params_m = classifier_params(name, 100, **options) / 1e6
    decimals = len(published.split(".")[1])
    assert round(params_m, decimals) == float(published)
    assert abs(params_m - float(published)) / float(published) < 0.02


def test_repdistiller_exact_counts():
    # Counted from RepDistiller's models/{wrn,resnet,mobilenetv2}.py with num_classes=100.
    assert classifier_params("wrn_40_2", 100) == 2_255_156
    assert classifier_params("resnet56", 100) == 861_620
    assert classifier_params("resnet32x4", 100) == 7_433_860
    assert classifier_params("mobilenetv2_cifar", 100) == 812_836


def test_thesis_mobilenetv2_is_the_full_width_network():
    # Thesis Table 4.8 prints MobileNetV2 (2.37M); RepDistiller's width-1.0 network has 2.35M.
    params_m = classifier_params("mobilenetv2_cifar", 100, width=1.0) / 1e6
    assert abs(params_m - 2.37) / 2.37 < 0.01


@pytest.mark.parametrize("name, published", PUBLISHED_CIFAR10)
def test_cifar10_parameter_counts_match_thesis_table_4_7(name, published):
    params_m = classifier_params(name, 10) / 1e6
    unit = 10.0 ** -len(published.split(".")[1])
    assert abs(params_m - float(published)) <= unit


def wrn_params_closed_form(depth, widen):
    """Count of WRN-D-k conv and BN weights from the block structure (Zagoruyko 2016)."""
    blocks = (depth - 4) // 6
    total, previous = 3 * 9 * 16, 16
    for group, channels in enumerate((16 * widen, 32 * widen, 64 * widen)):
        for index in range(blocks):
            c_in = previous if index == 0 else channels
            total += 2 * c_in + 9 * c_in * channels + 2 * channels + 9 * channels * channels
            if index == 0 and (c_in != channels or group > 0):
                total += c_in * channels  # 1x1 projection shortcut
        previous = channels
    return total + 2 * 64 * widen  # final BN


def resnet_params_closed_form(depth, channels):
    blocks = (depth - 2) // 6
    total = 27 * channels[0] + 2 * channels[0]
    previous = channels[0]
    for group, width in enumerate(channels[1:]):
        for index in range(blocks):
            c_in = previous if index == 0 else width
            total += 9 * c_in * width + 2 * width + 9 * width * width + 2 * width
            if index == 0 and (c_in != width or group > 0):
                total += c_in * width + 2 * width  # 1x1 conv + BN shortcut
        previous = width
    return total


def mobilenetv2_params_closed_form(width, expansion):
    groups = [(1, 16, 1), (expansion, 24, 2), (expansion, 32, 3), (expansion, 64, 4),
              (expansion, 96, 3), (expansion, 160, 3), (expansion, 320, 1)]
    stem = int(32 * width)
    total, previous = 27 * stem + 2 * stem, stem
    for ratio, channels, count in groups:
        out = int(channels * width)
        for index in range(count):
            c_in = previous if index == 0 else out
            hidden = c_in * ratio
            total += c_in * hidden + 2 * hidden + 9 * hidden + 2 * hidden + hidden * out + 2 * out
        previous = out
    last = 1280 if width <= 1 else int(1280 * width)
    return total + previous * last + 2 * last


@pytest.mark.parametrize("depth, widen", [(10, 1), (16, 3), (22, 2), (28, 1), (40, 4)])
def test_wrn_parameters_follow_the_closed_form(depth, widen):
    with torch.device("meta"):
        model = create_model("wide_resnet", depth=depth, widen=widen)
    assert count_parameters(model) == wrn_params_closed_form(depth, widen)
    assert model.embedding_size == 64 * widen
    assert model.stage_channels == [16 * widen, 32 * widen, 64 * widen]


@pytest.mark.parametrize("depth, channels", [(8, (16, 16, 32, 64)), (20, (16, 16, 32, 64)),
                                             (110, (16, 16, 32, 64)), (32, (32, 64, 128, 256)),
                                             (14, (8, 24, 48, 96))])
def test_resnet_parameters_follow_the_closed_form(depth, channels):
    with torch.device("meta"):
        model = CifarResNet(depth, channels)
    assert count_parameters(model) == resnet_params_closed_form(depth, channels)
    assert model.embedding_size == channels[-1]


@pytest.mark.parametrize("width, expansion", [(0.5, 6), (1.0, 6), (0.25, 4), (1.5, 6)])
def test_mobilenetv2_parameters_follow_the_closed_form(width, expansion):
    with torch.device("meta"):
        model = create_model("mobilenetv2_cifar", width=width, expansion=expansion)
    assert count_parameters(model) == mobilenetv2_params_closed_form(width, expansion)
    assert model.embedding_size == (1280 if width <= 1 else int(1280 * width))


def expected_shapes(model, batch, size):
    if isinstance(model, MobileNetV2Cifar):
        w = model.width
        return {"stem": (batch, int(32 * w), size // 2, size // 2),
                "layer1": (batch, int(24 * w), size // 2, size // 2),
                "layer2": (batch, int(32 * w), size // 4, size // 4),
                "layer3": (batch, int(96 * w), size // 8, size // 8),
                "layer4": (batch, int(320 * w), size // 16, size // 16),
                "pooled": (batch, model.embedding_size),
                "embedding": (batch, model.embedding_size)}
    stem = 16 if isinstance(model, WideResNet) else model.conv1.out_channels
    c1, c2, c3 = model.stage_channels
    return {"stem": (batch, stem, size, size), "layer1": (batch, c1, size, size),
            "layer2": (batch, c2, size // 2, size // 2),
            "layer3": (batch, c3, size // 4, size // 4),
            "pooled": (batch, c3), "embedding": (batch, c3)}


@pytest.mark.parametrize("name", sorted(CIFAR_MODELS))
def test_every_model_is_registered_with_the_feature_interface(name):
    assert name in list_models()
    with torch.device("meta"):
        model = create_model(name)
        features = model.forward_features(torch.empty(2, 3, 32, 32))
    assert isinstance(model, CIFAR_MODELS[name])
    shapes = {key: tuple(value.shape) for key, value in features.items()}
    assert shapes == expected_shapes(model, 2, 32)
    assert list(features) == ["stem", *model.stage_names, "pooled", "embedding"]
    assert model.stage_channels == [shapes[stage][1] for stage in model.stage_names]


def test_other_input_sizes_pool_globally():
    with torch.device("meta"):
        wrn = create_model("wrn_16_2", input_size=16)
        mobile = create_model("mobilenetv2_cifar", input_size=64)
        assert expected_shapes(wrn, 1, 16) == {
            k: tuple(v.shape) for k, v in wrn.forward_features(torch.empty(1, 3, 16, 16)).items()}
        assert expected_shapes(mobile, 1, 64) == {
            k: tuple(v.shape)
            for k, v in mobile.forward_features(torch.empty(1, 3, 64, 64)).items()}


def _random_bn_statistics(model, generator):
    """Non-trivial BN statistics so that the eval-mode checks below are not identities."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


@pytest.mark.parametrize("name, options", [("wrn_16_1", {}), ("resnet8", {}),
                                           ("mobilenetv2_cifar", {"width": 0.25})])
def test_features_chain_and_pooled_equals_the_embedding(name, options):
    generator = torch.Generator().manual_seed(0)
    model = create_model(name, **options).eval()
    _random_bn_statistics(model, generator)
    x = torch.randn(2, 3, 32, 32, generator=generator)
    with torch.no_grad():
        features = model.forward_features(x)
        # Each stored stage output is the genuine input of the next stage (nothing in place).
        previous = features["stem"]
        for stage in model.stage_names:
            torch.testing.assert_close(getattr(model, stage)(previous), features[stage])
            previous = features[stage]
        last = features[model.stage_names[-1]]
        if isinstance(model, WideResNet):
            expected = F.relu(model.bn(last)).mean(dim=(2, 3))
        elif isinstance(model, MobileNetV2Cifar):
            expected = model.head(last).mean(dim=(2, 3))
        else:
            expected = last.mean(dim=(2, 3))
        torch.testing.assert_close(features["pooled"], expected)
        assert features["embedding"] is features["pooled"]
        torch.testing.assert_close(model(x), features["embedding"])


def test_the_classifier_is_a_separate_softmax_head():
    generator = torch.Generator().manual_seed(1)
    backbone = create_model("resnet8").eval()
    head = SoftmaxHead(backbone.embedding_size, 10)
    assert not any(isinstance(m, torch.nn.Linear) for m in backbone.modules())
    x = torch.randn(3, 3, 32, 32, generator=generator)
    with torch.no_grad():
        embedding = backbone(x)
        logits = head(embedding)
    torch.testing.assert_close(logits, embedding @ head.weight.T + head.linear.bias)


def test_every_parameter_receives_a_gradient():
    generator = torch.Generator().manual_seed(2)
    model = create_model("wrn_16_1")
    head = SoftmaxHead(model.embedding_size, 10)
    x = torch.randn(4, 3, 32, 32, generator=generator)
    F.cross_entropy(head(model(x)), torch.tensor([0, 1, 2, 3])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_wrn_block_identity_shortcut_adds_the_raw_input():
    block = PreActWideBlock(4, 4).eval()
    torch.nn.init.zeros_(block.conv2.weight)
    x = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)  # negative values survive: no ReLU on the sum


def test_wrn_block_projection_takes_the_activated_input():
    block = PreActWideBlock(2, 4, stride=2).eval()
    torch.nn.init.zeros_(block.conv2.weight)
    with torch.no_grad():
        block.shortcut.weight.zero_()
        for out_channel in range(4):
            block.shortcut.weight[out_channel, out_channel % 2] = 1.0
    x = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(4))
    activated = F.relu(x / math.sqrt(1 + block.bn1.eps))  # BN at its initial statistics
    expected = activated[:, [0, 1, 0, 1], ::2, ::2]
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)


def test_resnet_block_applies_relu_after_the_sum():
    block = BasicBlock(3, 3).eval()
    torch.nn.init.zeros_(block.conv2.weight)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(x))


def test_inverted_residual_adds_its_input_only_without_stride_and_channel_change():
    residual = InvertedResidual(4, 4, stride=1, expansion=6).eval()
    strided = InvertedResidual(4, 4, stride=2, expansion=6).eval()
    for block in (residual, strided):
        torch.nn.init.zeros_(block.layers[-1].weight)  # the linear projection's BN outputs 0
    x = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(residual(x), x)
        torch.testing.assert_close(strided(x), torch.zeros(1, 4, 3, 3))
    assert residual.layers[3].groups == 24  # depthwise over the 4 x 6 expanded channels


def test_convolutions_use_fan_out_he_initialisation():
    torch.manual_seed(0)
    model = create_model("wrn_16_4")
    weight = model.layer3[0].conv2.weight  # 256 x 256 x 3 x 3
    expected_std = math.sqrt(2.0 / (9 * 256))
    assert abs(weight.std().item() - expected_std) / expected_std < 0.02
    assert abs(weight.mean().item()) < 0.01 * expected_std
    assert torch.equal(model.bn.weight, torch.ones(256))
    assert torch.equal(model.bn.bias, torch.zeros(256))


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda: WideResNet(15, 2), r"6n \+ 4"),
        (lambda: WideResNet(16, 0), "widen"),
        (lambda: CifarResNet(21), r"6n \+ 2"),
        (lambda: CifarResNet(20, (16, 32)), "stem and the three groups"),
        (lambda: MobileNetV2Cifar(width=0.05), "width >= 0.0625"),
        (lambda: MobileNetV2Cifar(width=-1.0), "positive"),
        (lambda: WideResNet(16, 2, dropout=1.5), "dropout"),
        (lambda: CifarResNet(20, input_size=30), "multiple of 16"),
    ],
)
def test_invalid_options_are_config_errors(build, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build()


def test_wrong_input_shape_names_the_expected_one():
    model = create_model("resnet8")
    with pytest.raises(ConfigError, match=r"\(batch, 3, 32, 32\).*\(1, 3, 28, 28\)"):
        model(torch.zeros(1, 3, 28, 28))


def test_unknown_option_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match="input_size, in_channels"):
        create_model("resnet20", embedding_size=64)


def test_named_factories_are_module_attributes():
    assert cifar.wrn_40_4.__name__ == "wrn_40_4"
    with torch.device("meta"):
        assert cifar.resnet32x4().stage_channels == [64, 128, 256]
