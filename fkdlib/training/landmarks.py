"""Training on landmark heatmaps.

:class:`LandmarkTask`: a face-alignment network (FAN, Bulat & Tzimiropoulos, ICCV 2017) whose
every stack regresses Gaussian targets at the landmarks with a mean squared error
(intermediate supervision), the way FAN-Face's alignment network (thesis ch. 3) is trained,
here on SynthFace's landmarks.

:class:`MultitaskLandmarkTask`: FAN-Face's multi-task baseline (thesis Sec. 3.4, AS7): a
recognition network trained with its margin head's cross-entropy plus 0.1 x the L2 loss of a
heatmap head after its last stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..data import dataset_labels
from ..errors import ConfigError
from ..evaluation.landmarks import (
    MIRROR_51,
    MIRROR_68,
    landmark_heatmaps,
    mirror_landmarks,
    predict_landmarks,
    to_heatmap_coordinates,
)
from ..models.fan import FAN

FIRST_INTERNAL_POINT = 17  # the 51 internal points are iBUG points 17..67


def dataset_landmarks(dataset: Dataset, num_landmarks: int) -> Tensor:
    """``(N, num_landmarks, 2)`` pixel landmarks of every image of a dataset that gives its
    68-point landmarks at once (``landmarks68()``, as SynthFace does): all 68, or the 51
    internal points FAN-Face uses (iBUG points 17-67)."""
    landmarks = getattr(dataset, "landmarks68", None)
    if landmarks is None:
        raise ConfigError(f"{type(dataset).__name__} has no landmarks68(); landmark training "
                          "needs a dataset with 68-point landmarks, such as SynthFace")
    points = torch.as_tensor(landmarks(), dtype=torch.float32)
    if num_landmarks == 51:
        return points[:, FIRST_INTERNAL_POINT:].contiguous()
    if num_landmarks != 68:
        raise ConfigError(f"{num_landmarks} heatmaps cannot learn the 68-point landmarks; use "
                          "68 or the 51 internal points")
    return points.contiguous()


def _mirror_for(num_landmarks: int) -> tuple[int, ...]:
    return MIRROR_51 if num_landmarks == 51 else MIRROR_68


class LandmarkTask(nn.Module):
    """A :class:`~fkdlib.models.fan.FAN` with its heatmap loss, for the
    :class:`~fkdlib.training.trainer.Trainer`: ``forward(images, landmarks)`` returns
    ``{"heatmap_mse": ...}``, the mean over stacks of the MSE between each stack's heatmaps
    and Gaussians of ``sigma`` heatmap pixels at the landmarks (pixel coordinates of the
    images, ``(B, num_landmarks, 2)``). Images of another side than the FAN's are re-sampled
    to it (:meth:`~fkdlib.models.fan.FAN.resized`)."""

    def __init__(self, fan: FAN, sigma: float = 1.0) -> None:
        super().__init__()
        self.fan = fan
        self.sigma = float(sigma)

    def training_targets(self, dataset: Dataset) -> Tensor:
        """The landmarks the FAN learns, from a dataset that gives all of them at once."""
        return dataset_landmarks(dataset, self.fan.num_landmarks)

    def flip_targets(self, landmarks: Tensor, flipped: Tensor, width: int) -> Tensor:
        """The landmarks after the trainer flipped the images where ``flipped`` holds."""
        out = landmarks.clone()
        out[flipped] = mirror_landmarks(landmarks[flipped], width,
                                        _mirror_for(self.fan.num_landmarks))
        return out

    def forward(self, images: Tensor, landmarks: Tensor) -> dict[str, Tensor]:
        heatmaps = self.fan(self.fan.resized(images))
        side = heatmaps[-1].shape[-1]
        # landmarks in the pixels of ``images``, whatever side the FAN re-samples them to
        target = landmark_heatmaps(to_heatmap_coordinates(landmarks, images.shape[-1] / side),
                                   side, self.sigma)
        loss = sum(F.mse_loss(h, target) for h in heatmaps) / len(heatmaps)
        return {"heatmap_mse": loss}


MULTITASK_WEIGHT = 0.1  # thesis Sec. 3.4: the heatmap L2 loss weighted by 0.1


class MultitaskLandmarkTask(nn.Module):
    """Recognition plus landmark heatmaps from one network (FAN-Face's AS7 baseline).

    ``backbone.forward_features`` must return ``"embedding"`` and ``"heatmaps"`` (a
    :class:`~fkdlib.models.fan_face.FanFace` with ``multitask=True``). Where the dataset has
    landmarks (SynthFace), the training target of an image is one row: its identity, then its
    landmarks' x, y in pixels (:meth:`training_targets`), so the trainer batches and flips them
    together. Where it has none (real faces), a frozen ``fan`` finds them in every batch (as
    a recognition dataset without landmark labels is annotated in practice) and the targets
    are the identities alone. ``forward`` returns ``{"ce": ..., "heatmap_mse": weight x
    MSE}``, the MSE between the predicted heatmaps and Gaussians of ``sigma`` heatmap pixels at
    the landmarks.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, num_landmarks: int = 51,
                 weight: float = MULTITASK_WEIGHT, sigma: float = 1.0,
                 fan: FAN | None = None) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.num_landmarks = int(num_landmarks)
        self.weight, self.sigma = float(weight), float(sigma)
        if fan is not None:
            if fan.num_landmarks != self.num_landmarks:
                raise ConfigError(f"the FAN finds {fan.num_landmarks} landmarks; the "
                                  f"multi-task head predicts {self.num_landmarks}")
            fan.requires_grad_(False).eval()
        self.fan = fan

    def train(self, mode: bool = True) -> MultitaskLandmarkTask:
        super().train(mode)
        if self.fan is not None:
            self.fan.eval()  # frozen
        return self

    def training_targets(self, dataset: Dataset) -> Tensor | None:
        """``(N, 1 + 2 x num_landmarks)``: identity (exact in float32 below 2**24), then the
        landmarks' x, y; ``None`` (identities alone) for a dataset without landmarks when a
        FAN is there to find them."""
        if getattr(dataset, "landmarks68", None) is None and self.fan is not None:
            return None
        points = dataset_landmarks(dataset, self.num_landmarks)
        labels = torch.from_numpy(dataset_labels(dataset)).to(torch.float32)
        if labels.numel() and int(labels.max()) >= 2 ** 24:
            raise ConfigError("more than 2**24 identities cannot share a float32 target row")
        return torch.cat([labels[:, None], points.flatten(1)], 1)

    def _split(self, targets: Tensor) -> tuple[Tensor, Tensor]:
        return targets[:, 0].long(), targets[:, 1:].reshape(len(targets), self.num_landmarks, 2)

    def flip_targets(self, targets: Tensor, flipped: Tensor, width: int) -> Tensor:
        """The rows after the trainer flipped the images where ``flipped`` holds (labels
        kept, landmarks mirrored; identities alone are unchanged)."""
        if targets.dim() == 1:
            return targets
        _, points = self._split(targets)
        out = targets.clone()
        out[flipped, 1:] = mirror_landmarks(points[flipped], width,
                                            _mirror_for(self.num_landmarks)).flatten(1)
        return out

    def forward(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        if targets.dim() == 1:  # no landmark labels: the FAN's, found in the (flipped) images
            labels, points = targets, predict_landmarks(self.fan, images)
        else:
            labels, points = self._split(targets)
        features = self.backbone.forward_features(images)
        logits = self.head(features["embedding"], labels)
        heatmaps = features["heatmaps"]
        stride = images.shape[-1] / heatmaps.shape[-1]
        target = landmark_heatmaps(to_heatmap_coordinates(points, stride),
                                   heatmaps.shape[-1], self.sigma)
        return {"ce": F.cross_entropy(logits, labels),
                "heatmap_mse": self.weight * F.mse_loss(heatmaps, target)}
