"""The face-training recipe every notebook applies, and the teacher shared by the distillation
notebooks.

:func:`training_spec` turns a benchmark (its profile, seed and training data) and a backbone /
head choice into a :class:`~fkdlib.zoo.cache.ModelSpec` with the profile's recipe, so that every
method in a comparison is trained alike. :func:`teacher_spec` is the IResNet-50 teacher of
notebooks 02-04, trained once and cached in the zoo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .cache import ModelSpec

if TYPE_CHECKING:
    from ..evaluation.benchmark import FaceBenchmark


def training_spec(bench: FaceBenchmark, backbone: str, head: str, *, name: str = "",
                  backbone_kwargs: Mapping[str, Any] | None = None,
                  head_kwargs: Mapping[str, Any] | None = None,
                  train_overrides: Mapping[str, Any] | None = None,
                  **spec_fields: Any) -> ModelSpec:
    """A :class:`ModelSpec` trained on the benchmark's training data with the profile's recipe
    (SGD, momentum 0.9, weight decay and learning rate from the profile, linear warm-up for the
    profile's ``warmup_epochs``, step decay at 50% and 75% of training, gradient clipping at 5:
    the ArcFace recipe scaled to the profile)."""
    profile = bench.profile
    kwargs = {"input_size": profile.resolution, "width": profile.backbone_width,
              "embedding_size": profile.embedding_size}
    kwargs.update(backbone_kwargs or {})
    train = {"epochs": profile.epochs, "batch_size": profile.batch_size, "lr": profile.lr,
             "weight_decay": profile.weight_decay, "seed": bench.seed,
             "milestones": [0.5, 0.75], "warmup_epochs": profile.warmup_epochs}
    train.update(train_overrides or {})
    return ModelSpec(backbone=backbone, head=head, data=dict(bench.train_data), train=train,
                     backbone_kwargs=kwargs, head_kwargs=dict(head_kwargs or {}),
                     profile=profile.name, name=name, **spec_fields)


# The teacher shared by the distillation notebooks (02 VarGFaceNet, 03 SRRL, 04 ICD-Face): a
# deeper IResNet (50 layers vs the students' 18 or mobile nets), cached once in the model zoo.
# It is trained with CosFace (s=64, m=0.35), not ArcFace: at the default profile's scale,
# ArcFace (s=64, m=0.5) trained from scratch collapsed in some runs (θ_y rising to ~155° and
# LFW-like accuracy falling to 68%), while CosFace converged in every run we made.
# A teacher has more capacity than its students (the papers distil a full-width ResNet-50/100
# into mobile nets), so it is twice the students' width, never beyond the published full width:
# at the default profile's width 0.125 the same IResNet-50 fitted 79% of its training images in
# 24 epochs and failed the health gate, at width 0.25 91% (effective dimension 11.6).
TEACHER_BACKBONE = "iresnet50"
TEACHER_WIDTH_FACTOR = 2.0
TEACHER_HEAD = ("cosface", {"s": 64.0, "m": 0.35})


def teacher_spec(bench: FaceBenchmark) -> ModelSpec:
    """The IResNet-50 CosFace teacher at the profile's scale, at :data:`TEACHER_WIDTH_FACTOR`
    times the profile's backbone width (at most the full width 1.0)."""
    head, head_kwargs = TEACHER_HEAD
    width = min(1.0, TEACHER_WIDTH_FACTOR * bench.profile.backbone_width)
    return training_spec(bench, TEACHER_BACKBONE, head, head_kwargs=head_kwargs,
                         backbone_kwargs={"width": width}, name="teacher/iresnet50-cosface")
