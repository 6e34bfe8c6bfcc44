"""The distiller task (teacher frozen and in eval) and the registry of distillation losses.

A :class:`Distiller` is a *task* for :class:`~fkdlib.training.trainer.Trainer`: its
``forward(images, labels)`` returns the dict of already weighted loss terms the trainer sums,
in the style of mdistiller (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022):

``{"ce": ce_weight * CE(student_head(emb_s, labels), labels), name: weight * loss(...), ...}``.

Every distillation loss is an ``nn.Module`` with
``forward(student: dict, teacher: dict, labels: Tensor) -> Tensor`` (a scalar), where the dicts
are the backbones' ``forward_features`` outputs (``stem``, ``layer1`` .. ``layer4``,
``pooled``, ``embedding``). A loss that also reads ``"logits"``, the head's output without
margin (``s · cos θ`` for margin heads, ``W x + b`` for the softmax head), as Hinton's KD does,
declares it with the attribute ``needs_logits = True``; the distiller adds ``"logits"`` to both
dicts only when a loss with a nonzero weight declares it, since the full-class logits of both
networks cost as much as the student's cross-entropy head and most losses never read them.

Losses are built by name with :func:`create_loss` so that a distilled model can be described
by plain data (a :class:`~fkdlib.zoo.ModelSpec`); a module registers its factory with
:func:`register_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import Registry

LossFactory = Callable[..., nn.Module]
# factory(student_backbone, teacher_backbone, teacher_head, **options) with its published
# default weight as metadata ("default_weight")
LOSSES: Registry = Registry("distillation loss", skip=3)

Features = dict[str, Tensor]


def register_loss(name: str, default_weight: float) -> Callable[[LossFactory], LossFactory]:
    """Register ``factory(student_backbone, teacher_backbone, teacher_head, **kwargs)`` with
    the loss's published default weight.

    The factory receives both backbones and the teacher's head so that a loss can size its
    connectors (:func:`feature_shapes`) or take the teacher's classifier (SRRL).
    """
    return LOSSES.register(name, default_weight=check_weight(name, default_weight))


def list_losses() -> list[str]:
    """Names of the registered distillation losses, sorted."""
    return LOSSES.names()


def default_weights() -> dict[str, float]:
    """Each registered loss's published default weight, from the registry."""
    return LOSSES.table("default_weight")


def create_loss(name: str, student_backbone: nn.Module, teacher_backbone: nn.Module,
                teacher_head: nn.Module, **kwargs) -> nn.Module:
    """Build the registered loss ``name`` for this student/teacher pair.

    Raises:
        ConfigError: the name is unknown (the message lists the known ones) or an option is
            not one the loss takes (the message lists the ones it takes).
    """
    return LOSSES.create(name, student_backbone, teacher_backbone, teacher_head, **kwargs)


