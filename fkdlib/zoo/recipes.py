"""The face-training recipe every notebook applies, and the teacher shared by the distillation
notebooks.

:func:`training_spec` turns a benchmark (its profile, seed and training data) and a backbone /
head choice into a :class:`~fkdlib.zoo.cache.ModelSpec` with the profile's recipe, so that every
method in a comparison is trained alike. :func:`margin_spec` is that recipe for a margin head:
Softmax pre-training (:func:`pretrain_spec`), then the margin fine-tuned from it.
:func:`teacher_spec` is the IResNet-50 teacher of notebooks 02-04, trained once and cached in
the zoo.
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


# Softmax pre-training, then the margin: margin heads trained from scratch at s = 64 stall at
# this scale (measured at the default profile: ArcFace, SphereFace and CM on IResNet-18 fit
# 56-74% of their training images, two class weights end at cosine 1.000 and the test
# embeddings keep 2.6-3.2 effective dimensions; the CosFace IResNet-50 teacher trained from
# scratch fitted 71-75%). The established remedy is to start the margin from a softmax-trained
# network (SphereFace anneals from softmax; insightface's early recipes pre-trained with softmax
# for large margins) and to fine-tune at a tenth of the base learning rate, as fine-tuning does.
# The pre-training is the profile's full Softmax schedule; the margin then trains half as many
# epochs again from it. Measured at the default profile (three seeds, IResNet-18): restarting
# the second half at the base rate undid the pre-training (ArcFace top-1 72-76%, class weights
# at cosine 0.999), and splitting the profile's epochs in halves at a tenth of the rate left
# every loss, Softmax included, under-fitted (top-1 86-90%).
FINE_TUNE_FRACTION = 0.5
FINE_TUNE_LR_FACTOR = 0.1


def fine_tune_schedule(epochs: int) -> tuple[int, int]:
    """``(pre-training epochs, the margin's own epochs)`` for a profile of ``epochs``: the full
    schedule, then :data:`FINE_TUNE_FRACTION` of it (at least one epoch)."""
    return epochs, max(1, round(epochs * FINE_TUNE_FRACTION))


def pretrain_spec(bench: FaceBenchmark, backbone: str, *, name: str = "",
                  backbone_kwargs: Mapping[str, Any] | None = None) -> ModelSpec:
    """The Softmax pre-training a margin head starts from (:func:`margin_spec`): the
    profile's full schedule with a plain softmax classifier. Specs that differ only in their
    names share one zoo entry, so every notebook training the same backbone at the same
    profile and seed shares this model."""
    pretrain, _ = fine_tune_schedule(bench.profile.epochs)
    return training_spec(bench, backbone, "softmax", name=name,
                         backbone_kwargs=backbone_kwargs,
                         train_overrides={"epochs": pretrain})


def margin_spec(bench: FaceBenchmark, backbone: str, head: str, *, name: str = "",
                pretrain_name: str = "",
                backbone_kwargs: Mapping[str, Any] | None = None,
                head_kwargs: Mapping[str, Any] | None = None,
                train_overrides: Mapping[str, Any] | None = None,
                **spec_fields: Any) -> ModelSpec:
    """A head (margin or not) trained with the margin recipe: initialised from
    :func:`pretrain_spec` of the same backbone (a margin head starts from the learnt class
    centres), then :data:`FINE_TUNE_FRACTION` of the profile's epochs at
    :data:`FINE_TUNE_LR_FACTOR` times its learning rate, with the profile's warm-up and step
    decay. ``train_overrides`` change the fine-tuning (e.g. fewer epochs); ``spec_fields``
    (``method``, ``method_kwargs``, ``monitors``) apply to the fine-tuning only: the
    pre-training is plain Softmax, shared by every method of a comparison.

    This is the ArcFace paper's margin (Deng et al., CVPR 2019, Eq. 3) reached the way
    SphereFace (Liu et al., CVPR 2017, §4.2: softmax annealed into the margin) and
    insightface's early recipes reached large margins on small data.
    """
    parent = pretrain_spec(bench, backbone, name=pretrain_name, backbone_kwargs=backbone_kwargs)
    _, own = fine_tune_schedule(bench.profile.epochs)
    # rounded so that 0.1 x 0.1 is stored (and shown) as 0.01, not 0.010000000000000002
    train = {"epochs": own, "lr": float(f"{FINE_TUNE_LR_FACTOR * bench.profile.lr:.12g}")}
    train.update(train_overrides or {})
    return training_spec(bench, backbone, head, name=name, backbone_kwargs=backbone_kwargs,
                         head_kwargs=head_kwargs, train_overrides=train, init_from=parent,
                         **spec_fields)


# The teacher shared by the distillation notebooks (02 VarGFaceNet, 03 SRRL, 04 ICD-Face): a
# deeper IResNet (50 layers vs the students' 18 or mobile nets), cached once in the model zoo,
# trained with CosFace (s=64, m=0.35) by the margin recipe above. A teacher has more capacity
# than its students (the papers distil a full-width ResNet-50/100 into smaller nets), so it is
# twice the students' width, never beyond the published full width. Measured at the default
# profile on SynthFace v3 (seed 0): CosFace from scratch fitted 71-75% of the training images
# (three seeds); Softmax pre-training fitted 97.6% and the CosFace fine-tuning from it 99.2%
# (effective dimension 24).
TEACHER_BACKBONE = "iresnet50"
TEACHER_WIDTH_FACTOR = 2.0
TEACHER_HEAD = ("cosface", {"s": 64.0, "m": 0.35})


def teacher_spec(bench: FaceBenchmark) -> ModelSpec:
    """The IResNet-50 CosFace teacher at the profile's scale, at :data:`TEACHER_WIDTH_FACTOR`
    times the profile's backbone width (at most the full width 1.0), trained by
    :func:`margin_spec`."""
    head, head_kwargs = TEACHER_HEAD
    width = min(1.0, TEACHER_WIDTH_FACTOR * bench.profile.backbone_width)
    return margin_spec(bench, TEACHER_BACKBONE, head, head_kwargs=head_kwargs,
                       backbone_kwargs={"width": width}, name="teacher/iresnet50-cosface",
                       pretrain_name="teacher/iresnet50 softmax pre-training")
