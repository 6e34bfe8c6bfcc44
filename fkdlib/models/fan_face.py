"""FAN-Face (thesis ch. 3): an IResNet recognition network (FRN) on unaligned faces, guided by a
frozen face-alignment network (:class:`~fkdlib.models.fan.FAN`).

What the FAN gives the FRN, each switchable for the thesis's ablations:

- ``heatmaps="h2"``: the second stack's landmark heatmaps, re-sampled to the image and stacked
  with it as extra input channels (thesis Sec. 3.2.2); ``"h2+"``: also stacked with the FRN's
  maps at the input of every later stage (each stage's first block takes the extra channels);
- ``integration``: at each stage end (``"1-1"``) or after every block with a learnable gate
  (``"1-M"``), a map of the FAN's last hourglass joins the FRN's map through an integration
  layer (``"basic"``, ``"simple"``, ``"advanced"``; :mod:`~fkdlib.models.fan_integration`),
  taken from its high-to-low (``"h2l"``) or low-to-high (``"l2h"``) half at the side nearest
  to the FRN map's (re-sampled to match, as the thesis does);
- ``multitask=True`` instead: no FAN; a 1x1 heatmap head after the last stage, trained to
  predict the landmarks (the thesis's multi-task baseline, AS7).

The FAN is frozen: no gradient reaches it and it stays in ``eval()`` when the FRN trains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .fan import FAN, HOURGLASS_DEPTH, STEM_STRIDE, FanFeatures
from .fan_integration import INTEGRATION_LAYERS, GatedIntegration
from .iresnet import IBasicBlock, IResNet
from .registry import register_model

HEATMAP_MODES = ("none", "h2", "h2+")
CONNECTIVITIES = ("1-1", "1-M")
FAN_HALVES = ("h2l", "l2h")
IRESNET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3)}


def _choice(value: str, allowed: Sequence[str], name: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def nearest_side(sides: Sequence[int], side: int) -> int:
    """The side among ``sides`` nearest to ``side`` on a log scale (the larger on a tie)."""
    return min(sorted(sides, reverse=True), key=lambda s: abs(math.log2(s / side)))


class FanFace(IResNet):
    """IResNet FRN with FAN guidance (see the module docstring).

    Args:
        depths: IResNet stage depths, e.g. ``(3, 4, 6, 3)`` for IResNet-34.
        fan: the face-alignment network; ``None`` only for the multi-task baseline.
        heatmaps, integration, connectivity, fan_half, multitask: the FAN-Face options.
        num_landmarks: heatmaps of the multi-task head (the FAN's count when a FAN is given).
        input_size, width, embedding_size, dropout: as for :class:`IResNet`.
    """

    def __init__(self, depths: Sequence[int], fan: FAN | None, *, heatmaps: str = "h2",
                 integration: str | None = "basic", connectivity: str = "1-1",
                 fan_half: str = "h2l", multitask: bool = False, num_landmarks: int = 51,
                 input_size: int = 112, width: float = 1.0, embedding_size: int = 512,
                 dropout: float = 0.0) -> None:
        self.heatmaps = _choice(heatmaps, HEATMAP_MODES, "heatmaps")
        self.connectivity = _choice(connectivity, CONNECTIVITIES, "connectivity")
        self.fan_half = _choice(fan_half, FAN_HALVES, "fan_half")
        if integration is not None:
            _choice(integration, INTEGRATION_LAYERS.names(), "integration")
        self.integration = integration
        self.multitask = bool(multitask)
        uses_fan = self.heatmaps != "none" or integration is not None
        if self.multitask and uses_fan:
            raise ConfigError("the multi-task baseline has no FAN: use heatmaps='none' and "
                              "integration=None with multitask=True")
        if uses_fan and fan is None:
            raise ConfigError("FAN-Face with heatmaps or integration needs a FAN (fan=...)")
        landmarks = fan.num_landmarks if fan is not None else num_landmarks
        extra = landmarks if self.heatmaps != "none" else 0
        super().__init__(depths, input_size=input_size, width=width,
                         embedding_size=embedding_size, dropout=dropout, in_channels=3 + extra)
        self.in_channels = 3  # the FRN's first convolution takes the image and the heatmaps
        if self.heatmaps == "h2+":
            for stage, previous in zip(self.stages()[1:], self.stage_channels[:-1]):
                stage[0] = IBasicBlock(previous + landmarks, stage[0].conv1.out_channels, 2)
            self._init_weights()
        self.fan = fan if uses_fan else None
        if self.fan is not None:
            self.fan.requires_grad_(False).eval()
        self.integrations = nn.ModuleList()
        if integration is not None:
            fan_channels = fan.features
            for stage, channels in zip(self.stages(), self.stage_channels):
                if self.connectivity == "1-1":
                    self.integrations.append(GatedIntegration(integration, fan_channels, channels))
                else:
                    self.integrations.append(nn.ModuleList(
                        GatedIntegration(integration, fan_channels, channels, gated=True)
                        for _ in stage))
        self.landmark_head = (nn.Conv2d(self.stage_channels[-1], landmarks, 1)
                              if self.multitask else None)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def train(self, mode: bool = True) -> FanFace:
        super().train(mode)
        if self.fan is not None:
            self.fan.eval()  # frozen: its BatchNorm statistics never move
        return self

    def _fan_features(self, x: Tensor) -> FanFeatures:
        with torch.no_grad():
            return self.fan.forward_features(self.fan.resized(x))

    @staticmethod
    def _resized(maps: Tensor, side: int) -> Tensor:
        if maps.shape[-1] == side:
            return maps
        return F.interpolate(maps, size=(side, side), mode="bilinear", align_corners=False)

    def fan_outputs(self, x: Tensor) -> FanFeatures:
        """What the frozen FAN gives this network for images ``x``: its last stack's heatmaps
        (when heatmaps are stacked) and the maps of the half it integrates (when it
        integrates), computed without gradient; what :meth:`forward_features` takes as
        ``fan_features`` to skip the FAN (a training bank computes them once per image)."""
        if self.fan is None:
            raise ConfigError("this network uses no FAN (the multi-task baseline)")
        full = self._fan_features(x)
        keep_maps = self.integration is not None
        return FanFeatures(
            heatmaps=[full.heatmaps[-1]] if self.heatmaps != "none" else [],
            high_to_low=full.high_to_low if keep_maps and self.fan_half == "h2l" else {},
            low_to_high=full.low_to_high if keep_maps and self.fan_half == "l2h" else {})

    def forward_features(self, x: Tensor, fan_features: FanFeatures | None = None
                         ) -> dict[str, Tensor]:
        """As :meth:`IResNet.forward_features`, plus ``"fan_heatmaps"`` (the FAN's last stack)
        when heatmaps are stacked, or ``"heatmaps"`` (the multi-task head's prediction).
        ``fan_features`` (:meth:`fan_outputs` of the same images) skips the FAN."""
        self.check_input(x)
        features: dict[str, Tensor] = {}
        fan = None
        if self.fan is not None:
            fan = fan_features if fan_features is not None else self.fan_outputs(x)
        inputs = x
        if fan is not None and self.heatmaps != "none":
            features["fan_heatmaps"] = fan.heatmaps[-1]
            inputs = torch.cat([x, self._resized(fan.heatmaps[-1], x.shape[-1])], 1)
        half = None if fan is None else (fan.high_to_low if self.fan_half == "h2l"
                                         else fan.low_to_high)
        out = features["stem"] = self.forward_stem(inputs)
        for k, (name, stage) in enumerate(zip(self.stage_names, self.stages())):
            if self.heatmaps == "h2+" and k > 0:
                out = torch.cat([out, self._resized(fan.heatmaps[-1], out.shape[-1])], 1)
            for j, block in enumerate(stage):
                out = block(out)
                if self.integration is not None and self.connectivity == "1-M":
                    out = self.integrations[k][j](half[nearest_side(list(half), out.shape[-1])],
                                                  out)
            if self.integration is not None and self.connectivity == "1-1":
                out = self.integrations[k](half[nearest_side(list(half), out.shape[-1])], out)
            features[name] = out
        if self.landmark_head is not None:
            features["heatmaps"] = self.landmark_head(out)
        features["pooled"] = self.forward_pooled(out)
        features["embedding"] = self.forward_embedding(features["pooled"])
        return features


@register_model
def fan_face(*, depth: int = 34, input_size: int = 112, width: float = 1.0,
             embedding_size: int = 512, dropout: float = 0.0, heatmaps: str = "h2",
             integration: str | None = "basic", connectivity: str = "1-1",
             fan_half: str = "h2l", multitask: bool = False, fan_stacks: int = 2,
             fan_width: float = 1.0, fan_depth: int = HOURGLASS_DEPTH,
             fan_input_size: int | None = None, num_landmarks: int = 51) -> FanFace:
    """FAN-Face on IResNet-``depth`` (18, 34 or 50) with an untrained FAN of ``fan_stacks``
    stacks, ``fan_width`` and hourglasses of ``fan_depth`` levels, which sees the image
    re-sampled to ``fan_input_size`` (default: the next multiple of its input multiple,
    4 x 2**fan_depth); load the trained FAN's weights into ``.fan`` before training (the zoo's
    ``"fan_guided"`` method does)."""
    if depth not in IRESNET_DEPTHS:
        raise ConfigError(f"depth must be one of {sorted(IRESNET_DEPTHS)}, got {depth!r}")
    uses_fan = heatmaps != "none" or integration is not None
    multiple = STEM_STRIDE * 2 ** fan_depth
    fan_side = fan_input_size or -(-input_size // multiple) * multiple
    fan = FAN(stacks=fan_stacks, num_landmarks=num_landmarks, width=fan_width, depth=fan_depth,
              input_size=fan_side) if uses_fan else None
    return FanFace(IRESNET_DEPTHS[depth], fan, heatmaps=heatmaps, integration=integration,
                   connectivity=connectivity, fan_half=fan_half, multitask=multitask,
                   num_landmarks=num_landmarks, input_size=input_size, width=width,
                   embedding_size=embedding_size, dropout=dropout)
