"""VarGFaceNet (Yan et al., "VarGFaceNet: An Efficient Variable Group Convolutional Neural
Network for Lightweight Face Recognition", ICCVW 2019).

Structure (VarGFaceNet, Yan et al. ICCVW 2019, Sec. 3 and Fig. 1, checked against the authors' MXNet symbol, which insightface
also ships as ``recognition/symbol/vargfacenet.py``):

- head: 3x3 stride-1 conv to 40 channels -> BN -> PReLU (``stem``), then a stride-2
  :class:`~fkdlib.models.layers.VarGNormalBlock` with an SE gate (``layer1``);
- three stages of 3 / 7 / 4 units with 80 / 160 / 320 channels; each starts with a
  :class:`~fkdlib.models.layers.VarGDownBlock` followed by normal blocks (``layer2`` ..
  ``layer4``);
- embedding: 1x1 conv 320 -> 1024 -> BN -> PReLU; a variable group conv covering the whole
  final map (7x7 at 112 px; 1024 / 8 = 128 groups) -> BN; 1x1 conv 1024 -> 512 -> BN -> PReLU
  (``pooled``); FC -> embedding -> BN1d (``embedding``).

Details taken from the authors' code where the paper's prose is silent; with them the counts
match the published 5.20M parameters (4.96M without SE) and 1.02 GFLOPs:

- the authors build the network as ``filter_list = [32, 64, 128, 256]`` with
  ``multiplier = 1.25``, which is where 40 / 80 / 160 / 320 come from; 1024 and 512 are not
  multiplied;
- the head's normal block keeps the channel count inside its separable units (``factor=1``),
  every other unit doubles it (``factor=2``); its shortcut is a separable unit because it
  has stride 2;
- the "3 / 7 / 4 units" include the down-sampling block (1 + 2, 1 + 6, 1 + 3);
- the SE gate's reduction is 4 and its 1x1 convolutions have biases; the final FC has a bias
  and the BatchNorm1d after it a learnable scale (the authors' ``fix_gamma=False``; the copy
  in insightface fixes that scale at 1, a 512-parameter difference).

Ours, not the authors': BatchNorm eps 1e-5 like the rest of fkdlib (MXNet used 2e-5); He
normal (fan-out) initialisation, which is MXNet's ``Xavier(gaussian, out, 2)`` of insightface.

Beyond the published network: ``input_size`` (any multiple of 16; the embedding's group conv
kernel becomes ``input_size/16`` to cover the final map), ``width`` (a multiplier on every
channel count, rounded to a multiple of 8 by :func:`~fkdlib.models.layers.scale_channels`),
``group_size`` (S; 1 gives the depthwise variant the paper compares with, also registered as
``vargfacenet_dw``), ``use_se``, ``stage_units`` and ``in_channels``.

``forward_features`` keys and resolutions (chosen to match IResNet's, so that feature-map
distillation pairs maps of equal size): ``stem`` full resolution, ``layer1`` 1/2, ``layer2``
1/4, ``layer3`` 1/8, ``layer4`` 1/16.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .layers import (
    BN_EPS,
    INPUT_SIZE_STEP,
    VARG_GROUP_SIZE,
    ConvBNAct,
    EmbeddingHead,
    FaceBackbone,
    VarGConv,
    VarGDownBlock,
    VarGNormalBlock,
    check_positive_int,
    scale_channels,
)
from .registry import register_model

# Channels of the head and of the three stages (the authors' [32, 64, 128, 256] x 1.25).
BASE_CHANNELS = (40, 80, 160, 320)
STAGE_UNITS = (3, 7, 4)
EMBED_EXPANDED_CHANNELS = 1024
EMBED_REDUCED_CHANNELS = 512
# Units inside stage blocks double their channels (paper Sec. 3.2); the head's block does not.
BLOCK_EXPANSION = 2
HEAD_EXPANSION = 1


def _stage(
    in_channels: int, out_channels: int, units: int, group_size: int, use_se: bool
) -> nn.Sequential:
    """A down-sampling block followed by ``units - 1`` normal blocks."""
    blocks: list[nn.Module] = [
        VarGDownBlock(in_channels, out_channels, 2, BLOCK_EXPANSION, group_size)
    ]
    blocks += [
        VarGNormalBlock(out_channels, out_channels, 1, BLOCK_EXPANSION, group_size, use_se)
        for _ in range(units - 1)
    ]
    return nn.Sequential(*blocks)


class VarGFaceNet(FaceBackbone):
    """VarGFaceNet backbone; ``forward(x)`` returns the embedding.

    Args:
        input_size: square input resolution, a multiple of 16 (112 in the paper).
        width: channel multiplier applied to 40/80/160/320 and to the 1024/512 embedding
            channels (1.0 is the published network).
        embedding_size: embedding length (512 in the paper).
        group_size: channels per group S of every variable group convolution (8 in the paper;
            1 gives the depthwise variant).
        use_se: SE gates in the normal blocks (True in the paper; False gives its 4.96M-param
            ablation).
        dropout: dropout before the final FC layer (0: none, as published).
        in_channels: input channels (3 for RGB).
        stage_units: blocks per stage, down-sampling block included ((3, 7, 4) as published).

    Raises:
        ConfigError: an option is out of range, or ``group_size`` does not divide one of the
            channel counts the width gives.
    """

    def __init__(
        self,
        *,
        input_size: int = 112,
        width: float = 1.0,
        embedding_size: int = 512,
        group_size: int = VARG_GROUP_SIZE,
        use_se: bool = True,
        dropout: float = 0.0,
        in_channels: int = 3,
        stage_units: Sequence[int] = STAGE_UNITS,
    ) -> None:
        super().__init__(input_size, in_channels, embedding_size)
        group_size = check_positive_int(group_size, "group_size")
        if len(stage_units) != len(STAGE_UNITS):
            raise ConfigError(
                f"stage_units needs {len(STAGE_UNITS)} counts (one per stage, (3, 7, 4) as "
                f"published), got {list(stage_units)!r}"
            )
        units = [check_positive_int(n, "each stage_units count") for n in stage_units]
        self.stage_channels = [scale_channels(c, width) for c in BASE_CHANNELS]
        expanded = scale_channels(EMBED_EXPANDED_CHANNELS, width)
        reduced = scale_channels(EMBED_REDUCED_CHANNELS, width)
        self._check_group_size(group_size, width, [*self.stage_channels, expanded])
        self.group_size = group_size
        self.use_se = bool(use_se)

        head = self.stage_channels[0]
        self.stem = ConvBNAct(self.in_channels, head, 3)
        self.layer1 = VarGNormalBlock(head, head, 2, HEAD_EXPANSION, group_size, self.use_se)
        stages = [
            _stage(cin, cout, n, group_size, self.use_se)
            for cin, cout, n in zip(self.stage_channels[:-1], self.stage_channels[1:], units)
        ]
        self.layer2, self.layer3, self.layer4 = stages

        final_map = self.input_size // INPUT_SIZE_STEP
        self.embed_expand = ConvBNAct(self.stage_channels[-1], expanded, 1)
        # The paper's 7x7 variable group conv: one kernel spanning the whole final map.
        self.embed_group_conv = VarGConv(
            expanded, expanded, final_map, group_size=group_size, padding=0
        )
        self.embed_group_bn = nn.BatchNorm2d(expanded, eps=BN_EPS)
        self.embed_reduce = ConvBNAct(expanded, reduced, 1)
        self.head = EmbeddingHead(
            reduced, self.embedding_size, dropout=dropout, bias=True, freeze_scale=False
        )
        self._init_weights()

    @staticmethod
    def _check_group_size(group_size: int, width: float, channels: list[int]) -> None:
        """Refuse a group size that does not divide every variable-group conv's input."""
        misfits = [c for c in channels if c % group_size]
        if misfits:
            raise ConfigError(
                f"VarGFaceNet with width={width} has channel counts {channels}, and "
                f"group_size={group_size} does not divide {misfits}; use a group_size dividing "
                "8 (1, 2, 4 or 8 always fit, since widths round channels to multiples of 8)"
            )

    def _init_weights(self) -> None:
        # He normal with fan-out, i.e. insightface's MXNet Xavier(gaussian, "out", magnitude 2).
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def forward_pooled(self, out: torch.Tensor) -> torch.Tensor:
        """The output of the embedding's pointwise conv (after its PReLU), flattened: the
        feature that enters the FC layer."""
        out = self.embed_group_bn(self.embed_group_conv(self.embed_expand(out)))
        return torch.flatten(self.embed_reduce(out), 1)

    def forward_embedding(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)


