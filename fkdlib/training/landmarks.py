"""Training a face-alignment network on landmark heatmaps (FAN, Bulat & Tzimiropoulos, ICCV
2017): every stack's heatmaps regress Gaussian targets at the landmarks with a mean squared
error (intermediate supervision), the way FAN-Face's alignment network (thesis ch. 3) is
trained, here on SynthFace's landmarks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..evaluation.landmarks import (
    MIRROR_51,
    MIRROR_68,
    landmark_heatmaps,
    mirror_landmarks,
    to_heatmap_coordinates,
)
from ..models.fan import FAN, STEM_STRIDE

FIRST_INTERNAL_POINT = 17  # the 51 internal points are iBUG points 17..67


class LandmarkTask(nn.Module):
    """A :class:`~fkdlib.models.fan.FAN` with its heatmap loss, for the
    :class:`~fkdlib.training.trainer.Trainer`: ``forward(images, landmarks)`` returns
    ``{"heatmap_mse": ...}``, the mean over stacks of the MSE between each stack's heatmaps
    and Gaussians of ``sigma`` heatmap pixels at the landmarks (pixel coordinates of the
    images, ``(B, num_landmarks, 2)``)."""

    def __init__(self, fan: FAN, sigma: float = 1.0) -> None:
        super().__init__()
        self.fan = fan
        self.sigma = float(sigma)

    def training_targets(self, dataset: Dataset) -> Tensor:
        """The landmarks the FAN learns, from a dataset that gives all of them at once."""
        landmarks = getattr(dataset, "landmarks68", None)
        if landmarks is None:
            raise ConfigError(f"{type(dataset).__name__} has no landmarks68(); the FAN trains "
                              "on a dataset with 68-point landmarks, such as SynthFace")
        points = torch.as_tensor(landmarks(), dtype=torch.float32)
        if self.fan.num_landmarks == 51:
            points = points[:, FIRST_INTERNAL_POINT:]
        elif self.fan.num_landmarks != 68:
            raise ConfigError(f"a FAN with {self.fan.num_landmarks} heatmaps cannot learn the "
                              "68-point landmarks; use 68 or the 51 internal points")
        return points.contiguous()

    def flip_targets(self, landmarks: Tensor, flipped: Tensor, width: int) -> Tensor:
        """The landmarks after the trainer flipped the images where ``flipped`` holds."""
        mirror = MIRROR_51 if self.fan.num_landmarks == 51 else MIRROR_68
        out = landmarks.clone()
        out[flipped] = mirror_landmarks(landmarks[flipped], width, mirror)
        return out

    def forward(self, images: Tensor, landmarks: Tensor) -> dict[str, Tensor]:
        heatmaps = self.fan(images)
        side = heatmaps[-1].shape[-1]
        target = landmark_heatmaps(to_heatmap_coordinates(landmarks, STEM_STRIDE), side,
                                   self.sigma)
        loss = sum(F.mse_loss(h, target) for h in heatmaps) / len(heatmaps)
        return {"heatmap_mse": loss}
