"""Building blocks shared by the face backbones, and the interface every backbone follows.

- :class:`FaceBackbone`: the common interface (``forward`` -> embedding, ``forward_features`` ->
  named stage outputs, ``stage_channels``, ``embedding_size``, input-size check).
- :class:`ConvBNAct`: convolution without bias -> BatchNorm2d -> optional PReLU, the unit of
  insightface's backbones (``ConvBlock`` / ``LinearBlock`` in MobileFaceNet, the IResNet stem).
- :class:`DepthwiseBottleneck`: MobileNetV2's inverted residual as used by MobileFaceNet
  (Chen et al., 2018): 1x1 expansion -> 3x3 depthwise -> linear 1x1 projection.
- :class:`EmbeddingHead`: Dropout -> Linear -> BatchNorm1d, the end of the BN-Dropout-FC-BN
  embedding layer of IResNet (ArcFace, Deng et al. 2019) and of MobileFaceNet's output.
- :func:`scale_channels` and :func:`check_input_size`: the width multiplier and input sizes.
- VarGFaceNet (Yan et al., ICCVW 2019): :class:`VarGConv` (variable group convolution, S
  channels per group), :class:`VarGSeparable`, :class:`SqueezeExcitation`,
  :class:`VarGNormalBlock` and :class:`VarGDownBlock`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import nn

from ..errors import ConfigError

# insightface builds every BatchNorm with eps=1e-5 (PyTorch's default, stated for clarity).
BN_EPS = 1e-5
CHANNEL_DIVISOR = 8
INPUT_SIZE_STEP = 16


def scale_channels(channels: int, width: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Channel count of a layer under a width multiplier.

    ``channels * width`` is rounded to the nearest multiple of ``divisor`` (8), and never below
    ``divisor``: multiples of 8 keep grouped convolutions divisible and vectorise well, the floor
    keeps a very thin network trainable. ``width=1`` returns ``channels`` unchanged whenever
    ``channels`` is a multiple of 8, as all the published widths are.

    Examples: width 0.25 maps 64/128/256/512 to 16/32/64/128; width 0.1 maps them to 8/16/24/48.
    """
    check_width(width)
    return max(divisor, int(math.floor(channels * width / divisor + 0.5)) * divisor)


