"""Relational knowledge distillation (Park et al., "Relational Knowledge Distillation", CVPR
2019), on the embeddings.

- Distance term (Eq. 3-4): pairwise Euclidean distances within the batch, each network's
  divided by its mean over the pairs with non-zero distance, compared with the Huber (smooth
  L1, δ = 1) loss averaged over all B² pairs.
- Angle term (Eq. 5-6): for every triplet (i, j, k), ``cos ∠ e_ij, e_kj`` with
  ``e_ij = (x_i − x_j)/‖x_i − x_j‖`` (a zero difference gives a zero vector), compared with
  the Huber loss averaged over all B³ triplets.

``L_RKD = 25 · L_dist + 50 · L_angle``, with overall weight ``β = 1`` (:data:`RKD_WEIGHT`),
the defaults of the paper, RepDistiller and the SRRL thesis. Teacher and student dimensions may
differ: only relations are compared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Features, register_loss, require_feature, wide

RKD_WEIGHT = 1.0
RKD_DISTANCE_WEIGHT = 25.0
RKD_ANGLE_WEIGHT = 50.0
_DISTANCE_EPS = 1e-12


def pairwise_distances(x: Tensor) -> Tensor:
    """Euclidean distance matrix (B, B) with an exact zero diagonal.

    Computed from the Gram matrix and clamped at 1e-12 before the square root so the gradient
    stays finite for coincident points.
    """
    squared = x.pow(2).sum(dim=1)
    gram = x @ x.t()
    distances = (squared.unsqueeze(1) + squared.unsqueeze(0) - 2 * gram).clamp(min=_DISTANCE_EPS)
    distances = distances.sqrt()
    return distances * (1 - torch.eye(len(x), device=x.device, dtype=x.dtype))


def _normalised_distances(x: Tensor) -> Tensor:
    distances = pairwise_distances(x)
    positive = distances[distances > 0]
    if positive.numel() == 0:
        return distances
    return distances / positive.mean()


def rkd_distance_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """RKD-D: Huber loss between the mean-normalised distance matrices."""
    with torch.no_grad():
        target = _normalised_distances(wide(teacher))
    return F.smooth_l1_loss(_normalised_distances(wide(student)), target)


def _angles(x: Tensor) -> Tensor:
    differences = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)
    return torch.bmm(differences, differences.transpose(1, 2)).flatten()


def rkd_angle_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """RKD-A: Huber loss between the cosines of all triplet angles."""
    with torch.no_grad():
        target = _angles(wide(teacher))
    return F.smooth_l1_loss(_angles(wide(student)), target)


class RKDLoss(nn.Module):
    """Distance- plus angle-wise RKD on a vector feature (default ``"embedding"``).

    Args:
        distance_weight: weight of the distance term (25).
        angle_weight: weight of the angle term (50).
        feature: which output to relate (a flat vector per sample).
    """

    def __init__(self, distance_weight: float = RKD_DISTANCE_WEIGHT,
                 angle_weight: float = RKD_ANGLE_WEIGHT, feature: str = "embedding") -> None:
        super().__init__()
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)
        self.feature = feature

    @property
    def needs_logits(self) -> bool:
        """Whether the Distiller must compute ``"logits"`` (when they are the related feature)."""
        return self.feature == "logits"

    def forward(self, student: Features, teacher: Features, labels: Tensor) -> Tensor:
        student_x = require_feature(student, self.feature, "student")
        teacher_x = require_feature(teacher, self.feature, "teacher")
        if student_x.dim() != 2 or teacher_x.dim() != 2:
            raise ConfigError(f"RKD relates flat vectors; {self.feature!r} has shapes "
                              f"{tuple(student_x.shape)} and {tuple(teacher_x.shape)}")
        loss = student_x.new_zeros((), dtype=torch.float32)
        if self.distance_weight:
            loss = loss + self.distance_weight * rkd_distance_loss(student_x, teacher_x)
        if self.angle_weight:
            loss = loss + self.angle_weight * rkd_angle_loss(student_x, teacher_x)
        return loss

    def extra_repr(self) -> str:
        return (f"distance_weight={self.distance_weight}, angle_weight={self.angle_weight}, "
                f"feature={self.feature!r}")


@register_loss("rkd", default_weight=RKD_WEIGHT)
def _build_rkd(student_backbone: nn.Module, teacher_backbone: nn.Module, teacher_head: nn.Module,
               distance_weight: float = RKD_DISTANCE_WEIGHT,
               angle_weight: float = RKD_ANGLE_WEIGHT, feature: str = "embedding") -> RKDLoss:
    return RKDLoss(distance_weight, angle_weight, feature)
