"""IResNet, the ArcFace backbone (Deng et al., CVPR 2019; insightface ``arcface_torch``).

Structure (insightface's ``iresnet.py``, the ArcFace paper's backbone): stem 3x3/1 conv 64 -> BN -> PReLU; four stages of
:class:`IBasicBlock` with 64/128/256/512 channels whose first block has stride 2; output
BN2d -> Dropout -> FC(512 * (s/16)^2 -> embedding) -> BN1d with its weight fixed at 1.
Depths: r18 [2,2,2,2], r34 [3,4,6,3], r50 [3,4,14,3], r100 [3,13,30,3].

Beyond the published network: ``input_size`` (any multiple of 16; the FC input follows the
final map of ``input_size/16`` pixels), a ``width`` multiplier (see
:func:`~fkdlib.models.layers.scale_channels`) for the CPU profiles, and ``in_channels`` for
inputs with stacked heatmaps (FAN-Face H2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .layers import (
    BN_EPS,
    INPUT_SIZE_STEP,
    ConvBNAct,
    EmbeddingHead,
    FaceBackbone,
    check_positive_int,
    scale_channels,
)
from .registry import register_model

BASE_CHANNELS = (64, 128, 256, 512)
# insightface initialises every convolution with N(0, 0.1) and relies on BatchNorm to rescale.
CONV_INIT_STD = 0.1


class IBasicBlock(nn.Module):
    """ArcFace's improved residual unit: BN-conv3x3-BN-PReLU-conv3x3(stride)-BN plus a shortcut.

    Pre-activation style, with no activation after the addition. The shortcut is a 1x1
    convolution with BN when the stride or the channel count changes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=BN_EPS)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.prelu = nn.PReLU(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.downsample = (
            ConvBNAct(in_channels, out_channels, 1, stride=stride, act=False)
            if stride != 1 or in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(FaceBackbone):
    """IResNet backbone; ``forward(x)`` returns the embedding.

    Args:
        depths: number of :class:`IBasicBlock` in each of the four stages.
        input_size: square input resolution, a multiple of 16 (112 in the paper).
        width: channel multiplier applied to 64/128/256/512 (1.0 in the paper).
        embedding_size: embedding length (512 in the paper).
        dropout: dropout before the FC layer (insightface default 0).
        in_channels: input channels (3 for RGB).

    ``forward_features`` returns ``stem`` (full resolution), ``layer1`` .. ``layer4`` (1/2 ..
    1/16 resolution), ``pooled`` (the flattened BN2d output that enters the FC layer, length
    ``stage_channels[-1] * (input_size/16)^2``) and ``embedding``.
    """

    def __init__(
        self,
        depths: Sequence[int],
        *,
        input_size: int = 112,
        width: float = 1.0,
        embedding_size: int = 512,
        dropout: float = 0.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__(input_size, in_channels, embedding_size)
        if len(depths) != len(BASE_CHANNELS):
            raise ConfigError(
                f"IResNet needs one depth per stage ({len(BASE_CHANNELS)} numbers, e.g. "
                f"[2, 2, 2, 2] for r18), got {list(depths)!r}"
            )
        depths = [check_positive_int(d, "each stage depth") for d in depths]
        self.stage_channels = [scale_channels(c, width) for c in BASE_CHANNELS]
        stem_channels = self.stage_channels[0]
        self.conv1 = nn.Conv2d(self.in_channels, stem_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels, eps=BN_EPS)
        self.prelu = nn.PReLU(stem_channels)
        stages = []
        previous = stem_channels
        for depth, channels in zip(depths, self.stage_channels):
            blocks = [IBasicBlock(previous, channels, stride=2)]
            blocks += [IBasicBlock(channels, channels) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            previous = channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn2 = nn.BatchNorm2d(previous, eps=BN_EPS)
        final_map = self.input_size // INPUT_SIZE_STEP
        self.head = EmbeddingHead(
            previous * final_map * final_map,
            self.embedding_size,
            dropout=dropout,
            bias=True,
            freeze_scale=True,
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, CONV_INIT_STD)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn1(self.conv1(x)))

    def forward_pooled(self, out: torch.Tensor) -> torch.Tensor:
        """The BN2d output, flattened: the pre-FC feature."""
        return torch.flatten(self.bn2(out), 1)

    def forward_embedding(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)


@register_model
def iresnet18(
    *,
    input_size: int = 112,
    width: float = 1.0,
    embedding_size: int = 512,
    dropout: float = 0.0,
    in_channels: int = 3,
) -> IResNet:
    """IResNet-18, stages [2, 2, 2, 2]: 24.03M parameters and 2.61 GMACs at 112 px, 512-d."""
    return IResNet(
        (2, 2, 2, 2), input_size=input_size, width=width, embedding_size=embedding_size,
        dropout=dropout, in_channels=in_channels,
    )


@register_model
def iresnet34(
    *,
    input_size: int = 112,
    width: float = 1.0,
    embedding_size: int = 512,
    dropout: float = 0.0,
    in_channels: int = 3,
) -> IResNet:
    """IResNet-34, stages [3, 4, 6, 3]: 34.14M parameters and 4.46 GMACs at 112 px, 512-d."""
    return IResNet(
        (3, 4, 6, 3), input_size=input_size, width=width, embedding_size=embedding_size,
        dropout=dropout, in_channels=in_channels,
    )


@register_model
def iresnet50(
    *,
    input_size: int = 112,
    width: float = 1.0,
    embedding_size: int = 512,
    dropout: float = 0.0,
    in_channels: int = 3,
) -> IResNet:
    """IResNet-50, stages [3, 4, 14, 3]: 43.59M parameters and 6.31 GMACs at 112 px, 512-d."""
    return IResNet(
        (3, 4, 14, 3), input_size=input_size, width=width, embedding_size=embedding_size,
        dropout=dropout, in_channels=in_channels,
    )


@register_model
def iresnet100(
    *,
    input_size: int = 112,
    width: float = 1.0,
    embedding_size: int = 512,
    dropout: float = 0.0,
    in_channels: int = 3,
) -> IResNet:
    """IResNet-100, stages [3, 13, 30, 3]: 65.16M parameters and 12.09 GMACs at 112 px, 512-d."""
    return IResNet(
        (3, 13, 30, 3), input_size=input_size, width=width, embedding_size=embedding_size,
        dropout=dropout, in_channels=in_channels,
    )
