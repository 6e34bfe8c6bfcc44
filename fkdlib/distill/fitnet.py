"""FitNet hints (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015; thesis Eq. 4.2).

``L_hint = mean ‖ F_t − r(F_s) ‖²`` between a teacher map (the hint) and a student map (the
guided layer) passed through a trained regressor ``r``. RepDistiller's default weight is
``β = 100`` (:data:`FITNET_WEIGHT`).

Our choices, checked against RepDistiller's ``ConvReg``: that regressor ends with a ReLU
because its CIFAR networks' features are post-activation; the stage outputs of our face
backbones (IResNet, MobileFaceNet) are pre-activation and take negative values, which a ReLU
could never reproduce. So ``r`` is a 1x1 convolution (no bias) followed by BatchNorm, FitNet's
convolutional regressor without the final non-linearity. Where the two maps differ in spatial
size, the larger is adaptive-average-pooled to the smaller (as RepDistiller and mdistiller do
for attention transfer) instead of a strided or transposed convolution, which works for any
pair of sizes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Features, feature_shape, register_loss, require_feature, wide

FITNET_WEIGHT = 100.0


def match_spatial(student_map: Tensor, teacher_map: Tensor) -> tuple[Tensor, Tensor]:
    """Adaptive-average-pool whichever map is larger to the other's height and width."""
    size = (min(student_map.shape[-2], teacher_map.shape[-2]),
            min(student_map.shape[-1], teacher_map.shape[-1]))
    if tuple(student_map.shape[-2:]) != size:
        student_map = F.adaptive_avg_pool2d(student_map, size)
    if tuple(teacher_map.shape[-2:]) != size:
        teacher_map = F.adaptive_avg_pool2d(teacher_map, size)
    return student_map, teacher_map


class FitNetLoss(nn.Module):
    """Hint loss from ``student[student_stage]`` to ``teacher[teacher_stage]``.

    Args:
        student_channels, teacher_channels: channels of the two maps.
        student_stage, teacher_stage: feature names (default ``layer3`` on both sides).
    """

    def __init__(self, student_channels: int, teacher_channels: int,
                 student_stage: str = "layer3", teacher_stage: str = "layer3") -> None:
        super().__init__()
        self.student_stage, self.teacher_stage = student_stage, teacher_stage
        self.regressor = nn.Sequential(
            nn.Conv2d(int(student_channels), int(teacher_channels), 1, bias=False),
            nn.BatchNorm2d(int(teacher_channels)),
        )

    def forward(self, student: Features, teacher: Features, labels: Tensor) -> Tensor:
        student_map = require_feature(student, self.student_stage, "student")
        teacher_map = require_feature(teacher, self.teacher_stage, "teacher").detach()
        if student_map.dim() != 4 or teacher_map.dim() != 4:
            raise ConfigError(f"FitNet needs feature maps (batch, C, H, W); {self.student_stage!r} "
                              f"is {tuple(student_map.shape)} and {self.teacher_stage!r} is "
                              f"{tuple(teacher_map.shape)}")
        student_map, teacher_map = match_spatial(student_map, teacher_map)
        return F.mse_loss(wide(self.regressor(student_map)), wide(teacher_map))

    def extra_repr(self) -> str:
        return f"student_stage={self.student_stage!r}, teacher_stage={self.teacher_stage!r}"


@register_loss("fitnet", default_weight=FITNET_WEIGHT)
def _build_fitnet(student_backbone: nn.Module, teacher_backbone: nn.Module,
                  teacher_head: nn.Module, student_stage: str = "layer3",
                  teacher_stage: str = "layer3") -> FitNetLoss:
    student_shape = feature_shape(student_backbone, student_stage, "student")
    teacher_shape = feature_shape(teacher_backbone, teacher_stage, "teacher")
    if len(student_shape) != 3 or len(teacher_shape) != 3:
        raise ConfigError(f"FitNet needs feature maps; {student_stage!r} has shape "
                          f"{student_shape} and {teacher_stage!r} {teacher_shape}; choose stages "
                          "such as 'layer2' or 'layer3'")
    return FitNetLoss(student_shape[0], teacher_shape[0], student_stage, teacher_stage)