@register_model
def vargfacenet(
    *,
    input_size: int = 112,
    width: float = 1.0,
    embedding_size: int = 512,
    group_size: int = VARG_GROUP_SIZE,
    use_se: bool = True,
    dropout: float = 0.0,
    in_channels: int = 3,
) -> VarGFaceNet:
    """VarGFaceNet (S = 8): 5.20M parameters, 0.513 GMACs (1.025 GFLOPs) at 112 px, 512-d.

    The paper reports 5.20M parameters and 1.02 GFLOPs (4.96M parameters without SE; ours
    4.96M). ``group_size=1`` gives :func:`vargfacenet_dw`.
    """
    return VarGFaceNet(
        input_size=input_size, width=width, embedding_size=embedding_size,
        group_size=group_size, use_se=use_se, dropout=dropout, in_channels=in_channels,
    )


@register_model
def vargfacenet_dw(
    *,
    input_size: int = 112,
    width: float = 1.0,
    embedding_size: int = 512,
    use_se: bool = True,
    dropout: float = 0.0,
    in_channels: int = 3,
) -> VarGFaceNet:
    """Depthwise VarGFaceNet (S = 1): 4.14M parameters, 0.363 GMACs at 112 px, 512-d.

    The same network with one channel per group: fewer multiply-adds and less capacity than
    S = 8, the trade-off the paper's variable group convolution is designed around.
    """
    return VarGFaceNet(
        input_size=input_size, width=width, embedding_size=embedding_size, group_size=1,
        use_se=use_se, dropout=dropout, in_channels=in_channels,
    )
