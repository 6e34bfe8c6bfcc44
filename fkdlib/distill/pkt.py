"""Probabilistic knowledge transfer (Passalis & Tefas, "Learning Deep Representations with
Probabilistic Knowledge Transfer", ECCV 2018), on the embeddings.

Each network's features are L2-normalised; the cosine-similarity kernel
``K_ij = (cos(x_i, x_j) + 1) / 2`` (shifted to [0, 1]) is turned into conditional
distributions by normalising each row, ``p_{j|i} = K_ij / Σ_j K_ij``, and the loss is
``mean_ij p^t_{j|i} · log((p^t_{j|i} + ε) / (p^s_{j|i} + ε))``, i.e. KL(teacher ‖ student)
averaged over all B² entries, with ``ε = 1e-7`` (paper Eq. 9-10 with the cosine kernel;
RepDistiller's implementation and defaults). Weight ``β = 30000`` (:data:`PKT_WEIGHT`).
Teacher and student dimensions may differ.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Features, register_loss, require_feature, wide

PKT_WEIGHT = 30000.0
PKT_EPS = 1e-7


def _conditional_probabilities(x: Tensor, eps: float) -> Tensor:
    # ε in the norm (not F.normalize's clamp) follows the paper's code: a zero vector maps to 0
    unit = x / (x.norm(dim=1, keepdim=True) + eps)
    kernel = (unit @ unit.t() + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)


def pkt_divergence(student: Tensor, teacher: Tensor, eps: float = PKT_EPS) -> Tensor:
    """KL(teacher ‖ student) between the cosine-kernel conditional distributions, mean over
    the B² entries; the teacher is detached."""
    with torch.no_grad():
        target = _conditional_probabilities(wide(teacher), eps)
    model = _conditional_probabilities(wide(student), eps)
    return (target * torch.log((target + eps) / (model + eps))).mean()


class PKTLoss(nn.Module):
    """PKT on a vector feature (default ``"embedding"``)."""

    def __init__(self, feature: str = "embedding", eps: float = PKT_EPS) -> None:
        super().__init__()
        self.feature, self.eps = feature, float(eps)

    @property
    def needs_logits(self) -> bool:
        """Whether the Distiller must compute ``"logits"`` (when they are the related feature)."""
        return self.feature == "logits"

    def forward(self, student: Features, teacher: Features, labels: Tensor) -> Tensor:
        student_x = require_feature(student, self.feature, "student")
        teacher_x = require_feature(teacher, self.feature, "teacher")
        if student_x.dim() != 2 or teacher_x.dim() != 2:
            raise ConfigError(f"PKT compares flat vectors; {self.feature!r} has shapes "
                              f"{tuple(student_x.shape)} and {tuple(teacher_x.shape)}")
        return pkt_divergence(student_x, teacher_x, self.eps)

    def extra_repr(self) -> str:
        return f"feature={self.feature!r}, eps={self.eps}"


@register_loss("pkt", default_weight=PKT_WEIGHT)
def _build_pkt(student_backbone: nn.Module, teacher_backbone: nn.Module, teacher_head: nn.Module,
               feature: str = "embedding") -> PKTLoss:
    return PKTLoss(feature)
