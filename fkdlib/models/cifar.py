"""CIFAR classification backbones of SRRL's tables (thesis ch. 4; Tables 4.1, 4.7, 4.8).

Three families, with the structures of RepDistiller (Tian et al., CRD, ICLR 2020), the code
base of the CIFAR distillation benchmarks that SRRL compares with:

* :class:`WideResNet`, WRN-D-k (Zagoruyko & Komodakis, 2016; thesis Table 4.1): a 3x3 stem of
  16 channels, three groups of ``(D - 4) / 6`` pre-activation blocks with ``16k, 32k, 64k``
  channels (the 2nd and 3rd groups halve the resolution), then BN -> ReLU -> global pooling.
* :class:`CifarResNet`, ResNet-N for CIFAR (He et al., 2016, section 4.2): a 3x3 stem, three
  groups of ``(N - 2) / 6`` post-activation basic blocks with projection (1x1 conv + BN)
  shortcuts where the shape changes, then global pooling. ``resnet8x4`` / ``resnet32x4`` are
  CRD's wide variants with channels 32 / 64, 128, 256 instead of 16 / 16, 32, 64.
* :class:`MobileNetV2Cifar`, RepDistiller's MobileNetV2 for 32 x 32 inputs (from "Knowledge
  Distillation via Route Constrained Optimization"): a stride-2 stem and the seven inverted
  residual groups of Sandler et al. (2018), channels ``int(c * width)``, a 1x1 convolution to
  1280 channels and global pooling. CRD's "MobileNetV2" is ``width=0.5``.

Every backbone ends at the pooled feature: ``forward(x)`` returns the penultimate feature h
(the "embedding", ``embedding_size`` long) and the classifier W is a separate linear head
(:class:`fkdlib.heads.SoftmaxHead`), so that SRRL can pass the student's feature through the
teacher's classifier. ``forward_features(x)`` returns ``stem``, ``layer1`` .. ``layer3`` (and
``layer4`` for MobileNetV2), ``pooled`` and ``embedding`` (the same tensor as ``pooled``). The
stage outputs are RepDistiller's feature taps: the raw sum of the last block of a WRN group
(before the next block's BN-ReLU), the post-ReLU output of a ResNet group, the output of
MobileNetV2's groups 2, 3, 5 and 7.

Parameter counts (backbone + a 100-way linear layer, CIFAR-100) equal RepDistiller's to the
last parameter: WRN-40-4 8.97M, WRN-16-4 2.77M, WRN-40-2 2.26M, WRN-16-2 0.70M, resnet56
0.86M, resnet20 0.28M, resnet32x4 7.43M, resnet8x4 1.23M, MobileNetV2 (width 0.5) 0.81M.

Differences from RepDistiller: global average pooling instead of a fixed 8 x 8 (or 2 x 2)
window, identical at 32 x 32 and also valid at other input sizes; no in-place activations, so
the returned feature maps are never overwritten; no dropout option beyond WRN's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .layers import BN_EPS, FaceBackbone, check_dropout, check_positive_int, check_width
from .registry import register_model

CIFAR_INPUT_SIZE = 32
WRN_STEM_CHANNELS = 16
WRN_BASE_CHANNELS = (16, 32, 64)
RESNET_CHANNELS = (16, 16, 32, 64)
RESNET_X4_CHANNELS = (32, 64, 128, 256)
MOBILENETV2_STEM_CHANNELS = 32
MOBILENETV2_LAST_CHANNELS = 1280
# (expansion or None for the network's expansion ratio, channels, blocks, first stride), the
# seven groups of Sandler et al. (2018), Table 2, with the CIFAR strides of RepDistiller.
MOBILENETV2_GROUPS: tuple[tuple[int | None, int, int, int], ...] = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)
# Groups 1-2, 3, 4-5 and 6-7 form layer1 .. layer4, ending where RepDistiller taps features.
MOBILENETV2_STAGE_ENDS = (2, 3, 5, 7)


def _init_conv_bn(module: nn.Module) -> None:
    """He initialisation (fan-out, ReLU gain) of every convolution, BN at identity.

    RepDistiller draws convolution weights from N(0, 2 / (k * k * out_channels)) in all three
    families, which is ``kaiming_normal_`` with ``mode="fan_out"``.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def _global_pool(feature_map: torch.Tensor) -> torch.Tensor:
    return torch.flatten(F.adaptive_avg_pool2d(feature_map, 1), 1)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class PreActWideBlock(nn.Module):
    """Wide-ResNet basic block: BN-ReLU-conv3x3(stride)-BN-ReLU-[dropout]-conv3x3 + shortcut.

    When the shape changes, the shortcut is a 1x1 convolution of the *activated* input (the
    first BN-ReLU is shared by both paths); otherwise it is the raw input (Zagoruyko &
    Komodakis, 2016).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            if stride != 1 or in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(activated)))))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class BasicBlock(nn.Module):
    """CIFAR ResNet block: conv3x3(stride)-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU.

    The shortcut is a 1x1 convolution with BN where the stride or the channel count changes
    (option B of He et al., 2016, as in RepDistiller).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.shortcut = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=BN_EPS),
            )
            if stride != 1 or in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion-BN-ReLU, 3x3 depthwise(stride)-BN-ReLU, 1x1-BN.

    The last projection is linear (no activation); the input is added when the stride is 1 and
    the channel count is unchanged. As in RepDistiller the expansion convolution is kept even
    at expansion ratio 1 (Sandler et al. drop it there), which the published counts include.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden, eps=BN_EPS),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden, eps=BN_EPS),
            nn.ReLU(),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class WideResNet(FaceBackbone):
    """WRN-D-k for 32 x 32 images (thesis Table 4.1); ``forward(x)`` is the pooled feature.

    Args:
        depth: D = 6n + 4 (10, 16, 22, 28, 40, ...), n blocks per group.
        widen: k, the width factor: groups of 16k, 32k and 64k channels.
        dropout: dropout between the two convolutions of a block (0 in the thesis).
        input_size: square input size, a multiple of 16 (32 for CIFAR).
        in_channels: input channels.

    ``forward_features``: ``stem`` (16 channels, full size), ``layer1`` .. ``layer3`` (16k, 32k,
    64k channels at 1, 1/2, 1/4 of the size; the groups conv2 .. conv4 of Table 4.1),
    ``pooled`` = ``embedding`` = global average of BN-ReLU(``layer3``), 64k long.
    """

    stage_names = ("layer1", "layer2", "layer3")

    def __init__(
        self,
        depth: int,
        widen: int,
        *,
        dropout: float = 0.0,
        input_size: int = CIFAR_INPUT_SIZE,
        in_channels: int = 3,
    ) -> None:
        depth = check_positive_int(depth, "WRN depth")
        widen = check_positive_int(widen, "WRN widen factor")
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(
                f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}"
            )
        blocks = (depth - 4) // 6
        channels = [c * widen for c in WRN_BASE_CHANNELS]
        super().__init__(input_size, in_channels, embedding_size=channels[-1])
        dropout = check_dropout(dropout)
        self.depth, self.widen = depth, widen
        self.stage_channels = channels
        self.conv1 = _conv3x3(self.in_channels, WRN_STEM_CHANNELS)
        stages = []
        previous = WRN_STEM_CHANNELS
        for index, out_channels in enumerate(channels):
            stride = 1 if index == 0 else 2
            group = [PreActWideBlock(previous, out_channels, stride, dropout)]
            group += [
                PreActWideBlock(out_channels, out_channels, 1, dropout) for _ in range(blocks - 1)
            ]
            stages.append(nn.Sequential(*group))
            previous = out_channels
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(previous, eps=BN_EPS)
        _init_conv_bn(self)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)

    def forward_pooled(self, out: torch.Tensor) -> torch.Tensor:
        """BN-ReLU of the last group, average-pooled (the pooled feature is the embedding)."""
        return _global_pool(F.relu(self.bn(out)))


