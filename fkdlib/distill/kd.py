"""Hinton's knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a
Neural Network", 2015): match the teacher's softened class distribution.

``L_KD = T² · KL(softmax(z_t / T) ‖ softmax(z_s / T))``, averaged over the batch (thesis
Eq. 4.1; the ``T²`` keeps gradient magnitudes comparable across temperatures). Defaults follow
RepDistiller (Tian et al., CRD, ICLR 2020) as used by the SRRL thesis ch. 4: ``T = 4``,
total loss ``0.1 · CE + 0.9 · KD``.

For margin heads the logits are ``s · cos θ`` (no margin), the scores used at inference.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Features, register_loss, require_feature, wide

KD_TEMPERATURE = 4.0
KD_WEIGHT = 0.9
KD_CE_WEIGHT = 0.1


def soft_target_kl(student_logits: Tensor, target_probs: Tensor, temperature: float) -> Tensor:
    """``T² · KL(target ‖ softmax(student_logits / T))`` averaged over the batch.

    ``target_probs`` is a distribution per row (e.g. the teacher's softened output, or the
    mixup of two such outputs in SRRL Eq. 4.11-4.12). Half-precision inputs (autocast)
    are widened to float32.
    """
    log_student = F.log_softmax(wide(student_logits) / temperature, dim=1)
    return F.kl_div(log_student, wide(target_probs), reduction="batchmean") * temperature ** 2


def kd_divergence(student_logits: Tensor, teacher_logits: Tensor,
                  temperature: float = KD_TEMPERATURE) -> Tensor:
    """Hinton KD: ``T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))``, batch mean; the teacher is
    detached."""
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(f"KD needs student and teacher logits of the same shape (the same "
                          f"classes), got {tuple(student_logits.shape)} and "
                          f"{tuple(teacher_logits.shape)}")
    target = F.softmax(wide(teacher_logits.detach()) / temperature, dim=1)
    return soft_target_kl(student_logits, target, temperature)


class KDLoss(nn.Module):
    """Hinton KD on the heads' logits (``student["logits"]``, ``teacher["logits"]``).

    Args:
        temperature: softening temperature ``T`` (RepDistiller default 4).
    """

    needs_logits = True  # tells the Distiller to compute both heads' logits

    def __init__(self, temperature: float = KD_TEMPERATURE) -> None:
        super().__init__()
        if not temperature > 0:
            raise ConfigError(f"the KD temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, student: Features, teacher: Features, labels: Tensor) -> Tensor:
        return kd_divergence(require_feature(student, "logits", "student"),
                             require_feature(teacher, "logits", "teacher"), self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


@register_loss("kd", default_weight=KD_WEIGHT)
def _build_kd(student_backbone: nn.Module, teacher_backbone: nn.Module, teacher_head: nn.Module,
              temperature: float = KD_TEMPERATURE) -> KDLoss:
    return KDLoss(temperature)
