"""Training health: did a model converge to a usable embedding, or collapse?

A verdict on a paper's claim is only as good as the models under it. Margin losses trained
from scratch at a large scale ``s`` can stall in a degenerate solution (the "loss stalls near
20" failure known from ArcFace / CosFace practice): every class weight and every feature crowd
into one cone, the target angle θ_y becomes small for the wrong reason and the embedding keeps
a handful of useful directions. :func:`training_health` measures, for one trained model:

- ``train_top1``: top-1 accuracy of the model's own classifier (its head's inference logits)
  on the training images, without augmentation;
- ``class_margin``: mean over training images of ``cos θ_y − max_{j≠y} cos θ_j`` (how much
  closer an image is to its own class weight than to the nearest other one);
- ``max_weight_cosine``: the largest cosine between two class weights (near 1: classes merged);
- ``effective_dim``: the participation ratio ``(Σλ)² / Σλ²`` of the covariance eigenvalues of
  the L2-normalised test embeddings (Gao et al. 2017, "A theory of multineuronal
  dimensionality"; 1 when all variance lies along one direction, D when it spreads evenly);
- ``final_loss_drop``: relative decrease of the training loss over the last epoch; a loss still
  falling fast at the end of the schedule means training stopped before convergence.

:class:`HealthGate` turns a row into a pass or a reason; the same gate applies to every method
of every notebook, so a claim that involves a failing model is ``not assessed`` rather than
decided by a collapsed run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.transforms import to_float_image
from ..errors import ConfigError

HEALTH_COLUMNS = ("model", "seed", "train_top1", "class_margin", "max_weight_cosine",
                  "effective_dim", "final_loss_drop", "converged", "reason")


def effective_dimension(embeddings: np.ndarray | torch.Tensor) -> float:
    """Participation ratio ``(Σλ)² / Σλ²`` of the covariance of the L2-normalised rows."""
    array = embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) \
        else np.asarray(embeddings)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ConfigError(f"effective_dimension needs a (samples >= 2, dims) array, got shape "
                          f"{array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    unit = array / np.where(norms > 0, norms, 1.0)
    eigenvalues = np.clip(np.linalg.eigvalsh(np.cov(unit, rowvar=False)), 0.0, None)
    total = eigenvalues.sum()
    return float(total ** 2 / (eigenvalues ** 2).sum()) if total > 0 else 0.0


def final_loss_drop(history: pd.DataFrame, column: str = "loss") -> float:
    """``(loss[-2] − loss[-1]) / |loss[-2]|`` of the per-epoch history; NaN with one epoch."""
    if column not in history or len(history) < 2:
        return math.nan
    previous, last = (float(v) for v in history[column].iloc[-2:])
    return (previous - last) / abs(previous) if previous else math.nan


@torch.no_grad()
def _embed(backbone: nn.Module, images_u8: torch.Tensor, batch_size: int) -> torch.Tensor:
    was_training = backbone.training
    backbone.eval()
    out = [backbone(to_float_image(images_u8[start:start + batch_size]))
           for start in range(0, len(images_u8), batch_size)]
    backbone.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def class_geometry(embeddings: torch.Tensor, labels: torch.Tensor,
                   head: nn.Module) -> dict[str, float]:
    """``train_top1``, ``class_margin`` and ``max_weight_cosine`` of a head on embeddings of its
    training images (module docstring). Heads without class weights give NaN."""
    nan = {"train_top1": math.nan, "class_margin": math.nan, "max_weight_cosine": math.nan}
    if not hasattr(head, "normalized_weight"):
        return nan
    was_training = head.training
    head.eval()
    labels = labels.long()
    top1 = float((head(embeddings).argmax(1) == labels).double().mean())
    head.train(was_training)
    weight = head.normalized_weight().double()
    cos = F.normalize(embeddings.double(), dim=1) @ weight.T
    own = cos.gather(1, labels[:, None]).squeeze(1)
    others = cos.scatter(1, labels[:, None], -math.inf).max(1).values
    gram = weight @ weight.T
    gram.fill_diagonal_(-math.inf)
    return {"train_top1": top1, "class_margin": float((own - others).mean()),
            "max_weight_cosine": float(gram.max()) if len(weight) > 1 else math.nan}


def training_health(model: Any, train_images_u8: torch.Tensor, train_labels: torch.Tensor,
                    test_embeddings: np.ndarray, batch_size: int = 512) -> dict[str, float]:
    """The health measures of one trained model (anything with ``backbone``, ``head`` and a
    per-epoch ``history``, e.g. a :class:`~fkdlib.zoo.TrainedModel`)."""
    if len(train_images_u8) != len(train_labels):
        raise ConfigError(f"{len(train_images_u8)} training images but {len(train_labels)} "
                          "labels")
    embeddings = _embed(model.backbone, train_images_u8, batch_size)
    row = class_geometry(embeddings, train_labels, model.head)
    row["effective_dim"] = effective_dimension(test_embeddings)
    row["final_loss_drop"] = final_loss_drop(model.history)
    return row


@dataclass(frozen=True)
class HealthGate:
    """The documented convergence gate, the same for every method.

    A model passes when its own classifier fits the training identities
    (``train_top1 >= min_train_top1``), its classes stay apart (``max_weight_cosine <=
    max_weight_cosine``), its test embeddings use more than a few directions
    (``effective_dim >= min_effective_dim``) and its loss has flattened by the end of the
    schedule (``final_loss_drop <= max_final_loss_drop``). A measure that is NaN (no class
    weights, a one-epoch run) is not held against the model.
    """

    min_train_top1: float = 0.9
    max_weight_cosine: float = 0.9
    min_effective_dim: float = 5.0
    max_final_loss_drop: float = 0.05

    def reason(self, row: Mapping[str, float]) -> str:
        """Why ``row`` fails the gate ('' when it passes)."""
        failures = []

        def check(name: str, failed: bool, text: str) -> None:
            value = row.get(name, math.nan)
            if not (isinstance(value, float) and math.isnan(value)) and failed:
                failures.append(text.format(value=value))

        check("train_top1", row.get("train_top1", math.nan) < self.min_train_top1,
              f"training top-1 {{value:.1%}} < {self.min_train_top1:.0%}")
        check("max_weight_cosine", row.get("max_weight_cosine", math.nan)
              > self.max_weight_cosine,
              f"two class weights at cosine {{value:.3f}} > {self.max_weight_cosine:g}")
        check("effective_dim", row.get("effective_dim", math.nan) < self.min_effective_dim,
              f"effective dimension {{value:.1f}} < {self.min_effective_dim:g}")
        check("final_loss_drop", row.get("final_loss_drop", math.nan)
              > self.max_final_loss_drop,
              f"loss still falling {{value:.1%}} in the last epoch "
              f"(> {self.max_final_loss_drop:.0%})")
        return "; ".join(failures)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


DEFAULT_GATE = HealthGate()


def health_table(rows: Mapping[tuple[str, int], Mapping[str, float]],
                 gate: HealthGate = DEFAULT_GATE) -> pd.DataFrame:
    """One row per (model, seed) with the measures, ``converged`` and the gate's ``reason``."""
    records = []
    for (name, seed), measures in rows.items():
        reason = gate.reason(measures)
        records.append({"model": name, "seed": seed, **measures, "converged": not reason,
                        "reason": reason})
    return pd.DataFrame(records, columns=list(HEALTH_COLUMNS))