class CifarResNet(FaceBackbone):
    """ResNet-N for CIFAR (He et al., 2016, section 4.2); ``forward(x)`` is the pooled feature.

    Args:
        depth: N = 6n + 2 (8, 14, 20, 26, 32, 44, 56, 110, ...), n blocks per group.
        channels: stem channels, then the channels of the three groups: (16, 16, 32, 64) for
            resnetN, (32, 64, 128, 256) for CRD's resnetNx4.
        input_size: square input size, a multiple of 16 (32 for CIFAR).
        in_channels: input channels.

    ``forward_features``: ``stem`` (conv-BN-ReLU), ``layer1`` .. ``layer3`` (post-ReLU group
    outputs at 1, 1/2, 1/4 of the size), ``pooled`` = ``embedding`` = their global average.
    """

    stage_names = ("layer1", "layer2", "layer3")

    def __init__(
        self,
        depth: int,
        channels: Sequence[int] = RESNET_CHANNELS,
        *,
        input_size: int = CIFAR_INPUT_SIZE,
        in_channels: int = 3,
    ) -> None:
        depth = check_positive_int(depth, "ResNet depth")
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(
                f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 56, 110, ...), "
                f"got {depth}"
            )
        if len(channels) != 4:
            raise ConfigError(
                "channels must list the stem and the three groups, e.g. (16, 16, 32, 64), got "
                f"{list(channels)!r}"
            )
        channels = [check_positive_int(c, "each channel count") for c in channels]
        super().__init__(input_size, in_channels, embedding_size=channels[-1])
        blocks = (depth - 2) // 6
        self.depth = depth
        self.stage_channels = channels[1:]
        self.conv1 = _conv3x3(self.in_channels, channels[0])
        self.bn1 = nn.BatchNorm2d(channels[0], eps=BN_EPS)
        stages = []
        previous = channels[0]
        for index, out_channels in enumerate(self.stage_channels):
            stride = 1 if index == 0 else 2
            group = [BasicBlock(previous, out_channels, stride)]
            group += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*group))
            previous = out_channels
        self.layer1, self.layer2, self.layer3 = stages
        _init_conv_bn(self)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1(self.conv1(x)))

    def forward_pooled(self, out: torch.Tensor) -> torch.Tensor:
        """The last group average-pooled (the pooled feature is the embedding)."""
        return _global_pool(out)


