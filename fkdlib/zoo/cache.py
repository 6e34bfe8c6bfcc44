"""A content-addressed cache of trained models: a teacher trained once serves every notebook.

``get_or_train(spec)`` hashes everything that determines a trained model — backbone and its
arguments, head, data (with the renderer's version or the files' sizes and dates), optimisation
schedule, seed, profile, training method, the model it starts from, and the version of the code
that builds and trains models (:func:`training_code_version`) — and looks under
``data/cache/models/<hash>/``. A hit is verified against the SHA-256 recorded in its manifest;
a corrupt or partial entry is reported and retrained, never silently used. A miss trains
(resuming from the entry's own checkpoints if an earlier attempt was killed) and writes the
entry atomically.

Training methods live in :data:`fkdlib.zoo.methods.METHODS` (classification and the
distillation methods); the statistics recorded during training are declared in the spec's
``monitors`` (:data:`fkdlib.training.callbacks.MONITORS`), never guessed from the data.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import io
import json
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from ..errors import CacheCorruptError, ConfigError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from ..training.callbacks import MONITORS
from ..training.trainer import TrainConfig, Trainer

ZOO_FORMAT_VERSION = 1
DEFAULT_CACHE_DIR = Path("data/cache/models")
# The code that determines a trained model, given its spec and data: the heads, the losses,
# the training loop and its augmentation, the training methods, the registries and the
# layers every network shares. A network's own files (its module in models/ and the modules
# it imports from there) enter the keys of the specs that use it (model_code_version), so a
# new network never invalidates the models already in the zoo.
TRAINING_CODE = ("heads", "distill", "training", "zoo", "data/transforms.py", "registry.py",
                 "models/layers.py", "models/registry.py")
MODELS_PACKAGE = "models"


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _package_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _code_digest(files: list[Path], root: Path) -> str:
    """SHA-256 (first 16 hex digits) of the files' syntax trees without comments and
    docstrings, each named by its path relative to ``root`` when it lies inside it."""
    digest = hashlib.sha256()
    for file in files:
        tree = _without_docstrings(ast.parse(file.read_text(encoding="utf-8")))
        name = file.relative_to(root) if file.is_relative_to(root) else Path(file.name)
        digest.update(name.as_posix().encode())
        digest.update(ast.dump(tree).encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def training_code_version() -> str:
    """Hash of :data:`TRAINING_CODE`: any change to code that could change every trained
    model changes every model's cache key (so a stale model is never reused), while a
    reworded comment or docstring does not."""
    root = _package_root()
    files: list[Path] = []
    for part in TRAINING_CODE:
        path = root / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return _code_digest(files, root)


def _sibling_imports(file: Path) -> set[Path]:
    """The modules of ``file``'s own package that it imports (``from .x import ...``)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [alias.name for alias in node.names]
            found.update(file.parent / f"{name.split('.')[0]}.py" for name in names)
    return {path for path in found if path.is_file()}


@functools.lru_cache(maxsize=None)
def model_code_version(backbone: str) -> str:
    """Hash of the code of the registered network ``backbone``: the module that registers it
    and, for a network of ``fkdlib.models``, every module of that package it imports,
    directly or not (the package's ``__init__``, which only registers, excluded)."""
    import inspect

    from ..models.registry import MODELS

    root = _package_root()
    module = Path(inspect.getsourcefile(MODELS.get(backbone))).resolve()
    return _code_digest(network_files(module, root), root)


def network_files(module: Path, root: Path) -> list[Path]:
    """``module`` and, when it lies in ``root``'s models package, the modules of that package
    it imports directly or not, ``__init__`` excluded; sorted."""
    files, pending = {module}, [module]
    if module.parent == root / MODELS_PACKAGE:
        while pending:
            for imported in _sibling_imports(pending.pop()) - files:
                if imported.name != "__init__.py":
                    files.add(imported)
                    pending.append(imported)
    return sorted(files)


