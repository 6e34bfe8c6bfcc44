"""FAN-Face's integration layers (thesis ch. 3, Sec. 3.2.3-3.2.4, Fig. 3.6): how a feature map of
the frozen face-alignment network joins a feature map of the recognition network,

    y <- y + gamma * f(x_FAN, y)                                           (thesis eq. 3.2)

with ``gamma = 1`` for 1-1 connectivity and a learnable gate per recognition block for 1-M.
Every layer first aligns the FAN map with the recognition map: re-sampled to its side
(bilinear), BN (adjusting the FAN map's contrast), a 1x1 convolution to the recognition
network's channels, and adaptive instance normalisation to its statistics. Then:

- :class:`SimpleLayer` (SL): ``f`` is the aligned map itself (added after AdaIN);
- :class:`BasicLayer` (BL): the aligned map concatenated with ``y`` -> 1x1 convolution back to
  ``y``'s channels -> BN -> PReLU;
- :class:`AdvancedLayer` (AL): as BL with the 1x1 convolution replaced by a bottleneck
  (1x1 -> 3x3 -> 1x1). The thesis does not give the bottleneck's width; ours is half of
  ``y``'s channels, with BN and ReLU between its convolutions as in a ResNet bottleneck.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry
from .layers import BN_EPS, check_positive_int

INTEGRATION_LAYERS: Registry = Registry("FAN-Face integration layer", skip=2)
ONE_TO_MANY_GATE_START = 1.0


def adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Adaptive instance normalisation (Huang & Belongie, ICCV 2017): ``content`` re-scaled so
    that each sample's channels have the mean and standard deviation of ``style``'s, over
    their spatial positions."""
    if content.shape[:2] != style.shape[:2]:
        raise ConfigError(
            f"AdaIN needs the same batch and channels, got {tuple(content.shape)} and "
            f"{tuple(style.shape)}")
    c_mean = content.mean((2, 3), keepdim=True)
    c_std = (content.var((2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    s_mean = style.mean((2, 3), keepdim=True)
    s_std = (style.var((2, 3), keepdim=True, unbiased=False) + eps).sqrt()
    return (content - c_mean) / c_std * s_std + s_mean


class IntegrationLayer(nn.Module, ABC):
    """``f(x_FAN, y)`` of eq. 3.2: the shared alignment, then :meth:`combine` (one per layer).

    Args:
        fan_channels: channels of the FAN map (the hourglass's features).
        channels: channels of the recognition map ``y``.
    """

    def __init__(self, fan_channels: int, channels: int) -> None:
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        self.align = nn.Sequential(
            nn.BatchNorm2d(check_positive_int(fan_channels, "fan_channels"), eps=BN_EPS),
            nn.Conv2d(fan_channels, channels, 1, bias=False))

    def aligned(self, fan: Tensor, y: Tensor) -> Tensor:
        """The FAN map at ``y``'s side and channels, with ``y``'s per-channel statistics."""
        if fan.shape[-2:] != y.shape[-2:]:
            fan = F.interpolate(fan, size=y.shape[-2:], mode="bilinear", align_corners=False)
        return adain(self.align(fan), y)

    @abstractmethod
    def combine(self, aligned: Tensor, y: Tensor) -> Tensor:
        """``f`` from the aligned FAN map and ``y`` (the one hook a layer overrides)."""

    def forward(self, fan: Tensor, y: Tensor) -> Tensor:
        """``f(x_FAN, y)``, to be added to ``y`` by the caller (with its gate)."""
        return self.combine(self.aligned(fan, y), y)


@INTEGRATION_LAYERS.register("simple")
class SimpleLayer(IntegrationLayer):
    """SL: the aligned FAN map is added to ``y`` as it is."""

    def combine(self, aligned: Tensor, y: Tensor) -> Tensor:
        return aligned


def _mix_output(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels, eps=BN_EPS), nn.PReLU(channels)]


@INTEGRATION_LAYERS.register("basic")
class BasicLayer(IntegrationLayer):
    """BL: concatenation with ``y``, a 1x1 convolution back to ``y``'s channels, BN, PReLU."""

    def __init__(self, fan_channels: int, channels: int) -> None:
        super().__init__(fan_channels, channels)
        self.mix = nn.Sequential(nn.Conv2d(2 * channels, channels, 1, bias=False),
                                 *_mix_output(channels))

    def combine(self, aligned: Tensor, y: Tensor) -> Tensor:
        return self.mix(torch.cat([aligned, y], 1))


@INTEGRATION_LAYERS.register("advanced")
class AdvancedLayer(IntegrationLayer):
    """AL: as BL with a 1x1 -> 3x3 -> 1x1 bottleneck (half of ``y``'s channels inside)."""

    def __init__(self, fan_channels: int, channels: int) -> None:
        super().__init__(fan_channels, channels)
        inner = max(channels // 2, 1)
        self.mix = nn.Sequential(
            nn.Conv2d(2 * channels, inner, 1, bias=False), nn.BatchNorm2d(inner, eps=BN_EPS),
            nn.ReLU(inplace=False),
            nn.Conv2d(inner, inner, 3, padding=1, bias=False), nn.BatchNorm2d(inner, eps=BN_EPS),
            nn.ReLU(inplace=False),
            nn.Conv2d(inner, channels, 1, bias=False), *_mix_output(channels))

    def combine(self, aligned: Tensor, y: Tensor) -> Tensor:
        return self.mix(torch.cat([aligned, y], 1))


class GatedIntegration(nn.Module):
    """One integration point: ``y + gamma * f(x_FAN, y)``.

    ``gated=False`` is 1-1 connectivity (``gamma`` fixed at 1); ``gated=True`` is one of the
    1-M connections, whose learnable ``gamma`` starts at :data:`ONE_TO_MANY_GATE_START` (1: at
    the start each block receives the FAN map as a 1-1 connection would, and training learns
    where it helps).
    """

    def __init__(self, layer: str, fan_channels: int, channels: int, gated: bool = False
                 ) -> None:
        super().__init__()
        self.layer = INTEGRATION_LAYERS.create(layer, fan_channels, channels)
        self.gate = nn.Parameter(torch.tensor(ONE_TO_MANY_GATE_START)) if gated else None

    def forward(self, fan: Tensor, y: Tensor) -> Tensor:
        update = self.layer(fan, y)
        return y + (update if self.gate is None else self.gate * update)
