"""Classification heads: plain Softmax and the angular-margin family of ArcFace."""

from .margin import (
    HEADS,
    ArcFace,
    CombinedMargin,
    CosFace,
    HeadStats,
    MarginHead,
    NormSoftmax,
    SoftmaxHead,
    SphereFace,
    create_head,
    safe_angle,
    sphereface_psi,
    target_logit_curve,
)

__all__ = [
    "HEADS", "ArcFace", "CombinedMargin", "CosFace", "HeadStats", "MarginHead", "NormSoftmax",
    "SoftmaxHead", "SphereFace", "create_head", "safe_angle", "sphereface_psi",
    "target_logit_curve",
]
