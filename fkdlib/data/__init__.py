"""Datasets: the embedded SynthFace and readers of real face data, behind one spec.

A *dataset spec* is a small dict (so it can be hashed into model-cache keys):
``{"kind": "synthface", "split": "train", "num_identities": 300, ...}`` (the
:class:`~fkdlib.data.synthface.SynthFace` arguments), ``{"kind": "recordio", "path": ...}``
(insightface ``train.rec/.idx/property``), ``{"kind": "folder", "path": ...}`` (one folder
per identity) or ``{"kind": "cifar", "path": ..., "split": "train"}`` (CIFAR-10/100). The notebooks' ``data`` parameter is parsed by :func:`parse_data_arg`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..errors import ConfigError, MissingDataError
from ..registry import Registry

DATA_KINDS: Registry = Registry("dataset kind")


@DATA_KINDS.register("synthface")
def _synthface(**options: Any) -> Dataset:
    from .synthface import SynthFace

    return SynthFace(**options)


@DATA_KINDS.register("recordio")
def _recordio(path: str, **options: Any) -> Dataset:
    from .formats import RecordIODataset

    return RecordIODataset(path, **options)


@DATA_KINDS.register("folder")
def _folder(path: str, **options: Any) -> Dataset:
    from .formats import ImageFolderDataset

    return ImageFolderDataset(path, **options)


@DATA_KINDS.register("cifar")
def _cifar(path: str, **options: Any) -> Dataset:
    from .formats import CIFARDataset

    return CIFARDataset(path, **options)


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Integer labels of a dataset without loading images where the dataset allows it."""
    meta = getattr(dataset, "metadata", None)
    if meta is not None and "identity" in meta:
        return np.array(meta["identity"], dtype=np.int64)
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return np.asarray(targets, dtype=np.int64)
    return np.asarray([int(dataset[i]["identity"]) for i in range(len(dataset))], dtype=np.int64)


def build_dataset(spec: dict[str, Any]) -> Dataset:
    """Instantiate the dataset a spec describes (its ``kind`` names an entry of
    :data:`DATA_KINDS`; the other keys are that dataset's arguments)."""
    options = dict(spec)
    kind = options.pop("kind", None)
    if kind not in DATA_KINDS:
        raise ConfigError(f"unknown dataset kind {kind!r} in {spec}; expected one of "
                          f"{', '.join(DATA_KINDS.names())}")
    return DATA_KINDS.get(kind)(**options)


def dataset_version(spec: dict[str, Any]) -> str:
    """What, beyond the spec itself, determines the data: the renderer version for SynthFace,
    the size and modification time of the files for real data (and of each identity folder
    of an image-folder dataset)."""
    kind = spec.get("kind")
    if kind == "synthface":
        from .synthface.params import PARAMS_VERSION
        from .synthface.render import RENDERER_VERSION

        return f"synthface-r{RENDERER_VERSION}-p{PARAMS_VERSION}"
    path = Path(spec.get("path", ""))
    files = [path] if path.is_file() else sorted(p for p in path.glob("*") if p.is_file())
    version = ";".join(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}"
                       for p in files[:64])
    folders = [] if path.is_file() else sorted(p for p in path.glob("*") if p.is_dir())
    if folders:
        # an identity folder's modification time changes when an image is added, removed or
        # renamed in it: one stat per identity, not per image
        digest = hashlib.sha256("".join(f"{p.name}:{p.stat().st_mtime_ns};"
                                        for p in folders).encode()).hexdigest()[:16]
        version += f";folders={len(folders)}:{digest}"
    return version


def parse_data_arg(data: str) -> dict[str, Any]:
    """Parse a notebook's ``data`` parameter.

    ``"synthface"`` selects the embedded dataset; ``"rec:/path/to/faces_emore"`` an insightface
    folder with ``train.rec/.idx/property`` and verification ``.bin`` files;
    ``"folder:/path"`` one folder per identity; ``"cifar10:/path"`` or ``"cifar100:/path"``
    the python-pickle CIFAR distribution (SRRL's classification tables).
    """
    data = str(data).strip()
    if data in ("", "synthface"):
        return {"kind": "synthface"}
    prefix, _, path = data.partition(":")
    kinds = {"rec": "recordio", "recordio": "recordio", "folder": "folder",
             "cifar10": "cifar", "cifar100": "cifar"}
    if prefix not in kinds or not path:
        raise ConfigError(f"cannot read data={data!r}; expected 'synthface', 'rec:/path', "
                          "'folder:/path', 'cifar10:/path' or 'cifar100:/path'")
    if not os.path.exists(path):
        raise MissingDataError(f"data={data!r}: {path} does not exist")
    spec = {"kind": kinds[prefix], "path": path}
    if prefix.startswith("cifar"):
        spec["variant"] = int(prefix[5:])
    return spec
