"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017), activation-based, ``p = 2``.

For a map ``A`` of shape (C, H, W) the spatial attention is
``Q(A) = vec(mean_c |A_c|^p) / ‖vec(mean_c |A_c|^p)‖₂`` (the paper's Eq. 2 with the mean
instead of the sum over channels, which the normalisation makes identical), and for each pair of
stages ``L_j = mean((Q_s − Q_t)²)`` over batch and positions. The loss is the **sum** over the
stage pairs, with weight ``β = 1000`` (:data:`AT_WEIGHT`): both RepDistiller and mdistiller sum
over pairs, and the 1000 was tuned for that sum. Defaults compare ``layer1`` .. ``layer4``
(the SRRL thesis applies AT after every layer group of WRN).

Where the two maps of a pair differ in spatial size, the larger map is adaptive-average-pooled
to the smaller before the attention is computed, as in RepDistiller and mdistiller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Features, feature_shapes, register_loss, require_feature, wide
from .fitnet import match_spatial

AT_WEIGHT = 1000.0
AT_STAGES = ("layer1", "layer2", "layer3", "layer4")


def attention_map(feature_map: Tensor, p: float = 2.0) -> Tensor:
    """``Q(A)``: channel mean of ``|A|^p``, flattened and L2-normalised, shape (batch, H·W)."""
    return F.normalize(wide(feature_map).abs().pow(p).mean(dim=1).flatten(1), dim=1)


def _pairs(stages: Sequence[str | Sequence[str]]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for stage in stages:
        if isinstance(stage, str):
            pairs.append((stage, stage))
        elif len(stage) == 2 and all(isinstance(s, str) for s in stage):
            pairs.append((stage[0], stage[1]))
        else:
            raise ConfigError(f"each AT stage must be a name or a (student, teacher) pair of "
                              f"names, got {stage!r}")
    if not pairs:
        raise ConfigError("attention transfer needs at least one stage")
    return tuple(pairs)


class ATLoss(nn.Module):
    """Attention transfer summed over stage pairs.

    Args:
        stages: stage names shared by both networks, or (student, teacher) name pairs.
        p: exponent of the attention map (2 in the paper and RepDistiller).
    """

    def __init__(self, stages: Sequence[str | Sequence[str]] = AT_STAGES, p: float = 2.0) -> None:
        super().__init__()
        self.pairs = _pairs(stages)
        if not p > 0:
            raise ConfigError(f"the attention exponent p must be > 0, got {p!r}")
        self.p = float(p)

    def forward(self, student: Features, teacher: Features, labels: Tensor) -> Tensor:
        total = None
        for student_stage, teacher_stage in self.pairs:
            student_map, teacher_map = match_spatial(
                require_feature(student, student_stage, "student"),
                require_feature(teacher, teacher_stage, "teacher").detach())
            term = (attention_map(student_map, self.p)
                    - attention_map(teacher_map, self.p)).pow(2).mean()
            total = term if total is None else total + term
        return total

    def extra_repr(self) -> str:
        return f"pairs={list(self.pairs)}, p={self.p}"


@register_loss("at", default_weight=AT_WEIGHT)
def _build_at(student_backbone: nn.Module, teacher_backbone: nn.Module, teacher_head: nn.Module,
              stages: Sequence[str | Sequence[str]] = AT_STAGES, p: float = 2.0) -> ATLoss:
    loss = ATLoss(stages, p)
    shapes = {"student": feature_shapes(student_backbone),
              "teacher": feature_shapes(teacher_backbone)}
    for pair in loss.pairs:
        for role, stage in zip(("student", "teacher"), pair):
            if len(shapes[role].get(stage, ())) != 3:
                raise ConfigError(f"attention transfer needs feature maps; the {role} has no "
                                  f"(C, H, W) map named {stage!r}; maps: "
                                  f"{', '.join(k for k, v in shapes[role].items() if len(v) == 3)}")
    return loss
