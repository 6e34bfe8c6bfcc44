"""Softmax regression representation learning (SRRL; Yang et al., ICLR 2021; thesis ch. 4).

The student's penultimate feature ``h_S`` goes through a trained connector ``c`` to the
teacher's dimension, then

- feature matching, thesis Eq. 4.3: ``L_FM = MSE(h_T, c(h_S))``;
- softmax regression, thesis Eq. 4.5/4.7: the teacher's frozen classifier ``W_T`` is applied
  to both features and the outputs are compared, in one of the forms of thesis Table 4.4:
  ``"l2"`` ``MSE(W_T h_T, W_T c(h_S))`` (the thesis's choice), ``"ce"``
  ``CE(W_T c(h_S), y)`` with the ground-truth label, ``"kl"``
  ``T² · KL(softmax(W_T h_T / T) ‖ softmax(W_T c(h_S) / T))``;

and the loss is ``fm_weight · L_FM + sr_weight · L_SR`` (Eq. 4.8; official code α = β = 1).
MSE is the mean over elements, as in the official code.

Connector: a linear layer for vector features (``"embedding"``, ``"pooled"``: face
embeddings take negative values, so no ReLU), and 1x1 conv → BN → ReLU followed by global
average pooling for maps (the official CIFAR connector); the teacher's map is average-pooled
too.

``W_T`` for face recognition is the teacher's margin head at inference:
``s · normalize(h) @ normalize(W)ᵀ`` (same scale as in training, no margin); for a plain
:class:`~fkdlib.heads.SoftmaxHead` it is its linear map. :func:`teacher_classifier_from_head`
takes a snapshot of it into buffers, so it is frozen and can never be changed by an optimiser.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Features, feature_shape, register_loss, require_feature, wide
from .kd import KD_TEMPERATURE, kd_divergence

SRRL_WEIGHT = 1.0  # the terms carry their own weights (official code: α = β = 1)
SR_FORMS = ("l2", "ce", "kl")
VECTOR_FEATURES = ("embedding", "pooled")


class FrozenClassifier(nn.Module):
    """A linear classifier held in buffers: ``scale · (norm(h) if normalize_input) Wᵀ + b``.

    Args:
        weight: (num_classes, dim) matrix.
        bias: optional (num_classes,) bias.
        scale: multiplier of the logits (a margin head's ``s``), or ``None``.
        normalize_input: L2-normalise the features first (margin heads compare directions).
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None, scale: float | None = None,
                 normalize_input: bool = False) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.scale = None if scale is None else float(scale)
        self.normalize_input = bool(normalize_input)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def forward(self, features: Tensor) -> Tensor:
        if self.normalize_input:
            features = F.normalize(features, dim=1)
        logits = F.linear(features, self.weight.to(features.dtype),
                          None if self.bias is None else self.bias.to(features.dtype))
        return logits if self.scale is None else self.scale * logits

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, num_classes={self.weight.shape[0]}, "
                f"scale={self.scale}, normalize_input={self.normalize_input}")


def teacher_classifier_from_head(head: nn.Module) -> FrozenClassifier:
    """Snapshot the teacher's classifier ``W_T`` from a head (SRRL for face recognition).

    A margin head (``normalized_weight()`` and a numeric ``s``) gives
    ``s · normalize(h) @ normalized_weight()ᵀ``; a :class:`~fkdlib.heads.SoftmaxHead` (``s``
    is ``None``) gives its linear layer ``W h + b``.
    """
    scale = getattr(head, "s", None)
    if scale is not None and hasattr(head, "normalized_weight"):
        return FrozenClassifier(head.normalized_weight(), scale=scale, normalize_input=True)
    linear = getattr(head, "linear", head)
    if isinstance(linear, nn.Linear):
        return FrozenClassifier(linear.weight, linear.bias)
    raise ConfigError(f"cannot take a classifier from {type(head).__name__}: expected a margin "
                      "head (with normalized_weight() and s) or a SoftmaxHead / nn.Linear")


def l2_distance(h_t: Tensor, h_s: Tensor, normalize: bool = False) -> float:
    """Mean over samples of ``‖h_T − h_S‖²`` (thesis Table 4.5's teacher–student distance).

    ``h_S`` must already be in the teacher's space (through the connector). With
    ``normalize=True`` both are L2-normalised first, which compares directions only (the
    quantity a cosine face verifier uses).
    """
    if h_t.shape != h_s.shape:
        raise ConfigError(f"l2_distance needs features of the same shape, got {tuple(h_t.shape)} "
                          f"(teacher) and {tuple(h_s.shape)} (student)")
    h_t, h_s = h_t.detach().double().flatten(1), h_s.detach().double().flatten(1)
    if normalize:
        h_t, h_s = F.normalize(h_t, dim=1), F.normalize(h_s, dim=1)
    return float((h_t - h_s).pow(2).sum(dim=1).mean())