def model_health(models: Mapping[str, Sequence[Any]],
                 test_embeddings: Mapping[str, Sequence[np.ndarray]],
                 gate: HealthGate = DEFAULT_GATE) -> pd.DataFrame:
    """:func:`health_table` of every model and training seed.

    Args:
        models: name -> one trained model per seed (:func:`fkdlib.zoo.train_seeds`); each is
            measured on the training images of its own spec's data.
        test_embeddings: name -> one ``(N, D)`` array of test embeddings per seed (for the
            effective dimension), in the same seed order.
    """
    from ..data import build_dataset

    missing = [name for name in models if name not in test_embeddings]
    if missing:
        raise ConfigError(f"no test embeddings for {missing}; give one array per seed")
    training_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for name, replicates in models.items():
        if len(replicates) != len(test_embeddings[name]):
            raise ConfigError(f"{name}: {len(replicates)} models but "
                              f"{len(test_embeddings[name])} sets of test embeddings")
        for model, embeddings in zip(replicates, test_embeddings[name], strict=True):
            key = json.dumps(model.spec.data, sort_keys=True, default=str)
            if key not in training_sets:
                training_sets[key] = training_images(build_dataset(model.spec.data))
            seed = int(model.spec.train.get("seed", 0))
            rows[(name, seed)] = training_health(model, *training_sets[key], embeddings)
    return health_table(rows, gate)


# Training images the health of a model trained on a file-backed dataset is measured on (an
# in-memory dataset such as SynthFace gives all of its images).
MAX_HEALTH_IMAGES = 5000


def training_images(dataset: Any, max_images: int = MAX_HEALTH_IMAGES, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and labels of a training set for :func:`training_health`: all of an
    in-memory dataset (``images_u8()``), else ``max_images`` drawn with ``seed`` and read one
    by one (real data on disk, e.g. a ``.rec`` of millions of faces)."""
    from ..data import dataset_labels

    labels = dataset_labels(dataset)
    if hasattr(dataset, "images_u8"):
        return (torch.from_numpy(np.ascontiguousarray(dataset.images_u8())),
                torch.from_numpy(labels))
    rows = np.arange(len(labels))
    if rows.size > max_images:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_images, replace=False))
    images = torch.stack([dataset[int(i)]["image"] for i in rows])
    as_u8 = torch.round((images * 0.5 + 0.5) * 255).clamp(0, 255).to(torch.uint8)
    return as_u8, torch.from_numpy(labels[rows])


def failed_models(table: pd.DataFrame) -> dict[str, str]:
    """Model name -> why it fails the gate (every failing seed named), for the claims."""
    failing = table[~table["converged"].astype(bool)]
    return {name: "; ".join(f"seed {seed}: {reason}" for seed, reason in
                            zip(group["seed"], group["reason"], strict=True))
            for name, group in failing.groupby("model", sort=False)}