def feature_shapes(backbone: nn.Module) -> dict[str, tuple[int, ...]]:
    """Shapes (without the batch dimension) of every ``forward_features`` output.

    Found by one forward pass of a zero image in eval mode, so BatchNorm statistics are not
    touched; the backbone's training flag is restored afterwards. Connectors of FitNet and
    SRRL are sized from these shapes, whatever the backbone.
    """
    for attribute in ("input_size", "in_channels", "forward_features"):
        if not hasattr(backbone, attribute):
            raise ConfigError(f"{type(backbone).__name__} has no {attribute!r}; distillation "
                              "needs an fkdlib backbone (see fkdlib.models.FaceBackbone)")
    parameter = next(backbone.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    probe = torch.zeros(1, backbone.in_channels, backbone.input_size, backbone.input_size,
                        device=device)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            outputs = backbone.forward_features(probe)
    finally:
        backbone.train(was_training)
    return {name: tuple(value.shape[1:]) for name, value in outputs.items()}


def feature_shape(backbone: nn.Module, feature: str, role: str) -> tuple[int, ...]:
    """Shape of one named feature, with an error that lists the available names."""
    shapes = feature_shapes(backbone)
    if feature not in shapes:
        raise ConfigError(f"the {role} backbone {type(backbone).__name__} has no feature "
                          f"{feature!r}; available: {', '.join(shapes)}")
    return shapes[feature]


def check_weight(name: str, weight: float) -> float:
    """A loss weight must be a finite number >= 0 (0 switches the term off)."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
            math.isfinite(weight) and weight >= 0):
        raise ConfigError(f"the weight of {name!r} must be a finite number >= 0, got {weight!r}")
    return float(weight)


def wide(x: Tensor) -> Tensor:
    """``x`` in float32 if it is half precision (e.g. under autocast), else unchanged: losses
    with logarithms, softmaxes or squared distances are computed at least in float32."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def require_feature(outputs: Features, name: str, role: str) -> Tensor:
    """``outputs[name]`` with an error naming the missing key and the keys present."""
    if name not in outputs:
        raise ConfigError(f"the {role} outputs have no {name!r}; present: "
                          f"{', '.join(outputs)}")
    return outputs[name]


class Distiller(nn.Module):
    """Teacher–student training task: cross-entropy on the student plus weighted KD losses.

    Args:
        student_backbone, student_head: the network being trained (any fkdlib backbone and
            head; the head is called with labels for the cross-entropy, i.e. with its margin).
        teacher_backbone, teacher_head: the pre-trained teacher. Its parameters are frozen
            (``requires_grad=False``), it runs under ``torch.no_grad()`` and stays in eval mode
            even when ``train()`` is called on the distiller, so its BatchNorm statistics never
            change.
        losses: ``{name: (loss_module, weight)}``; the modules may own trainable parameters
            (connectors, projections), which are optimised with the student. A weight of 0
            skips computing the term. Both networks' ``"logits"`` are computed only when a
            module with a nonzero weight has a true ``needs_logits`` attribute.
        ce_weight: weight of the student's classification loss (0 skips it).
    """

    def __init__(self, student_backbone: nn.Module, student_head: nn.Module,
                 teacher_backbone: nn.Module, teacher_head: nn.Module,
                 losses: Mapping[str, tuple[nn.Module, float]], ce_weight: float = 1.0) -> None:
        super().__init__()
        self.student_backbone = student_backbone
        self.student_head = student_head
        self.teacher_backbone = teacher_backbone
        self.teacher_head = teacher_head
        self.ce_weight = check_weight("ce", ce_weight)
        self.losses = nn.ModuleDict()
        self.loss_weights: dict[str, float] = {}
        for name, entry in losses.items():
            if name == "ce" or not name.isidentifier():
                raise ConfigError(f"loss name {name!r} must be a Python identifier other than "
                                  "'ce' (it names a term of the training history)")
            if not (isinstance(entry, tuple) and len(entry) == 2
                    and isinstance(entry[0], nn.Module)):
                raise ConfigError(f"losses[{name!r}] must be a (loss_module, weight) tuple, got "
                                  f"{entry!r}")
            self.losses[name] = entry[0]
            self.loss_weights[name] = check_weight(name, entry[1])
        for module in (self.teacher_backbone, self.teacher_head):
            module.requires_grad_(False)
        self.train(True)

    def train(self, mode: bool = True) -> Distiller:
        """Set the student and the losses to ``mode``; the teacher always stays in eval."""
        super().train(mode)
        self.teacher_backbone.eval()
        self.teacher_head.eval()
        return self

    def student_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the student's backbone and head (not the loss modules')."""
        yield from self.student_backbone.parameters()
        yield from self.student_head.parameters()

    @property
    def needs_logits(self) -> bool:
        """Whether a loss with a nonzero weight reads ``"logits"`` (declares ``needs_logits``).

        Evaluated at every forward, so a weight changed in ``loss_weights`` takes effect.
        """
        return any(self.loss_weights[name] and getattr(loss, "needs_logits", False)
                   for name, loss in self.losses.items())

    def student_outputs(self, images: Tensor, logits: bool = True) -> Features:
        """The student's ``forward_features``, plus ``"logits"`` (head output without margin)
        if ``logits``."""
        outputs = dict(self.student_backbone.forward_features(images))
        if logits:
            # loss_terms runs the head again, with labels, for the CE term. Sharing one cosine
            # matrix would sum both terms' gradients before the head's backward instead of
            # after it, changing the rounding of the trained weights.
            outputs["logits"] = self.student_head(outputs["embedding"])
        return outputs

    def teacher_outputs(self, images: Tensor, logits: bool = True) -> Features:
        """The teacher's ``forward_features``, plus ``"logits"`` if ``logits``, computed without
        gradients."""
        with torch.no_grad():
            outputs = dict(self.teacher_backbone.forward_features(images))
            if logits:
                outputs["logits"] = self.teacher_head(outputs["embedding"])
        return outputs

    def loss_terms(self, student: Features, teacher: Features,
                   labels: Tensor) -> dict[str, Tensor]:
        """The weighted terms for one batch, given both networks' outputs."""
        terms: dict[str, Tensor] = {}
        if self.ce_weight:
            logits = self.student_head(student["embedding"], labels)
            terms["ce"] = self.ce_weight * F.cross_entropy(logits, labels)
        for name, loss in self.losses.items():
            weight = self.loss_weights[name]
            if weight:
                terms[name] = weight * loss(student, teacher, labels)
        return terms

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Weighted loss terms ``{"ce": ..., <loss name>: ...}`` for the trainer to sum."""
        logits = self.needs_logits
        return self.loss_terms(self.student_outputs(images, logits),
                               self.teacher_outputs(images, logits), labels)
