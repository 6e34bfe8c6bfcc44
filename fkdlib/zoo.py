"""A content-addressed cache of trained models: a teacher trained once serves every notebook.

``get_or_train(spec)`` hashes everything that determines a trained model — backbone and its
arguments, head, data, optimisation schedule, seed, profile, training method, the model it
starts from — and looks under ``data/cache/models/<hash>/``. A hit is verified against the
SHA-256 recorded in its manifest; a corrupt or partial entry is reported and retrained, never
silently used. A miss trains (resuming from the entry's own checkpoints if an earlier attempt
was killed) and writes the entry atomically.

Training methods are registered with :func:`register_method`: ``"classify"`` (backbone + margin
head, cross-entropy) is built in; distillation notebooks register theirs (e.g. angular
distillation) without editing this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from .errors import CacheCorruptError, ConfigError
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from .training.callbacks import TargetAngleMonitor
from .training.trainer import ClassificationTask, TrainConfig, Trainer

ZOO_FORMAT_VERSION = 1
DEFAULT_CACHE_DIR = Path("data/cache/models")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines a trained model (and so its cache key).

    ``data`` is a dataset spec understood by :func:`fkdlib.data.build_dataset`; ``train`` holds
    :class:`~fkdlib.training.trainer.TrainConfig` fields; ``method`` names a registered
    training method and ``method_kwargs`` its settings (e.g. the teacher's spec and a loss
    weight); ``init_from`` is the spec of a model whose weights initialise this one (recursive
    distillation).
    """

    backbone: str
    head: str
    data: dict[str, Any]
    train: dict[str, Any]
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    method: str = "classify"
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    init_from: ModelSpec | None = None
    profile: str = "default"
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        def plain(value):
            if isinstance(value, ModelSpec):
                return value.to_dict()
            if isinstance(value, dict):
                return {str(k): plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return value

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @property
    def key(self) -> str:
        """SHA-256 (first 20 hex digits) of the canonical JSON of the spec; the ``name`` of this
        spec and of the specs nested in it is excluded, so renaming never retrains."""
        content = _without_names(self.to_dict())
        content["zoo_format_version"] = ZOO_FORMAT_VERSION
        content["data_version"] = _data_version(self.data)
        blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)


def _is_spec_dict(value: Any) -> bool:
    return isinstance(value, dict) and {f.name for f in dataclasses.fields(ModelSpec)} <= set(value)


def _without_names(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_names(v) for k, v in value.items()
                if not (k == "name" and _is_spec_dict(value))}
    if isinstance(value, list):
        return [_without_names(v) for v in value]
    return value


def _data_version(data: dict[str, Any]) -> str:
    from .data import dataset_version

    return dataset_version(data)


@dataclass
class TrainedModel:
    """A backbone and its head, ready for evaluation, with how they were made."""

    spec: ModelSpec
    backbone: nn.Module
    head: nn.Module
    history: pd.DataFrame
    path: Path
    from_cache: bool

    @property
    def key(self) -> str:
        return self.spec.key


MethodBuilder = Callable[..., nn.Module]
_METHODS: dict[str, MethodBuilder] = {}


def register_method(name: str) -> Callable[[MethodBuilder], MethodBuilder]:
    """Register ``builder(spec, backbone, head, device, cache_dir) -> task`` for
    ``ModelSpec.method`` (``cache_dir`` is the zoo folder, for builders that need a teacher)."""
    def decorator(builder: MethodBuilder) -> MethodBuilder:
        if name in _METHODS and _METHODS[name] is not builder:
            raise ConfigError(f"training method {name!r} is already registered")
        _METHODS[name] = builder
        return builder
    return decorator


