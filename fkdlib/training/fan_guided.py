"""Training FAN-Face's recognition network (thesis ch. 3) with its frozen FAN's outputs computed
once per training image instead of at every step.

The FAN never changes while the recognition network trains, and the trainer's only
augmentation is the horizontal flip, so everything the FAN can give a training batch is known
in advance: its outputs for every training image and for every mirrored one. Computing them at
every step costs more than the recognition network itself at the CPU profiles (a two-stack
hourglass beside an IResNet-18 of width 0.125); a bank of them trains the same network about
twice as fast. The bank is built only where it fits in :data:`BANK_LIMIT_BYTES` and the dataset
gives all its images at once; otherwise the FAN runs at every step, as the network's own
``forward_features`` does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..data import dataset_labels
from ..data.transforms import hflip, to_float_image
from ..errors import ConfigError
from ..models.fan import FanFeatures
from ..models.fan_face import FanFace

BANK_LIMIT_BYTES = 2 * 2 ** 30
BANK_BATCH = 256


def _gather(features: FanFeatures, index: Tensor, device: torch.device) -> FanFeatures:
    return FanFeatures(
        heatmaps=[h[index].to(device, non_blocking=True) for h in features.heatmaps],
        high_to_low={side: m[index].to(device, non_blocking=True)
                     for side, m in features.high_to_low.items()},
        low_to_high={side: m[index].to(device, non_blocking=True)
                     for side, m in features.low_to_high.items()})


def _concatenated(parts: list[FanFeatures]) -> FanFeatures:
    first = parts[0]
    return FanFeatures(
        heatmaps=[torch.cat([p.heatmaps[k] for p in parts]) for k in range(len(first.heatmaps))],
        high_to_low={side: torch.cat([p.high_to_low[side] for p in parts])
                     for side in first.high_to_low},
        low_to_high={side: torch.cat([p.low_to_high[side] for p in parts])
                     for side in first.low_to_high})


def bank_bytes(backbone: FanFace, images: int) -> int:
    """Bytes of the bank of ``images`` training images (twice: each also mirrored), float32."""
    side = backbone.input_size
    with torch.no_grad():
        probe = backbone.fan_outputs(torch.zeros(1, 3, side, side,
                                                 device=next(backbone.fan.parameters()).device))
    per_image = sum(t[0].numel() for t in [*probe.heatmaps, *probe.high_to_low.values(),
                                            *probe.low_to_high.values()])
    return 2 * images * per_image * 4


class FanGuidedTask(nn.Module):
    """A :class:`~fkdlib.models.fan_face.FanFace` and its margin head with cross-entropy, for
    the :class:`~fkdlib.training.trainer.Trainer`, its FAN's outputs taken from a bank.

    :meth:`training_targets` builds the bank (the FAN's outputs for every training image,
    then for every mirrored one) and gives each image the row ``(identity, bank row)``;
    :meth:`flip_targets` points a flipped image at its mirror's row. Where no bank is built
    (see the module docstring) it returns ``None`` and the trainer gives identities alone.
    """

    def __init__(self, backbone: FanFace, head: nn.Module,
                 limit_bytes: int = BANK_LIMIT_BYTES) -> None:
        super().__init__()
        if backbone.fan is None:
            raise ConfigError("FanGuidedTask needs a FAN-Face network that uses a FAN")
        self.backbone, self.head = backbone, head
        self.limit_bytes = int(limit_bytes)
        self.bank: FanFeatures | None = None
        self.bank_images = 0

    @torch.no_grad()
    def training_targets(self, dataset: Dataset) -> Tensor | None:
        """``(N, 2)`` int64 rows ``(identity, bank row)``, or ``None`` without a bank."""
        if not hasattr(dataset, "images_u8"):
            return None
        images = torch.from_numpy(np.ascontiguousarray(dataset.images_u8()))
        if bank_bytes(self.backbone, len(images)) > self.limit_bytes:
            return None
        fan = self.backbone.fan
        device = next(fan.parameters()).device
        was_training = fan.training
        fan.eval()
        parts = []
        try:
            for mirrored in (False, True):
                for start in range(0, len(images), BANK_BATCH):
                    batch = to_float_image(images[start:start + BANK_BATCH]).to(device)
                    if mirrored:
                        batch = hflip(batch, torch.ones(len(batch), dtype=torch.bool))
                    parts.append(_gather(self.backbone.fan_outputs(batch),
                                         slice(None), torch.device("cpu")))
        finally:
            fan.train(was_training)
        self.bank, self.bank_images = _concatenated(parts), len(images)
        labels = torch.from_numpy(dataset_labels(dataset))
        return torch.stack([labels, torch.arange(len(images))], 1)

    def flip_targets(self, targets: Tensor, flipped: Tensor, width: int) -> Tensor:
        """Rows of flipped images point at their mirror's bank row (identities alone, without
        a bank, are unchanged)."""
        if targets.dim() == 1:
            return targets
        out = targets.clone()
        out[flipped, 1] += self.bank_images
        return out

    def forward(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        if targets.dim() == 1:  # no bank: identities alone, the FAN runs here
            labels, fan = targets, None
        else:
            labels = targets[:, 0]
            fan = _gather(self.bank, targets[:, 1].cpu(), images.device)
        embedding = self.backbone.forward_features(images, fan)["embedding"]
        return {"ce": F.cross_entropy(self.head(embedding, labels), labels)}
