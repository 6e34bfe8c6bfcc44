"""FAN: the stacked-hourglass Face Alignment Network (Bulat & Tzimiropoulos, "How far are we
from solving the 2D & 3D face alignment problem?", ICCV 2017), as FAN-Face (thesis ch. 3) uses
it: two stacks, heatmaps of the 51 internal landmarks, and the maps of the second hourglass
exposed for integration into a recognition network.

Architecture (the published network; the width multiplier is ours, for CPU profiles):

- stem: 7x7/2 convolution to 64 channels (with bias) -> BN -> ReLU -> ConvBlock(64, 128) ->
  2x2 max-pool -> ConvBlock(128, 128) -> ConvBlock(128, 256); the hourglasses run at 1/4 of
  the input resolution;
- :class:`ConvBlock` (the hierarchical, parallel and multi-scale block of Bulat &
  Tzimiropoulos, ICCV 2017): pre-activation BN -> ReLU -> 3x3 convolutions to out/2, out/4 and
  out/4 channels, each feeding the next, concatenated; plus the input (through BN -> ReLU ->
  1x1 when the channel count changes);
- :class:`Hourglass` of depth 4 and 256 features: per level an upper ConvBlock at the level's
  resolution, a 2x2 max-pool and ConvBlock on the way down (high-to-low), the next level (a
  ConvBlock at the bottom), a ConvBlock on the way up (low-to-high), nearest up-sampling and the
  sum with the upper branch;
- per stack: hourglass -> ConvBlock -> 1x1 convolution -> BN -> ReLU -> 1x1 convolution to one
  heatmap per landmark; between stacks the stack's features and heatmaps are mapped back by
  1x1 convolutions and added to the stack's input.

Pooling is the max-pool of the published face-alignment network, whose pre-trained model
FAN-Face used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .layers import BN_EPS, check_positive_int, check_width, scale_channels
from .registry import register_model

INTERNAL_LANDMARKS = 51  # the 68-point iBUG set without the 17 points of the jaw line
HOURGLASS_DEPTH = 4
STEM_STRIDE = 4  # the hourglasses run at 1/4 of the input resolution
PUBLISHED_INPUT_SIZE = 256


class ConvBlock(nn.Module):
    """Pre-activation multi-scale residual block: three chained 3x3 convolutions to out/2,
    out/4 and out/4 channels, concatenated, plus the (projected) input."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels % 4:
            raise ConfigError(f"ConvBlock needs out_channels divisible by 4, got {out_channels}")
        widths = (out_channels // 2, out_channels // 4, out_channels // 4)
        branches, previous = [], in_channels
        for width in widths:
            branches.append(nn.Sequential(
                nn.BatchNorm2d(previous, eps=BN_EPS), nn.ReLU(inplace=False),
                nn.Conv2d(previous, width, 3, padding=1, bias=False)))
            previous = width
        self.branches = nn.ModuleList(branches)
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Sequential(
            nn.BatchNorm2d(in_channels, eps=BN_EPS), nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        outputs, h = [], x
        for branch in self.branches:
            h = branch(h)
            outputs.append(h)
        return torch.cat(outputs, 1) + self.shortcut(x)


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels at ``features`` channels.

    :meth:`forward` returns the output and the maps of both halves keyed by their side in
    pixels: ``high_to_low[s]`` is the descending path's map at side ``s`` (the upper branch at
    the input's side, then each pooled level after its ConvBlock), ``low_to_high[s]`` the
    ascending path's map (each level's ConvBlock before up-sampling, and the output at the
    input's side).
    """

    def __init__(self, depth: int, features: int) -> None:
        super().__init__()
        self.depth = check_positive_int(depth, "depth")
        self.upper = nn.ModuleList(ConvBlock(features, features) for _ in range(depth))
        self.down = nn.ModuleList(ConvBlock(features, features) for _ in range(depth))
        self.up = nn.ModuleList(ConvBlock(features, features) for _ in range(depth))
        self.bottom = ConvBlock(features, features)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor], dict[int, Tensor]]:
        high_to_low: dict[int, Tensor] = {}
        low_to_high: dict[int, Tensor] = {}
        skips = []
        h = x
        for level in range(self.depth):
            skip = self.upper[level](h)
            if level == 0:
                high_to_low[h.shape[-1]] = skip
            skips.append(skip)
            h = self.down[level](F.max_pool2d(h, 2))
            high_to_low[h.shape[-1]] = h
        h = self.bottom(h)
        for level in reversed(range(self.depth)):
            h = self.up[level](h)
            low_to_high[h.shape[-1]] = h
            h = skips[level] + F.interpolate(h, scale_factor=2.0, mode="nearest")
        low_to_high[h.shape[-1]] = h
        return h, high_to_low, low_to_high


@dataclass
class FanFeatures:
    """What FAN-Face takes from the FAN: ``heatmaps`` of every stack (the last is the
    prediction), and the last hourglass's ``high_to_low`` and ``low_to_high`` maps keyed by
    their side in pixels (see :class:`Hourglass`)."""

    heatmaps: list[Tensor]
    high_to_low: dict[int, Tensor]
    low_to_high: dict[int, Tensor]


class FAN(nn.Module):
    """The stacked-hourglass face-alignment network (see the module docstring).

    Args:
        stacks: number of hourglasses (FAN-Face: 2; the published 2D-FAN: 4).
        num_landmarks: heatmaps predicted (FAN-Face: the 51 internal points).
        width: channel multiplier (1.0: 64 / 128 / 256 channels as published).
        depth: levels of each hourglass (4 as published).
        input_size: the side of the images it is trained on (256 as published); any multiple
            of :attr:`input_multiple` is accepted at run time.
    """

    def __init__(self, stacks: int = 2, num_landmarks: int = INTERNAL_LANDMARKS,
                 width: float = 1.0, depth: int = HOURGLASS_DEPTH,
                 input_size: int = PUBLISHED_INPUT_SIZE) -> None:
        super().__init__()
        check_width(width)
        self.stacks = check_positive_int(stacks, "stacks")
        self.num_landmarks = check_positive_int(num_landmarks, "num_landmarks")
        self.depth = check_positive_int(depth, "depth")
        self.input_size = check_positive_int(input_size, "input_size")
        if self.input_size % self.input_multiple:
            raise ConfigError(
                f"FAN's input_size must be a multiple of {self.input_multiple} (4x stem, then "
                f"{depth} halvings), e.g. 64, 128 or 256; got {input_size}")
        c64, c128, features = (scale_channels(c, width) for c in (64, 128, 256))
        self.features = features
        self.stem = nn.Sequential(
            nn.Conv2d(3, c64, 7, stride=2, padding=3), nn.BatchNorm2d(c64, eps=BN_EPS),
            nn.ReLU(inplace=False), ConvBlock(c64, c128), nn.MaxPool2d(2),
            ConvBlock(c128, c128), ConvBlock(c128, features))
        self.hourglasses = nn.ModuleList(Hourglass(depth, features) for _ in range(stacks))
        self.heads = nn.ModuleList(nn.Sequential(
            ConvBlock(features, features), nn.Conv2d(features, features, 1),
            nn.BatchNorm2d(features, eps=BN_EPS), nn.ReLU(inplace=False))
            for _ in range(stacks))
        self.to_heatmaps = nn.ModuleList(
            nn.Conv2d(features, num_landmarks, 1) for _ in range(stacks))
        self.features_back = nn.ModuleList(
            nn.Conv2d(features, features, 1) for _ in range(stacks - 1))
        self.heatmaps_back = nn.ModuleList(
            nn.Conv2d(num_landmarks, features, 1) for _ in range(stacks - 1))

    def resized(self, images: Tensor) -> Tensor:
        """``images`` re-sampled (bilinear) to the side the FAN was built for, where they
        differ: a FAN may look at faces larger than the recognition network's (thesis ch. 3:
        the FAN runs at its own resolution and its outputs are re-sampled to the FRN's)."""
        if images.shape[-1] == self.input_size and images.shape[-2] == self.input_size:
            return images
        return F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                             align_corners=False)

    @property
    def input_multiple(self) -> int:
        """Input sides must be multiples of this (stem 4x, then 2x per hourglass level)."""
        return STEM_STRIDE * 2 ** self.depth

    def forward_features(self, x: Tensor) -> FanFeatures:
        side = x.shape[-1]
        if x.shape[-2] != side or side % self.input_multiple:
            raise ConfigError(
                f"FAN takes square images whose side is a multiple of {self.input_multiple} "
                f"(4x stem, then {self.depth} halvings), got {tuple(x.shape[-2:])}")
        h = self.stem(x)
        heatmaps = []
        for k in range(self.stacks):
            out, high_to_low, low_to_high = self.hourglasses[k](h)
            head = self.heads[k](out)
            heatmaps.append(self.to_heatmaps[k](head))
            if k < self.stacks - 1:
                h = h + self.features_back[k](head) + self.heatmaps_back[k](heatmaps[-1])
        return FanFeatures(heatmaps, high_to_low, low_to_high)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Heatmaps of every stack, each ``(B, num_landmarks, side / 4, side / 4)``."""
        return self.forward_features(x).heatmaps


@register_model
def fan(*, stacks: int = 2, num_landmarks: int = INTERNAL_LANDMARKS, width: float = 1.0,
        depth: int = HOURGLASS_DEPTH, input_size: int = PUBLISHED_INPUT_SIZE) -> FAN:
    """FAN-Face's face-alignment network: two hourglass stacks, 51 internal landmarks."""
    return FAN(stacks=stacks, num_landmarks=num_landmarks, width=width, depth=depth,
               input_size=input_size)