class SRRLLoss(nn.Module):
    """``fm_weight · L_FM + sr_weight · L_SR`` on one feature; terms kept in ``last_terms``.

    Args:
        student_dim, teacher_dim: size of the feature (channels for a map).
        teacher_classifier: ``W_T``, e.g. from :func:`teacher_classifier_from_head`; any
            module's parameters are frozen here (``requires_grad=False``).
        fm_weight, sr_weight: weights of the two terms (0 skips a term; the notebook runs
            L_FM only, L_SR only and both).
        sr_form: ``"l2"`` (default), ``"ce"`` or ``"kl"`` (thesis Table 4.4).
        feature: ``"embedding"`` (default), ``"pooled"`` or a stage map such as ``"layer4"``.
        temperature: ``T`` of the ``"kl"`` form.

    After each forward, ``last_terms`` holds the unweighted ``"fm"`` and ``"sr"`` values that
    were computed, as detached scalar tensors (no device synchronisation during training).
    """

    def __init__(self, student_dim: int, teacher_dim: int, teacher_classifier: nn.Module,
                 fm_weight: float = 1.0, sr_weight: float = 1.0, sr_form: str = "l2",
                 feature: str = "embedding", temperature: float = KD_TEMPERATURE) -> None:
        super().__init__()
        if sr_form not in SR_FORMS:
            raise ConfigError(f"sr_form must be one of {SR_FORMS}, got {sr_form!r}")
        if fm_weight < 0 or sr_weight < 0 or fm_weight + sr_weight == 0:
            raise ConfigError(f"fm_weight and sr_weight must be >= 0 and not both 0, got "
                              f"{fm_weight!r} and {sr_weight!r}")
        in_features = getattr(teacher_classifier, "in_features", teacher_dim)
        if sr_weight and in_features != teacher_dim:
            raise ConfigError(
                f"L_SR applies the teacher's classifier (input size {in_features}) to the "
                f"feature {feature!r} of size {teacher_dim}; use the feature that enters the "
                "classifier ('embedding' for the face backbones), or sr_weight=0 for L_FM only")
        self.fm_weight, self.sr_weight = float(fm_weight), float(sr_weight)
        self.sr_form, self.feature, self.temperature = sr_form, feature, float(temperature)
        self.is_map = feature not in VECTOR_FEATURES
        if self.is_map:
            self.connector = nn.Sequential(
                nn.Conv2d(int(student_dim), int(teacher_dim), 1, bias=False),
                nn.BatchNorm2d(int(teacher_dim)),
                nn.ReLU(),
            )
        else:
            self.connector = nn.Linear(int(student_dim), int(teacher_dim))
        teacher_classifier.requires_grad_(False)
        self.teacher_classifier = teacher_classifier
        self.last_terms: dict[str, Tensor] = {}

    def features(self, student: Features, teacher: Features) -> tuple[Tensor, Tensor]:
        """``(h_T, c(h_S))``: the pooled teacher feature and the connected student feature."""
        h_s = require_feature(student, self.feature, "student")
        h_t = require_feature(teacher, self.feature, "teacher").detach()
        expected = 4 if self.is_map else 2
        if h_s.dim() != expected or h_t.dim() != expected:
            raise ConfigError(f"SRRL feature {self.feature!r} should be "
                              f"{'a map (B, C, H, W)' if self.is_map else 'a vector (B, D)'}, "
                              f"got {tuple(h_s.shape)} and {tuple(h_t.shape)}")
        connected = self.connector(h_s)
        if self.is_map:
            connected = connected.mean(dim=(2, 3))
            h_t = h_t.mean(dim=(2, 3))
        return wide(h_t), wide(connected)

    def sr_loss(self, h_t: Tensor, connected: Tensor, labels: Tensor) -> Tensor:
        """L_SR in the chosen form, through the frozen teacher classifier."""
        student_logits = self.teacher_classifier(connected)
        if self.sr_form == "ce":
            return F.cross_entropy(student_logits, labels)
        with torch.no_grad():
            teacher_logits = self.teacher_classifier(h_t)
        if self.sr_form == "l2":
            return F.mse_loss(student_logits, teacher_logits)
        return kd_divergence(student_logits, teacher_logits, self.temperature)

    def forward(self, student: Features, teacher: Features, labels: Tensor) -> Tensor:
        h_t, connected = self.features(student, teacher)
        total = connected.new_zeros(())
        self.last_terms = {}
        if self.fm_weight:
            fm = F.mse_loss(connected, h_t)
            self.last_terms["fm"] = fm.detach()
            total = total + self.fm_weight * fm
        if self.sr_weight:
            sr = self.sr_loss(h_t, connected, labels)
            self.last_terms["sr"] = sr.detach()
            total = total + self.sr_weight * sr
        return total

    def extra_repr(self) -> str:
        return (f"feature={self.feature!r}, fm_weight={self.fm_weight}, "
                f"sr_weight={self.sr_weight}, sr_form={self.sr_form!r}")


@register_loss("srrl", default_weight=SRRL_WEIGHT)
def _build_srrl(student_backbone: nn.Module, teacher_backbone: nn.Module,
                teacher_head: nn.Module, fm_weight: float = 1.0, sr_weight: float = 1.0,
                sr_form: str = "l2", feature: str = "embedding",
                temperature: float = KD_TEMPERATURE) -> SRRLLoss:
    return SRRLLoss(feature_shape(student_backbone, feature, "student")[0],
                    feature_shape(teacher_backbone, feature, "teacher")[0],
                    teacher_classifier_from_head(teacher_head), fm_weight, sr_weight, sr_form,
                    feature, temperature)