def check_width(width: float) -> None:
    """Refuse a width multiplier that is not a finite positive number."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (
        math.isfinite(width) and width > 0
    ):
        raise ConfigError(
            f"width must be a positive number (1.0 is the published network, 0.25 a quarter of "
            f"its channels), got {width!r}"
        )


def check_input_size(input_size: int) -> int:
    """Validate a square input size: a positive multiple of 16 (the backbones down-sample 16x).

    112 is the size of the insightface alignment; 16..112 covers the low-resolution and CPU
    profiles. Returns the size as an ``int``.
    """
    if (
        isinstance(input_size, bool)
        or not isinstance(input_size, int)
        or input_size < INPUT_SIZE_STEP
        or input_size % INPUT_SIZE_STEP
    ):
        raise ConfigError(
            f"input_size must be a multiple of {INPUT_SIZE_STEP} that is at least "
            f"{INPUT_SIZE_STEP} (e.g. 16, 32, 48, 64, 112), got {input_size!r}; the backbones "
            "halve the resolution four times, so the final map is input_size/16 pixels wide"
        )
    return int(input_size)


def check_positive_int(value: int, name: str) -> int:
    """Refuse a count (channels, embedding size, blocks) that is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_dropout(dropout: float) -> float:
    """Refuse a dropout probability outside [0, 1)."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (
        0.0 <= dropout < 1.0
    ):
        raise ConfigError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    return float(dropout)


class FaceBackbone(nn.Module, ABC):
    """Interface of every face backbone in fkdlib.

    :meth:`forward_features` returns the named intermediate maps that distillation losses
    consume: ``"stem"``, one entry per stage of ``stage_names``
    (``"layer1"`` .. ``"layer4"``; three stages for the CIFAR nets), ``"pooled"`` (the flat
    feature that enters the final linear layer) and ``"embedding"``. Subclasses provide the
    stem (:meth:`forward_stem`), the stage modules as attributes named after ``stage_names``,
    the pooling (:meth:`forward_pooled`) and, where the embedding is not the pooled feature
    itself, :meth:`forward_embedding`.

    Attributes:
        input_size: the square input resolution the network was built for.
        in_channels: number of input channels (3 for RGB).
        embedding_size: length of the output embedding.
        stage_channels: channels of ``layer1`` .. ``layer4``.
    """

    stage_names: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, input_size: int, in_channels: int, embedding_size: int) -> None:
        super().__init__()
        self.input_size = check_input_size(input_size)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.embedding_size = check_positive_int(embedding_size, "embedding_size")
        self.stage_channels: list[int] = []

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse an input whose shape differs from the one the network was built for.

        The final linear layer's size depends on the input resolution, so a wrong size would
        otherwise fail deep inside with a matrix-shape error.
        """
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ConfigError(
                f"{type(self).__name__} was built for inputs of shape (batch, {expected[0]}, "
                f"{expected[1]}, {expected[2]}), got {tuple(x.shape)}; resize the images to "
                f"{self.input_size}x{self.input_size} or create the model with "
                f"input_size=<your size> (a multiple of {INPUT_SIZE_STEP})"
            )

    @abstractmethod
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The map entering the first stage."""

    @abstractmethod
    def forward_pooled(self, out: torch.Tensor) -> torch.Tensor:
        """The flat ``(batch, features)`` vector after the last stage."""

    def forward_embedding(self, pooled: torch.Tensor) -> torch.Tensor:
        """The embedding from the pooled feature (identity unless a subclass projects it)."""
        return pooled

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named intermediate outputs, from ``"stem"`` to ``"embedding"``."""
        self.check_input(x)
        features = {"stem": self.forward_stem(x)}
        out = features["stem"]
        for name in self.stage_names:
            out = getattr(self, name)(out)
            features[name] = out
        features["pooled"] = self.forward_pooled(out)
        features["embedding"] = self.forward_embedding(features["pooled"])
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding, shape ``(batch, embedding_size)``."""
        return self.forward_features(x)["embedding"]


class ConvBNAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> PReLU, or without the PReLU when ``act=False``.

    The PReLU has one slope per channel, as in insightface. Padding defaults to
    ``kernel_size // 2`` ("same" for odd kernels at stride 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        padding: int | None = None,
        act: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ConfigError(
                f"a convolution with {groups} groups needs channel counts divisible by it, got "
                f"{in_channels} -> {out_channels}"
            )
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if padding is None else padding,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act = nn.PReLU(out_channels) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DepthwiseBottleneck(nn.Module):
    """Inverted residual bottleneck of MobileFaceNet (Chen et al., 2018, Table 1).

    1x1 ConvBNAct to ``expanded_channels`` -> 3x3 depthwise ConvBNAct (``stride``) -> 1x1
    convolution and BatchNorm without activation (the "linear bottleneck" of MobileNetV2),
    plus the input when ``residual`` is set. The depthwise convolution's group count equals
    ``expanded_channels``, which is the "groups" column of the thesis's Table 4.11.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expanded_channels: int,
        stride: int = 1,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if residual and (stride != 1 or in_channels != out_channels):
            raise ConfigError(
                "a residual bottleneck needs stride 1 and equal input and output channels, got "
                f"stride {stride} and {in_channels} -> {out_channels}"
            )
        self.residual = residual
        self.expand = ConvBNAct(in_channels, expanded_channels, 1)
        self.depthwise = ConvBNAct(
            expanded_channels, expanded_channels, 3, stride=stride, groups=expanded_channels
        )
        self.project = ConvBNAct(expanded_channels, out_channels, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class EmbeddingHead(nn.Module):
    """Dropout -> Linear -> BatchNorm1d: flat pooled feature to embedding.

    Args:
        in_features: length of the flat feature.
        embedding_size: length of the embedding.
        dropout: dropout probability before the linear layer (insightface's default is 0).
        bias: whether the linear layer has a bias (IResNet: yes; MobileFaceNet: no).
        freeze_scale: fix the BatchNorm1d weight at 1 and exclude it from training, as
            insightface's IResNet does (its bias and running statistics still learn).
    """

    def __init__(
        self,
        in_features: int,
        embedding_size: int,
        dropout: float = 0.0,
        bias: bool = True,
        freeze_scale: bool = False,
    ) -> None:
        super().__init__()
        # Not in-place: the caller keeps the pre-dropout feature as forward_features()["pooled"].
        self.dropout = nn.Dropout(p=check_dropout(dropout))
        self.fc = nn.Linear(in_features, embedding_size, bias=bias)
        self.bn = nn.BatchNorm1d(embedding_size, eps=BN_EPS)
        if freeze_scale:
            nn.init.ones_(self.bn.weight)
            self.bn.weight.requires_grad_(False)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(self.dropout(pooled)))