@register_method("classify")
def _classification(spec: ModelSpec, backbone: nn.Module, head: nn.Module,
                    device: torch.device, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> nn.Module:
    return ClassificationTask(backbone, head)


def build_untrained(spec: ModelSpec, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """Fresh backbone and head for a spec (seeded from ``spec.train['seed']``)."""
    from .heads import create_head
    from .models import create_model

    torch.manual_seed(int(spec.train.get("seed", 0)))
    backbone = create_model(spec.backbone, **spec.backbone_kwargs)
    head = create_head(spec.head, embedding_size=backbone.embedding_size,
                       num_classes=num_classes, **spec.head_kwargs)
    return backbone, head


def _entry_files(entry: Path) -> tuple[Path, Path, Path]:
    return entry / "weights.pt", entry / "manifest.json", entry / "history.csv"


def _load_entry(entry: Path, spec: ModelSpec, num_classes: int) -> TrainedModel:
    weights, manifest_path, history_path = _entry_files(entry)
    if not manifest_path.exists():
        raise CacheCorruptError(f"{entry} has no manifest.json (an interrupted write?)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CacheCorruptError(f"{manifest_path} is not valid JSON: {error}") from error
    if not weights.exists():
        raise CacheCorruptError(f"{weights} is missing")
    digest = sha256_file(weights)
    if digest != manifest.get("weights_sha256"):
        raise CacheCorruptError(f"{weights} has SHA-256 {digest[:12]}…, the manifest records "
                                f"{str(manifest.get('weights_sha256'))[:12]}…")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    backbone, head = build_untrained(spec, num_classes)
    backbone.load_state_dict(state["backbone"])
    head.load_state_dict(state["head"])
    history = pd.read_csv(history_path) if history_path.exists() else pd.DataFrame()
    backbone.eval(), head.eval()
    return TrainedModel(spec, backbone, head, history, entry, from_cache=True)


def _write_entry(entry: Path, spec: ModelSpec, backbone: nn.Module, head: nn.Module,
                 history: pd.DataFrame) -> None:
    weights, manifest_path, history_path = _entry_files(entry)
    buffer = io.BytesIO()
    torch.save({"backbone": backbone.state_dict(), "head": head.state_dict()}, buffer)
    atomic_write_bytes(weights, buffer.getvalue())
    atomic_write_text(history_path, history.to_csv(index=False))
    atomic_write_json(entry / "spec.json", spec.to_dict())
    # the manifest is written last: its presence marks a complete entry
    atomic_write_json(manifest_path, {"key": spec.key, "name": spec.name,
                                      "weights_sha256": sha256_file(weights)})


def get_or_train(spec: ModelSpec, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                 device: torch.device | str = "cpu", retrain: bool = False,
                 log: Callable[[str], None] = print) -> TrainedModel:
    """Return the trained model for ``spec``, training it only if no valid cache entry exists."""
    from .data import build_dataset

    if spec.method not in _METHODS:
        from .distill import methods  # noqa: F401  (registers the distillation methods)
    if spec.method not in _METHODS:
        raise ConfigError(f"unknown training method {spec.method!r}; registered: "
                          f"{', '.join(sorted(_METHODS))}")
    device = torch.device(device)
    entry = Path(cache_dir) / spec.key
    train_set = build_dataset(spec.data)
    num_classes = int(train_set.num_classes)
    label = spec.name or spec.backbone
    if (entry / "manifest.json").exists() and not retrain:
        try:
            model = _load_entry(entry, spec, num_classes)
            log(f"[zoo] {label}: loaded from cache {entry}")
            return model
        except CacheCorruptError as error:
            warnings.warn(f"model cache entry is corrupt and will be retrained: {error}",
                          stacklevel=2)
            for stale in _entry_files(entry)[:2]:
                stale.unlink(missing_ok=True)
    backbone, head = build_untrained(spec, num_classes)
    if spec.init_from is not None:
        parent = get_or_train(spec.init_from, cache_dir, device, log=log)
        backbone.load_state_dict(parent.backbone.state_dict())
        if parent.head.state_dict().keys() == head.state_dict().keys():
            head.load_state_dict(parent.head.state_dict())
    task = _METHODS[spec.method](spec, backbone, head, device, cache_dir)
    resuming = (entry / "checkpoints" / "last.pt").exists()
    log(f"[zoo] {label}: {'resuming an interrupted training' if resuming else 'training'} "
        f"({spec.key})")
    callbacks = []
    if hasattr(train_set, "images_u8"):
        # θ_y statistics per epoch (ArcFace Fig. 4), cached with the model's history
        callbacks.append(TargetAngleMonitor.from_dataset(train_set,
                                                         seed=int(spec.train.get("seed", 0))))
    trainer = Trainer(task, TrainConfig(**spec.train), checkpoint_dir=entry / "checkpoints",
                      callbacks=callbacks, device=device)
    history = trainer.fit(train_set, resume=True)
    backbone.cpu().eval(), head.cpu().eval()
    _write_entry(entry, spec, backbone, head, history)
    shutil.rmtree(entry / "checkpoints", ignore_errors=True)
    return TrainedModel(spec, backbone, head, history, entry, from_cache=False)