def _backbones(content: Any) -> set[str]:
    """Every backbone named in a spec dict, nested specs (teachers, parents) included."""
    if isinstance(content, dict):
        names = {content["backbone"]} if _is_spec_dict(content) else set()
        return names.union(*(_backbones(v) for v in content.values()))
    if isinstance(content, list):
        return set().union(*(_backbones(v) for v in content))
    return set()


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines a trained model (and so its cache key).

    ``data`` is a dataset spec understood by :func:`fkdlib.data.build_dataset`; ``train`` holds
    :class:`~fkdlib.training.trainer.TrainConfig` fields; ``method`` names a registered
    training method and ``method_kwargs`` its settings (e.g. the teacher's spec and a loss
    weight); ``init_from`` is the spec of a model whose weights initialise this one (recursive
    distillation); ``monitors`` names the statistics recorded in the history after every epoch
    (e.g. ``"target_angles"``, ArcFace's Fig. 4), which never change the weights. ``head=""``
    means no margin head, for a network trained on other targets than identities (method
    ``"landmarks"``: FAN on landmark heatmaps); its ``TrainedModel.head`` is an identity.
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
    monitors: tuple[str, ...] = ()
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
        content["code_version"] = training_code_version()
        content["model_code"] = {name: model_code_version(name)
                                 for name in sorted(_backbones(self.to_dict()))}
        blob = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict` (nested ``init_from`` included).

        Raises:
            ConfigError: ``data`` is not a dict, a required field is missing or an unknown
                field is present.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a model spec must be a dict (ModelSpec.to_dict()), got "
                              f"{type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        required = [name for name, f in fields.items() if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if unknown or missing:
            raise ConfigError(f"invalid model spec: unknown fields {unknown}, missing fields "
                              f"{missing}; expected the fields of ModelSpec: "
                              f"{', '.join(fields)}")
        values = dict(data)
        if values.get("init_from") is not None:
            values["init_from"] = cls.from_dict(values["init_from"])
        values["monitors"] = tuple(values.get("monitors", ()))
        return cls(**values)


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
    from ..data import dataset_version

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


def build_untrained(spec: ModelSpec, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """Fresh backbone and head for a spec (seeded from ``spec.train['seed']``)."""
    from ..heads import create_head
    from ..models import create_model

    torch.manual_seed(int(spec.train.get("seed", 0)))
    backbone = create_model(spec.backbone, **spec.backbone_kwargs)
    if not spec.head:  # a network trained on other targets than identities (FAN's landmarks)
        return backbone, nn.Identity()
    head = create_head(spec.head, embedding_size=backbone.embedding_size,
                       num_classes=num_classes, **spec.head_kwargs)
    return backbone, head


def _same_shape_weights(source: nn.Module, target: nn.Module) -> bool:
    """Both heads have a class-weight matrix ``weight`` of the same shape."""
    weights = [getattr(head, "weight", None) for head in (source, target)]
    return all(isinstance(w, torch.Tensor) for w in weights) and \
        weights[0].shape == weights[1].shape


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
    from ..data import build_dataset
    from .methods import METHODS

    builder = METHODS.get(spec.method)
    for monitor in spec.monitors:
        MONITORS.get(monitor)
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
        elif _same_shape_weights(parent.head, head):
            # softmax pre-training, then a margin head: start from the learnt class centres
            with torch.no_grad():
                head.weight.copy_(parent.head.weight)
    task = builder(spec, backbone, head, device, cache_dir)
    resuming = (entry / "checkpoints" / "last.pt").exists()
    log(f"[zoo] {label}: {'resuming an interrupted training' if resuming else 'training'} "
        f"({spec.key})")
    callbacks = [MONITORS.create(name, train_set, seed=int(spec.train.get("seed", 0)))
                 for name in spec.monitors]
    trainer = Trainer(task, TrainConfig(**spec.train), checkpoint_dir=entry / "checkpoints",
                      callbacks=callbacks, device=device)
    history = trainer.fit(train_set, resume=True)
    backbone.cpu().eval(), head.cpu().eval()
    _write_entry(entry, spec, backbone, head, history)
    shutil.rmtree(entry / "checkpoints", ignore_errors=True)
    return TrainedModel(spec, backbone, head, history, entry, from_cache=False)


def train_all(specs: Mapping[str, ModelSpec], cache_dir: str | Path = DEFAULT_CACHE_DIR,
              device: torch.device | str = "cpu", log: Callable[[str], None] = print,
              names: Sequence[str] | None = None) -> dict[str, TrainedModel]:
    """Train (or load from the zoo) every spec, or those ``names``, in order, keyed as
    ``specs`` is.

    Raises:
        ConfigError: a name is not among the specs (before anything is trained).
    """
    unknown = [name for name in names or () if name not in specs]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; expected some of {list(specs)}")
    return {name: get_or_train(specs[name], cache_dir=cache_dir, device=device, log=log)
            for name in (names or specs)}


def with_seed(spec: ModelSpec, offset: int) -> ModelSpec:
    """``spec`` replicated with its training seeds moved by ``offset``: its own, its
    ``init_from`` parent's and its teacher's (``method_kwargs["teacher"]``), and the
    ``method_kwargs["seed"]`` of methods that draw their own randomness; the data (and so the
    test protocols) stay the same, and so does a FAN-Face network's frozen FAN
    (``method_kwargs["fan"]``): one FAN serves every seed. Offset 0 is ``spec`` itself, so
    seed 0 of a multi-seed run is the model a one-seed run trains."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"a seed offset must be an integer >= 0, got {offset!r}")
    if offset == 0:
        return spec
    kwargs = dict(spec.method_kwargs)
    if "teacher" in kwargs:
        kwargs["teacher"] = with_seed(ModelSpec.from_dict(kwargs["teacher"]), offset).to_dict()
    if "seed" in kwargs:
        kwargs["seed"] = int(kwargs["seed"]) + offset
    return spec.replace(
        train={**spec.train, "seed": int(spec.train.get("seed", 0)) + offset},
        method_kwargs=kwargs,
        init_from=None if spec.init_from is None else with_seed(spec.init_from, offset))


def train_seeds(specs: Mapping[str, ModelSpec], seeds: int,
                cache_dir: str | Path = DEFAULT_CACHE_DIR, device: torch.device | str = "cpu",
                log: Callable[[str], None] = print,
                names: Sequence[str] | None = None) -> dict[str, list[TrainedModel]]:
    """:func:`train_all` once per training seed (:func:`with_seed` offsets ``0 .. seeds-1``):
    ``{name: [model of seed 0, model of seed 1, ...]}``. Seed 0 of every model is trained
    first, so an interrupted run has whole replicates to show."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be an integer >= 1, got {seeds!r}")
    chosen = list(names or specs)
    out: dict[str, list[TrainedModel]] = {name: [] for name in chosen}
    for offset in range(seeds):
        trained = train_all({name: with_seed(spec, offset) for name, spec in specs.items()},
                            cache_dir=cache_dir, device=device, log=log, names=chosen)
        for name, model in trained.items():
            out[name].append(model)
    return out