class MobileNetV2Cifar(FaceBackbone):
    """RepDistiller's MobileNetV2 for CIFAR; ``forward(x)`` is the pooled 1280-d feature.

    Args:
        width: channel multiplier; a group of ``c`` channels gets ``int(c * width)`` (rounded
            down, as in RepDistiller); the final 1x1 convolution has 1280 channels, or
            ``int(1280 * width)`` when ``width > 1``. CRD's tables use 0.5.
        expansion: expansion ratio T of the inverted residuals (6 in the paper; the first
            group always uses 1).
        input_size: square input size, a multiple of 16 (32 for CIFAR: the network halves it
            four times, to 2 x 2).
        in_channels: input channels.

    ``forward_features``: ``stem`` (stride-2 conv-BN-ReLU), ``layer1`` .. ``layer4`` (the
    outputs of groups 2, 3, 5 and 7: 24, 32, 96 and 320 channels times ``width`` at 1/2, 1/4,
    1/8, 1/16 of the input size), ``pooled`` = ``embedding`` = global average of the final
    1x1 conv-BN-ReLU.
    """

    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(
        self,
        width: float = 0.5,
        expansion: int = 6,
        *,
        input_size: int = CIFAR_INPUT_SIZE,
        in_channels: int = 3,
    ) -> None:
        check_width(width)
        expansion = check_positive_int(expansion, "expansion")
        last_channels = (
            int(MOBILENETV2_LAST_CHANNELS * width) if width > 1.0 else MOBILENETV2_LAST_CHANNELS
        )
        super().__init__(input_size, in_channels, embedding_size=last_channels)
        stem_channels = int(MOBILENETV2_STEM_CHANNELS * width)
        group_channels = [int(c * width) for _, c, _, _ in MOBILENETV2_GROUPS]
        if min(stem_channels, *group_channels) < 1:
            raise ConfigError(
                f"width {width} leaves a MobileNetV2 layer with no channel (int(16 * width) "
                "must be at least 1); use width >= 0.0625"
            )
        self.width, self.expansion = width, expansion
        self.stem = nn.Sequential(
            nn.Conv2d(self.in_channels, stem_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels, eps=BN_EPS),
            nn.ReLU(),
        )
        groups = []
        previous = stem_channels
        for (ratio, _, count, stride), out_channels in zip(MOBILENETV2_GROUPS, group_channels):
            ratio = expansion if ratio is None else ratio
            group = [InvertedResidual(previous, out_channels, stride, ratio)]
            group += [
                InvertedResidual(out_channels, out_channels, 1, ratio) for _ in range(count - 1)
            ]
            groups.append(group)
            previous = out_channels
        start = 0
        for name, end in zip(self.stage_names, MOBILENETV2_STAGE_ENDS):
            setattr(self, name, nn.Sequential(*[blk for grp in groups[start:end] for blk in grp]))
            start = end
        self.stage_channels = [group_channels[end - 1] for end in MOBILENETV2_STAGE_ENDS]
        self.head = nn.Sequential(
            nn.Conv2d(previous, last_channels, 1, bias=False),
            nn.BatchNorm2d(last_channels, eps=BN_EPS),
            nn.ReLU(),
        )
        _init_conv_bn(self)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def forward_pooled(self, out: torch.Tensor) -> torch.Tensor:
        """The 1x1 conv head average-pooled (the pooled feature is the embedding)."""
        return _global_pool(self.head(out))


