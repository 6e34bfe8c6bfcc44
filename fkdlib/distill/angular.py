"""Angular distillation of VarGFaceNet (Yan et al., ICCVW 2019, Eq. 5 and 7).

``L_a = mean_i ‖ F_t/‖F_t‖ − F_s/‖F_s‖ ‖²`` over the batch, on the embeddings; for unit
vectors this equals ``2 − 2 cos(F_t, F_s)``, so only the direction of the student's embedding
is pulled toward the teacher's (what a cosine-similarity face verifier uses). The paper trains
with ``L = L_ArcFace + α · L_a``, ``α = 7`` (:data:`ANGULAR_WEIGHT`).

When the two embeddings differ in size, a linear projection (no bias) of the student's
embedding to the teacher's size is trained with the student, but only if asked
(``project=True``): the paper's student and teacher share the 512-d embedding, so a silent
projection would change the method.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Features, feature_shape, register_loss, require_feature, wide

ANGULAR_WEIGHT = 7.0


def angular_distance(student_embeddings: Tensor, teacher_embeddings: Tensor) -> Tensor:
    """``mean_i ‖ t_i/‖t_i‖ − s_i/‖s_i‖ ‖²`` (VarGFaceNet Eq. 5); the teacher is detached."""
    if student_embeddings.shape != teacher_embeddings.shape:
        raise ConfigError(f"angular distance needs embeddings of the same shape, got "
                          f"{tuple(student_embeddings.shape)} (student) and "
                          f"{tuple(teacher_embeddings.shape)} (teacher)")
    student = F.normalize(wide(student_embeddings), dim=1)
    teacher = F.normalize(wide(teacher_embeddings.detach()), dim=1)
    return (teacher - student).pow(2).sum(dim=1).mean()


class AngularLoss(nn.Module):
    """VarGFaceNet's angular distillation loss on ``"embedding"``.

    Args:
        student_dim, teacher_dim: embedding sizes.
        project: train a linear map from the student's to the teacher's size when they differ
            (refused otherwise, with an error naming the sizes and this option).
    """

    def __init__(self, student_dim: int, teacher_dim: int, project: bool = False) -> None:
        super().__init__()
        self.student_dim, self.teacher_dim = int(student_dim), int(teacher_dim)
        if self.student_dim != self.teacher_dim and not project:
            raise ConfigError(
                f"the student's embedding has {self.student_dim} dimensions and the teacher's "
                f"{self.teacher_dim}; angular distillation compares them directly. Give both "
                "networks the same embedding_size, or pass project=True to train a linear "
                "projection of the student's embedding to the teacher's size")
        self.projection = (nn.Linear(self.student_dim, self.teacher_dim, bias=False)
                           if self.student_dim != self.teacher_dim else None)

    def forward(self, student: Features, teacher: Features, labels: Tensor) -> Tensor:
        embedding = require_feature(student, "embedding", "student")
        if self.projection is not None:
            embedding = self.projection(embedding)
        return angular_distance(embedding, require_feature(teacher, "embedding", "teacher"))

    def extra_repr(self) -> str:
        return f"student_dim={self.student_dim}, teacher_dim={self.teacher_dim}"


@register_loss("angular", default_weight=ANGULAR_WEIGHT)
def _build_angular(student_backbone: nn.Module, teacher_backbone: nn.Module,
                   teacher_head: nn.Module, project: bool = False) -> AngularLoss:
    return AngularLoss(feature_shape(student_backbone, "embedding", "student")[0],
                       feature_shape(teacher_backbone, "embedding", "teacher")[0], project)
