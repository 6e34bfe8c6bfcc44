"""MobileFaceNet (Chen et al., CCBR 2018) in the two variants the papers use.

Both follow insightface's ``arcface_torch`` MobileFaceNet, whose channel counts are scaled by an
integer ``scale`` while the bottleneck expansions stay 128 / 256 / 512:

- ``mobilefacenet``: insightface's ``get_mbf`` (``scale=2``, blocks (1, 4, 6, 2)); 2.06M
  parameters and 0.44 GMACs at 112x112 with a 512-d embedding (the reference table ``insightface_model_sizes``).
- ``mobilefacenet_thesis``: the SRRL face student of thesis Table 4.11, i.e. ``scale=1``
  (channels 64 / 64 / 128); 1.20M parameters (the thesis reports 1.2M) and 0.22 GMACs.

Layer sequence (thesis Table 4.11 with ``scale=1``): 3x3/2 conv 64 -> 3x3 depthwise conv 64
(insightface keeps 64 groups, so with ``scale=2`` each group has 2 channels) -> bottleneck
64->64 (expansion 128, stride 2) -> 4 residual bottlenecks (expansion 128) -> bottleneck
64->128 (expansion 256, stride 2) -> 6 residual (256) -> bottleneck 128->128 (512, stride 2) ->
2 residual (256) -> 1x1 conv 512 -> 7x7 depthwise linear conv ("GDC") -> Linear (no bias) ->
BatchNorm1d. The thesis caption calls every conv_block 3x3, but its 128->512 conv_block is the
1x1 conv of MobileFaceNet's own Table 1 (Chen et al.) and of insightface; with a 3x3 kernel the
network would have 1.72M parameters, not the 1.2M the thesis reports beside Table 4.12.

Stage names are chosen to align spatially with IResNet: ``stem`` (1/2 resolution), ``layer1``
(the depthwise conv, 1/2), ``layer2`` (1/4), ``layer3`` (1/8), ``layer4`` (1/16, ending with the
1x1 conv to 512 channels, like IResNet's 512-channel ``layer4``), so that feature-map
distillation from an IResNet teacher pairs maps of equal size at every stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .layers import (
    INPUT_SIZE_STEP,
    ConvBNAct,
    DepthwiseBottleneck,
    EmbeddingHead,
    FaceBackbone,
    check_positive_int,
    scale_channels,
)
from .registry import register_model

# Channel counts before ``scale``: stage channels (multiplied by scale) and bottleneck expansions
# (not multiplied, as in insightface), before the width multiplier.
STAGE_BASE_CHANNELS = (64, 128)
EXPANSIONS = (128, 256, 512)
HEAD_CHANNELS = 512


def _residual_stage(
    in_channels: int, out_channels: int, down_expansion: int, expansion: int, repeats: int
) -> list[nn.Module]:
    """A stride-2 bottleneck followed by ``repeats`` residual bottlenecks."""
    blocks: list[nn.Module] = [
        DepthwiseBottleneck(in_channels, out_channels, down_expansion, stride=2)
    ]
    blocks += [
        DepthwiseBottleneck(out_channels, out_channels, expansion, residual=True)
        for _ in range(repeats)
    ]
    return blocks


class MobileFaceNet(FaceBackbone):
    """MobileFaceNet backbone; ``forward(x)`` returns the embedding.

    Args:
        scale: insightface's integer channel scale (2 for ``mobilefacenet``, 1 for the thesis).
        residual_blocks: residual bottlenecks after each stride-2 bottleneck (4, 6, 2).
        input_size: square input resolution, a multiple of 16 (112 in the papers); the GDC
            kernel covers the whole ``input_size/16`` final map.
        width: channel multiplier on top of ``scale`` (see
            :func:`~fkdlib.models.layers.scale_channels`).
        embedding_size: embedding length (512 in insightface, also used for the thesis).
        dropout: dropout before the final linear layer (0: none, as published).
        in_channels: input channels (3 for RGB).
    """

    def __init__(
        self,
        *,
        scale: int = 2,
        residual_blocks: Sequence[int] = (4, 6, 2),
        input_size: int = 112,
        width: float = 1.0,
        embedding_size: int = 512,
        dropout: float = 0.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__(input_size, in_channels, embedding_size)
        scale = check_positive_int(scale, "scale")
        if len(residual_blocks) != len(EXPANSIONS):
            raise ConfigError(
                f"residual_blocks needs {len(EXPANSIONS)} counts (one per stride-2 stage, "
                f"(4, 6, 2) as published), got {list(residual_blocks)!r}"
            )
        repeats = [check_positive_int(n, "each residual_blocks count") for n in residual_blocks]
        narrow, wide = (scale_channels(c * scale, width) for c in STAGE_BASE_CHANNELS)
        expansion_1, expansion_2, expansion_3 = (scale_channels(c, width) for c in EXPANSIONS)
        head_channels = scale_channels(HEAD_CHANNELS, width)
        # insightface's 64 groups at scale s put s channels in each group; keep that ratio.
        if narrow % scale:
            raise ConfigError(
                f"scale={scale} with width={width} gives {narrow} stem channels, which cannot be "
                f"split into groups of {scale} channels; use a power-of-two scale"
            )
        stem_groups = narrow // scale
        self.stage_channels = [narrow, narrow, wide, head_channels]

        self.stem = ConvBNAct(self.in_channels, narrow, 3, stride=2)
        self.layer1 = ConvBNAct(narrow, narrow, 3, groups=stem_groups)
        self.layer2 = nn.Sequential(
            *_residual_stage(narrow, narrow, expansion_1, expansion_1, repeats[0])
        )
        self.layer3 = nn.Sequential(
            *_residual_stage(narrow, wide, expansion_2, expansion_2, repeats[1])
        )
        self.layer4 = nn.Sequential(
            *_residual_stage(wide, wide, expansion_3, expansion_2, repeats[2]),
            ConvBNAct(wide, head_channels, 1),
        )
        # Global depthwise convolution: one k x k filter per channel over the whole final map.
        final_map = self.input_size // INPUT_SIZE_STEP
        self.gdc = ConvBNAct(
            head_channels, head_channels, final_map, groups=head_channels, padding=0, act=False
        )
        self.head = EmbeddingHead(
            head_channels, self.embedding_size, dropout=dropout, bias=False, freeze_scale=False
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # insightface's MobileFaceNet initialisation: He normal (fan-out) for conv and linear.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def forward_pooled(self, out: torch.Tensor) -> torch.Tensor:
        """The global depthwise conv (GDC) output, flattened."""
        return torch.flatten(self.gdc(out), 1)

    def forward_embedding(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)


@register_model
def mobilefacenet(
    *,
    input_size: int = 112,
    width: float = 1.0,
    embedding_size: int = 512,
    dropout: float = 0.0,
    in_channels: int = 3,
) -> MobileFaceNet:
    """insightface's MobileFaceNet (``get_mbf``, scale 2): 2.06M parameters, 0.44 GMACs."""
    return MobileFaceNet(
        scale=2, input_size=input_size, width=width, embedding_size=embedding_size,
        dropout=dropout, in_channels=in_channels,
    )


@register_model
def mobilefacenet_thesis(
    *,
    input_size: int = 112,
    width: float = 1.0,
    embedding_size: int = 512,
    dropout: float = 0.0,
    in_channels: int = 3,
) -> MobileFaceNet:
    """The SRRL face student of thesis Table 4.11 (scale 1): 1.20M parameters, 0.22 GMACs."""
    return MobileFaceNet(
        scale=1, input_size=input_size, width=width, embedding_size=embedding_size,
        dropout=dropout, in_channels=in_channels,
    )