@register_model
def wide_resnet(
    *,
    depth: int = 16,
    widen: int = 1,
    dropout: float = 0.0,
    input_size: int = CIFAR_INPUT_SIZE,
    in_channels: int = 3,
) -> WideResNet:
    """WRN-``depth``-``widen``, e.g. WRN-10-10 and WRN-16-10 of thesis Table 4.8 (7.49M and
    17.2M with a 100-way classifier); the default is WRN-16-1."""
    return WideResNet(
        depth, widen, dropout=dropout, input_size=input_size, in_channels=in_channels
    )


def _register_wrn(depth: int, widen: int, size: str) -> Callable[..., WideResNet]:
    def factory(
        *, dropout: float = 0.0, input_size: int = CIFAR_INPUT_SIZE, in_channels: int = 3
    ) -> WideResNet:
        return WideResNet(
            depth, widen, dropout=dropout, input_size=input_size, in_channels=in_channels
        )

    factory.__name__ = factory.__qualname__ = f"wrn_{depth}_{widen}"
    factory.__doc__ = f"WRN-{depth}-{widen}: {size} parameters with a 100-way classifier."
    return register_model(factory)


def _register_resnet(
    depth: int, channels: Sequence[int], name: str, size: str
) -> Callable[..., CifarResNet]:
    def factory(*, input_size: int = CIFAR_INPUT_SIZE, in_channels: int = 3) -> CifarResNet:
        return CifarResNet(depth, channels, input_size=input_size, in_channels=in_channels)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (
        f"CIFAR ResNet-{depth}, channels {tuple(channels)}: {size} parameters with a 100-way "
        "classifier."
    )
    return register_model(factory)


# Sizes: backbone + 100-way linear layer, as counted from RepDistiller's code.
wrn_16_1 = _register_wrn(16, 1, "0.18M")
wrn_16_2 = _register_wrn(16, 2, "0.70M")
wrn_16_4 = _register_wrn(16, 4, "2.77M")
wrn_40_1 = _register_wrn(40, 1, "0.57M")
wrn_40_2 = _register_wrn(40, 2, "2.26M")
wrn_40_4 = _register_wrn(40, 4, "8.97M")
resnet8 = _register_resnet(8, RESNET_CHANNELS, "resnet8", "0.08M")
resnet14 = _register_resnet(14, RESNET_CHANNELS, "resnet14", "0.18M")
resnet20 = _register_resnet(20, RESNET_CHANNELS, "resnet20", "0.28M")
resnet26 = _register_resnet(26, RESNET_CHANNELS, "resnet26", "0.38M")
resnet32 = _register_resnet(32, RESNET_CHANNELS, "resnet32", "0.47M")
resnet44 = _register_resnet(44, RESNET_CHANNELS, "resnet44", "0.67M")
resnet56 = _register_resnet(56, RESNET_CHANNELS, "resnet56", "0.86M")
resnet110 = _register_resnet(110, RESNET_CHANNELS, "resnet110", "1.74M")
resnet8x4 = _register_resnet(8, RESNET_X4_CHANNELS, "resnet8x4", "1.23M")
resnet32x4 = _register_resnet(32, RESNET_X4_CHANNELS, "resnet32x4", "7.43M")


@register_model
def mobilenetv2_cifar(
    *,
    width: float = 0.5,
    expansion: int = 6,
    input_size: int = CIFAR_INPUT_SIZE,
    in_channels: int = 3,
) -> MobileNetV2Cifar:
    """RepDistiller's MobileNetV2 for CIFAR: 0.81M parameters with a 100-way classifier at
    ``width=0.5`` (CRD's "MobileNetV2"), 2.35M at ``width=1.0`` (thesis Table 4.8 prints
    2.37M)."""
    return MobileNetV2Cifar(
        width, expansion, input_size=input_size, in_channels=in_channels
    )
