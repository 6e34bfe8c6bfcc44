"""Training methods of the model zoo: how a :class:`~fkdlib.zoo.ModelSpec` becomes a task for
the :class:`~fkdlib.training.trainer.Trainer`, so that a distilled student is a plain spec
(and is cached like any other model).

Builders are registered in :data:`METHODS` as ``builder(spec, backbone, head, device,
cache_dir) -> task``.

``method="classify"``: the backbone and its margin head trained with cross-entropy.

``method="distill"``, ``method_kwargs``:

- ``"teacher"``: the teacher's ModelSpec as a dict (``ModelSpec.to_dict()``); it is trained or
  loaded through :func:`fkdlib.zoo.get_or_train`;
- ``"losses"``: a list of ``{"name": <registered loss>, "weight": w, "kwargs": {...}}``;
  ``weight`` defaults to the loss's published weight (``default_weight`` in :data:`fkdlib.distill.base.LOSSES`), ``kwargs``
  to ``{}``;
- ``"ce_weight"``: weight of the student's cross-entropy (default 1).

The teacher is cached in the same zoo folder as the student.

``method="landmarks"`` (FAN-Face's alignment network, thesis ch. 3): the backbone is a
:class:`~fkdlib.models.fan.FAN` (with ``head=""``) regressing landmark heatmaps on the
dataset's landmarks; ``method_kwargs["sigma"]`` is the Gaussians' width in heatmap pixels
(default 1).

``method="fan_guided"`` (FAN-Face, thesis ch. 3): the backbone is a
:class:`~fkdlib.models.fan_face.FanFace` whose frozen FAN is the trained FAN of
``method_kwargs["fan"]`` (a ``"landmarks"`` ModelSpec as a dict, trained or loaded through
:func:`fkdlib.zoo.get_or_train` and cached in the same zoo); the recognition network then
trains with cross-entropy through its margin head, the FAN's outputs taken from a bank
computed once (:class:`~fkdlib.training.fan_guided.FanGuidedTask`).

``method="landmark_multitask"`` (FAN-Face's multi-task baseline): a ``FanFace`` with
``multitask=True`` trained with cross-entropy plus ``method_kwargs["weight"]`` (default 0.1)
times the L2 loss of its heatmap head on the dataset's landmarks (Gaussians of
``method_kwargs["sigma"]`` heatmap pixels, default 1); on data without landmarks, those the
FAN of ``method_kwargs["fan"]`` finds.

``method="distill_unlabeled"`` (SRRL §4.2.2) takes the same keys plus ``"unlabeled"`` (a dataset
spec whose images are used without labels) and the
:class:`~fkdlib.distill.unlabeled.UnlabeledMixupDistiller` settings ``"unlabeled_weight"``,
``"mixup_weight"``, ``"mixup_alpha"``, ``"temperature"``, ``"seed"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..distill import Distiller, UnlabeledMixupDistiller, create_loss, default_weights, list_losses
from ..errors import ConfigError
from ..registry import Registry
from ..models.fan import FAN
from ..models.fan_face import FanFace
from ..training.fan_guided import FanGuidedTask
from ..training.landmarks import MULTITASK_WEIGHT, LandmarkTask, MultitaskLandmarkTask
from ..training.trainer import ClassificationTask
from .cache import DEFAULT_CACHE_DIR, ModelSpec, get_or_train

METHODS: Registry = Registry("training method")

_DISTILL_KEYS = {"teacher", "losses", "ce_weight"}
_UNLABELED_KEYS = {"unlabeled", "unlabeled_weight", "mixup_weight", "mixup_alpha",
                   "temperature", "seed"}


def _method_kwargs(spec: ModelSpec, allowed: set[str]) -> dict[str, Any]:
    kwargs = dict(spec.method_kwargs)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(f"method {spec.method!r} of {spec.name or spec.backbone!r} does not "
                          f"take {unknown}; its method_kwargs are: "
                          f"{', '.join(sorted(allowed)) or 'none'}")
    return kwargs


def _check_keys(spec: ModelSpec, allowed: set[str]) -> dict[str, Any]:
    kwargs = _method_kwargs(spec, allowed)
    if "teacher" not in kwargs:
        raise ConfigError(f"method {spec.method!r} needs method_kwargs['teacher'], the "
                          "teacher's ModelSpec.to_dict()")
    return kwargs


def _loss_entries(entries: Any) -> list[tuple[str, float, dict[str, Any]]]:
    """Check the ``"losses"`` list (before any teacher is trained) and fill in defaults."""
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"method_kwargs['losses'] must be a list of {{'name', 'weight', "
                          f"'kwargs'}} dicts, got {type(entries).__name__}")
    checked: list[tuple[str, float, dict[str, Any]]] = []
    for entry in entries:
        if not isinstance(entry, dict) or "name" not in entry or set(entry) - {
                "name", "weight", "kwargs"}:
            raise ConfigError(f"each loss must be a dict with 'name' and optional 'weight' and "
                              f"'kwargs', got {entry!r}")
        name = entry["name"]
        if name not in list_losses():
            raise ConfigError(f"unknown distillation loss {name!r}; registered losses: "
                              f"{', '.join(list_losses())}")
        if name in [seen for seen, _, _ in checked]:
            raise ConfigError(f"loss {name!r} is listed twice")
        weight = entry.get("weight", default_weights().get(name))
        if weight is None:
            raise ConfigError(f"loss {name!r} has no default weight; give 'weight'")
        options = entry.get("kwargs", {})
        if not isinstance(options, dict):
            raise ConfigError(f"the 'kwargs' of loss {name!r} must be a dict, got {options!r}")
        checked.append((name, weight, options))
    return checked


def build_losses(entries: list[dict[str, Any]], student_backbone: nn.Module,
                 teacher_backbone: nn.Module,
                 teacher_head: nn.Module) -> dict[str, tuple[nn.Module, float]]:
    """``{name: (module, weight)}`` from the ``"losses"`` list of a distillation spec."""
    return {name: (create_loss(name, student_backbone, teacher_backbone, teacher_head,
                               **options), weight)
            for name, weight, options in _loss_entries(entries)}


def _teacher(kwargs: dict[str, Any], device: torch.device, cache_dir: str | Path):
    return get_or_train(ModelSpec.from_dict(kwargs["teacher"]), cache_dir, device)


@METHODS.register("classify")
def build_classifier(spec: ModelSpec, backbone: nn.Module, head: nn.Module,
                     device: torch.device, cache_dir: str | Path = DEFAULT_CACHE_DIR
                     ) -> ClassificationTask:
    """Zoo builder: backbone + head with cross-entropy (ArcFace Eq. 3 family)."""
    return ClassificationTask(backbone, head)


@METHODS.register("landmarks")
def build_landmark_task(spec: ModelSpec, backbone: nn.Module, head: nn.Module,
                        device: torch.device, cache_dir: str | Path = DEFAULT_CACHE_DIR
                        ) -> LandmarkTask:
    """Zoo builder: a :class:`LandmarkTask` for a FAN backbone (see the module doc)."""
    kwargs = _method_kwargs(spec, {"sigma"})
    if not isinstance(backbone, FAN) or spec.head:
        raise ConfigError(f"method 'landmarks' trains a FAN without a margin head "
                          f"(backbone='fan', head=''), got backbone={spec.backbone!r}, "
                          f"head={spec.head!r}")
    return LandmarkTask(backbone, sigma=kwargs.get("sigma", 1.0))


def _trained_fan(spec: dict[str, Any], device: torch.device, cache_dir: str | Path) -> FAN:
    """The FAN of ``method_kwargs["fan"]``, trained or loaded through the zoo."""
    fan_spec = ModelSpec.from_dict(spec)
    if fan_spec.method != "landmarks":
        raise ConfigError(f"method_kwargs['fan'] must be a FAN trained with method "
                          f"'landmarks', got method {fan_spec.method!r}")
    return get_or_train(fan_spec, cache_dir, device).backbone


@METHODS.register("fan_guided")
def build_fan_guided(spec: ModelSpec, backbone: nn.Module, head: nn.Module,
                     device: torch.device, cache_dir: str | Path = DEFAULT_CACHE_DIR
                     ) -> FanGuidedTask:
    """Zoo builder: FAN-Face's recognition network with the trained FAN of
    ``method_kwargs["fan"]`` loaded into its frozen ``fan`` (see the module doc)."""
    kwargs = _method_kwargs(spec, {"fan"})
    if not isinstance(backbone, FanFace) or backbone.fan is None:
        raise ConfigError(f"method 'fan_guided' trains a FAN-Face network that uses a FAN "
                          f"(backbone='fan_face' with heatmaps or integration), got "
                          f"{spec.backbone!r} {dict(spec.backbone_kwargs)}")
    if "fan" not in kwargs:
        raise ConfigError("method 'fan_guided' needs method_kwargs['fan'], the FAN's "
                          "ModelSpec.to_dict() (method 'landmarks')")
    trained = _trained_fan(kwargs["fan"], device, cache_dir)
    ours = {k: tuple(v.shape) for k, v in backbone.fan.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in trained.state_dict().items()}
    if ours != theirs:
        raise ConfigError(
            f"the trained FAN ({dict(kwargs['fan'].get('backbone_kwargs', {}))}) does "
            f"not fit the FAN inside {spec.name or spec.backbone!r}: give fan_face the same "
            "fan_stacks, fan_width, fan_depth and num_landmarks as the FAN spec")
    backbone.fan.load_state_dict(trained.state_dict())
    backbone.fan.requires_grad_(False).eval()
    return FanGuidedTask(backbone, head)


@METHODS.register("landmark_multitask")
def build_landmark_multitask(spec: ModelSpec, backbone: nn.Module, head: nn.Module,
                             device: torch.device, cache_dir: str | Path = DEFAULT_CACHE_DIR
                             ) -> MultitaskLandmarkTask:
    """Zoo builder: FAN-Face's multi-task baseline (see the module doc)."""
    kwargs = _method_kwargs(spec, {"weight", "sigma", "fan"})
    if not isinstance(backbone, FanFace) or not backbone.multitask:
        raise ConfigError(f"method 'landmark_multitask' trains backbone='fan_face' with "
                          f"multitask=True, got {spec.backbone!r} {dict(spec.backbone_kwargs)}")
    fan = _trained_fan(kwargs["fan"], device, cache_dir) if "fan" in kwargs else None
    return MultitaskLandmarkTask(backbone, head, backbone.landmark_head.out_channels,
                                 weight=kwargs.get("weight", MULTITASK_WEIGHT),
                                 sigma=kwargs.get("sigma", 1.0), fan=fan)