# VarGFaceNet (Yan et al., ICCVW 2019): S = 8 channels per group and an SE reduction of 4, as in
# the authors' MXNet symbol (``group_base=8``, ``se_ratio=4``).
VARG_GROUP_SIZE = 8
SE_REDUCTION = 4


def variable_groups(channels: int, group_size: int) -> int:
    """Group count of a variable group convolution: ``channels / group_size``.

    VarGNet / VarGFaceNet (Yan et al., 2019, Sec. 3.1) fix the number of channels per group
    ``S`` instead of the number of groups, so the group count ``n_i = C_i / S`` varies with the
    layer's width. ``S = 1`` is a depthwise convolution.

    Raises:
        ConfigError: ``group_size`` is not a positive integer, or it does not divide
            ``channels``.
    """
    group_size = check_positive_int(group_size, "group_size")
    channels = check_positive_int(channels, "channels")
    if channels % group_size:
        raise ConfigError(
            f"a variable group convolution puts group_size={group_size} channels in each group, "
            f"so its input channel count must be a multiple of {group_size}, got {channels}; "
            f"choose a group_size that divides {channels} (1 gives a depthwise convolution) or "
            "a channel count divisible by the group size"
        )
    return channels // group_size


class VarGConv(nn.Conv2d):
    """Variable group convolution (VarGNet; VarGFaceNet Sec. 3.1), without bias.

    A ``kernel_size`` convolution whose groups each hold ``group_size`` (S) input channels, so
    ``groups = in_channels / S``: S = 8 in VarGFaceNet, S = 1 makes it depthwise. Its cost is
    ``k^2 * S * C_out * H_out * W_out`` multiply-adds (Eq. 1 of the paper). Padding defaults to
    ``kernel_size // 2`` ("same" for odd kernels at stride 1).

    Raises:
        ConfigError: ``in_channels`` is not a multiple of ``group_size``, or ``out_channels``
            is not a multiple of the resulting group count.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        group_size: int = VARG_GROUP_SIZE,
        padding: int | None = None,
    ) -> None:
        groups = variable_groups(in_channels, group_size)
        if out_channels % groups:
            raise ConfigError(
                f"a variable group convolution with {groups} groups ({in_channels} input "
                f"channels / group_size {group_size}) needs an output channel count divisible by "
                f"{groups}, got {out_channels}"
            )
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if padding is None else padding,
            groups=groups,
            bias=False,
        )
        self.group_size = int(group_size)


class VarGSeparable(nn.Module):
    """VarGFaceNet's separable unit: 3x3 variable group conv, then a 1x1 pointwise conv.

    ``in_channels -> expansion * in_channels`` with a 3x3 :class:`VarGConv` (``stride``) -> BN ->
    PReLU -> 1x1 conv to ``out_channels`` -> BN (-> PReLU when ``pointwise_act``). The paper's
    blocks double the channels inside the unit (``expansion=2``, Sec. 3.2); the head's block
    keeps them (``expansion=1``, the authors' ``factor=1``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expansion: int = 2,
        group_size: int = VARG_GROUP_SIZE,
        pointwise_act: bool = True,
    ) -> None:
        super().__init__()
        expanded = in_channels * check_positive_int(expansion, "expansion")
        self.group_conv = VarGConv(in_channels, expanded, 3, stride=stride, group_size=group_size)
        self.group_bn = nn.BatchNorm2d(expanded, eps=BN_EPS)
        self.group_act = nn.PReLU(expanded)
        self.pointwise = ConvBNAct(expanded, out_channels, 1, act=pointwise_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.group_act(self.group_bn(self.group_conv(x))))


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation gate as VarGFaceNet uses it (Hu et al., 2018; Yan et al., 2019).

    ``x * sigmoid(W2 PReLU(W1 GAP(x) + b1) + b2)``: global average pooling, a 1x1 conv with bias
    to ``channels // reduction`` channels, a per-channel PReLU, a 1x1 conv with bias back to
    ``channels``, and a sigmoid that rescales each channel of ``x``. The reduction is 4 in the
    authors' code (``se_ratio=4``), not the 16 of the original SE-Net.
    """

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        channels = check_positive_int(channels, "channels")
        reduction = check_positive_int(reduction, "reduction")
        squeezed = channels // reduction
        if squeezed < 1:
            raise ConfigError(
                f"a squeeze-and-excitation gate on {channels} channels with reduction {reduction} "
                f"would squeeze to 0 channels; use at least {reduction} channels or a smaller "
                "reduction"
            )
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = nn.PReLU(squeezed)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(pooled))))


class VarGNormalBlock(nn.Module):
    """VarGFaceNet's normal block (Fig. 1a of Yan et al., 2019).

    ``PReLU(SE(sep2(sep1(x))) + shortcut(x))`` where ``sep1`` is a :class:`VarGSeparable` with
    ``stride`` and a PReLU after its pointwise conv, ``sep2`` one at stride 1 without that
    PReLU, and the shortcut the identity, or, when the stride or the channel count changes, a
    third separable unit (``stride``, no pointwise PReLU) as in the authors' code.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expansion: int = 2,
        group_size: int = VARG_GROUP_SIZE,
        use_se: bool = True,
    ) -> None:
        super().__init__()
        self.sep1 = VarGSeparable(in_channels, out_channels, stride, expansion, group_size)
        self.sep2 = VarGSeparable(
            out_channels, out_channels, 1, expansion, group_size, pointwise_act=False
        )
        self.se = SqueezeExcitation(out_channels) if use_se else nn.Identity()
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else VarGSeparable(
                in_channels, out_channels, stride, expansion, group_size, pointwise_act=False
            )
        )
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.sep2(self.sep1(x))) + self.shortcut(x))


class VarGDownBlock(nn.Module):
    """VarGFaceNet's down-sampling block (Fig. 1b of Yan et al., 2019); it has no SE gate.

    ``PReLU(sep(PReLU(branch1(x) + branch2(x))) + shortcut(x))``: two parallel
    :class:`VarGSeparable` units at ``stride`` summed, a PReLU, a stride-1 unit, plus a
    ``stride`` separable shortcut. No unit has a PReLU after its pointwise conv; the summed
    branches and the output carry the activations (the authors' ``branch_merge_block``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 2,
        expansion: int = 2,
        group_size: int = VARG_GROUP_SIZE,
    ) -> None:
        super().__init__()

        def unit(cin: int, unit_stride: int) -> VarGSeparable:
            return VarGSeparable(
                cin, out_channels, unit_stride, expansion, group_size, pointwise_act=False
            )

        self.branch1 = unit(in_channels, stride)
        self.branch2 = unit(in_channels, stride)
        self.merge_act = nn.PReLU(out_channels)
        self.sep = unit(out_channels, 1)
        self.shortcut = unit(in_channels, stride)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        merged = self.merge_act(self.branch1(x) + self.branch2(x))
        return self.act(self.sep(merged) + self.shortcut(x))