@METHODS.register("distill")
def build_distiller(spec: ModelSpec, backbone: nn.Module, head: nn.Module,
                    device: torch.device, cache_dir: str | Path = DEFAULT_CACHE_DIR
                    ) -> Distiller:
    """Zoo builder: a :class:`Distiller` from ``spec.method_kwargs`` (see the module doc)."""
    kwargs = _check_keys(spec, _DISTILL_KEYS)
    _loss_entries(kwargs.get("losses", []))
    teacher = _teacher(kwargs, device, cache_dir)
    losses = build_losses(kwargs.get("losses", []), backbone, teacher.backbone, teacher.head)
    return Distiller(backbone, head, teacher.backbone, teacher.head, losses,
                     kwargs.get("ce_weight", 1.0))


@METHODS.register("distill_unlabeled")
def build_unlabeled_distiller(spec: ModelSpec, backbone: nn.Module, head: nn.Module,
                              device: torch.device, cache_dir: str | Path = DEFAULT_CACHE_DIR
                              ) -> UnlabeledMixupDistiller:
    """Zoo builder: an :class:`UnlabeledMixupDistiller`; ``method_kwargs["unlabeled"]`` is a
    dataset spec whose images (not labels) are the unlabeled set."""
    from ..data import build_dataset

    kwargs = _check_keys(spec, _DISTILL_KEYS | _UNLABELED_KEYS)
    if "unlabeled" not in kwargs:
        raise ConfigError("method 'distill_unlabeled' needs method_kwargs['unlabeled'], the "
                          "dataset spec of the unlabeled images (e.g. SynthFace identities "
                          "disjoint from the labeled ones)")
    unlabeled_set = build_dataset(kwargs["unlabeled"])
    if not hasattr(unlabeled_set, "images_u8"):
        raise ConfigError(f"the unlabeled dataset {kwargs['unlabeled']} cannot give its images "
                          "as one uint8 array (images_u8); use an in-memory dataset such as "
                          "SynthFace")
    images = torch.as_tensor(unlabeled_set.images_u8()).contiguous()
    _loss_entries(kwargs.get("losses", []))
    teacher = _teacher(kwargs, device, cache_dir)
    losses = build_losses(kwargs.get("losses", []), backbone, teacher.backbone, teacher.head)
    options = {key: kwargs[key] for key in _UNLABELED_KEYS - {"unlabeled"} if key in kwargs}
    return UnlabeledMixupDistiller(backbone, head, teacher.backbone, teacher.head, images,
                                   losses, kwargs.get("ce_weight", 1.0), **options)
