"""What every face notebook shares: the benchmark (training data + evaluation protocols), the
evaluation of a backbone on it, summary tables and paired comparisons for claims.

On SynthFace (``data="synthface"``) the benchmark is: a training split; a test split of
identities disjoint from it on which the LFW-, CFP-FP-, AgeDB- and IJB-like pair lists are
drawn (:mod:`fkdlib.data.synthface.protocols`); and a distractor set of further disjoint
identities for MegaFace-like identification. On real data (``data="rec:/path"``) training reads
the insightface ``train.rec`` and verification reads the ``lfw.bin`` / ``cfp_fp.bin`` /
``agedb_30.bin`` files found beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from sklearn.metrics import roc_curve

from ..data import parse_data_arg
from ..data.synthface.protocols import (
    IdentificationSplit, PairProtocol, agedb_pairs, cfp_fp_pairs, check_identity_disjoint,
    identification_split, ijb_pairs, lfw_pairs)
from ..data.transforms import to_float_image
from ..errors import ConfigError, MissingDataError
from ..evaluation import (
    IdentificationResult, VerificationResult, best_threshold_accuracy, d_prime,
    evaluate_identification, evaluate_verification, extract_embeddings,
    mean_negative_similarity, mean_positive_similarity, paired_bootstrap, roc_auc, tar_at_far)
from ..evaluation.similarity import BootstrapResult
from ..profiles import Profile, get_profile
from ..zoo import ModelSpec

PROTOCOL_LABELS = {"lfw": "LFW-like", "cfp_fp": "CFP-FP-like", "agedb": "AgeDB-like",
                   "ijb": "IJB-like"}
REAL_BINS = {"lfw": "lfw.bin", "cfp_fp": "cfp_fp.bin", "agedb": "agedb_30.bin"}
FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
# SynthFace draws yaw uniformly in [-max_yaw, max_yaw] and an age drift uniformly in
# [-max_drift, max_drift] years per image. The CFP-FP-like "profile" side takes the top quarter
# of the pose range (|yaw| >= 60 only at hard difficulty, as in CFP) and the "frontal" side the
# bottom quarter (at most 15 degrees, as in CFP), and AgeDB-like positives
# need an age gap of at least 75% of the largest drift: large enough to matter, common enough
# to fill the folds.
PROFILE_FRACTION = 0.75
AGE_GAP_FRACTION = 0.75
# Cap on IJB-like negatives: enough for FAR 1e-5 at the default profile, bounded memory.
IJB_MAX_NEGATIVES = 400_000


@dataclass
class VerificationSet:
    """A pair list over one image pool of the benchmark."""

    name: str
    pool: str
    protocol: PairProtocol

    @property
    def label(self) -> str:
        return PROTOCOL_LABELS.get(self.name, self.name)


@dataclass
class FaceBenchmark:
    """Training data spec + image pools + protocols, for one profile and seed."""

    profile: Profile
    seed: int
    train_data: dict[str, Any]
    pools: dict[str, Any]
    verification: dict[str, VerificationSet]
    identification: IdentificationSplit | None = None
    test_metadata: pd.DataFrame | None = None

    def describe(self) -> pd.DataFrame:
        """One row per protocol: pairs, positives, negatives, lowest measurable FAR."""
        rows = [{"protocol": v.label, "pool": v.pool, "pairs": v.protocol.num_pairs,
                 "positive": v.protocol.num_positive, "negative": v.protocol.num_negative,
                 "lowest FAR": v.protocol.min_far} for v in self.verification.values()]
        return pd.DataFrame(rows)


def synthface_data_spec(profile: Profile, split: str, seed: int, **overrides: Any) -> dict:
    """The dataset spec of a SynthFace split sized by the profile."""
    sizes = {"train": (profile.train_identities, profile.train_images_per_identity),
             "test": (profile.test_identities, profile.test_images_per_identity)}
    if split not in sizes:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    identities, per_identity = sizes[split]
    spec = {"kind": "synthface", "split": split, "num_identities": identities,
            "images_per_identity": per_identity, "resolution": profile.resolution,
            "seed": seed, "difficulty": profile.difficulty}
    spec.update(overrides)
    return spec


def _synthface_benchmark(profile: Profile, seed: int) -> FaceBenchmark:
    from ..data.synthface import SynthFace
    from ..data.synthface.params import get_difficulty

    train_data = synthface_data_spec(profile, "train", seed)
    test_spec = synthface_data_spec(profile, "test", seed)
    test = SynthFace(**{k: v for k, v in test_spec.items() if k != "kind"})
    distractors = SynthFace(split="test", num_identities=profile.identification_distractors,
                            images_per_identity=1, resolution=profile.resolution, seed=seed,
                            difficulty=profile.difficulty,
                            identity_offset=profile.test_identities)
    train_meta = SynthFace(**{k: v for k, v in train_data.items() if k != "kind"}).metadata
    meta = test.metadata
    check_identity_disjoint(train_meta, meta, names=("train", "test"))
    check_identity_disjoint(meta, distractors.metadata, names=("test", "distractors"))
    folds, per_fold = profile.verification_folds, profile.verification_pairs_per_fold
    difficulty = get_difficulty(profile.difficulty)
    protocols = {
        "lfw": lfw_pairs(meta, folds=folds, pairs_per_fold=per_fold, seed=seed),
        "cfp_fp": cfp_fp_pairs(
            meta, folds=folds, pairs_per_fold=per_fold, seed=seed,
            frontal_max_yaw=min(15.0, (1 - PROFILE_FRACTION) * difficulty.max_yaw),
            profile_min_yaw=min(60.0, PROFILE_FRACTION * difficulty.max_yaw)),
        "agedb": agedb_pairs(meta, min_age_gap=AGE_GAP_FRACTION * difficulty.max_age_drift,
                             folds=folds, pairs_per_fold=per_fold, seed=seed),
        "ijb": ijb_pairs(meta, max_negatives=IJB_MAX_NEGATIVES, seed=seed),
    }
    verification = {name: VerificationSet(name, "test", p) for name, p in protocols.items()}
    ident = identification_split(meta, distractors.metadata, seed=seed)
    return FaceBenchmark(profile, seed, train_data, {"test": test, "distractors": distractors},
                         verification, ident, meta)


def _real_benchmark(profile: Profile, seed: int, spec: dict) -> FaceBenchmark:
    from ..data.formats import load_verification_bin

    root = Path(spec["path"])
    folder = root if root.is_dir() else root.parent
    pools, verification = {}, {}
    for name, filename in REAL_BINS.items():
        path = folder / filename
        if not path.exists():
            continue
        loaded = load_verification_bin(path, image_size=profile.resolution)
        pools[name] = loaded.images
        n = len(loaded.issame)
        fold = (np.arange(n) * profile.verification_folds) // n
        protocol = PairProtocol(name, np.arange(2 * n), np.asarray(loaded.issame, bool),
                                np.full(2 * n, -1), fold)
        verification[name] = VerificationSet(name, name, protocol)
    if not verification:
        raise MissingDataError(f"no verification file ({', '.join(REAL_BINS.values())}) found "
                               f"in {folder}; put the insightface .bin files beside train.rec")
    return FaceBenchmark(profile, seed, spec, pools, verification)


def face_benchmark(profile: str | Profile = "default", seed: int = 0,
                   data: str = "synthface") -> FaceBenchmark:
    """Build the benchmark a notebook trains and evaluates on."""
    profile = get_profile(profile)
    spec = parse_data_arg(data)
    if spec["kind"] == "synthface":
        return _synthface_benchmark(profile, seed)
    if spec["kind"] == "recordio":
        return _real_benchmark(profile, seed, spec)
    raise ConfigError(f"data={data!r}: face notebooks need 'synthface' or 'rec:/path' (an "
                      "insightface folder with train.rec and verification .bin files)")


def training_spec(bench: FaceBenchmark, backbone: str, head: str, *, name: str = "",
                  backbone_kwargs: Mapping[str, Any] | None = None,
                  head_kwargs: Mapping[str, Any] | None = None,
                  train_overrides: Mapping[str, Any] | None = None,
                  **spec_fields: Any) -> ModelSpec:
    """A :class:`ModelSpec` trained on the benchmark's training data with the profile's recipe
    (SGD, momentum 0.9, weight decay and learning rate from the profile, step decay at 50% and
    75% of training, gradient clipping at 5: the ArcFace recipe scaled to the profile)."""
    profile = bench.profile
    kwargs = {"input_size": profile.resolution, "width": profile.backbone_width,
              "embedding_size": profile.embedding_size}
    kwargs.update(backbone_kwargs or {})
    train = {"epochs": profile.epochs, "batch_size": profile.batch_size, "lr": profile.lr,
             "weight_decay": profile.weight_decay, "seed": bench.seed,
             "milestones": [0.5, 0.75]}
    train.update(train_overrides or {})
    return ModelSpec(backbone=backbone, head=head, data=dict(bench.train_data), train=train,
                     backbone_kwargs=kwargs, head_kwargs=dict(head_kwargs or {}),
                     profile=profile.name, name=name, **spec_fields)


# The teacher shared by the distillation notebooks (02 VarGFaceNet, 03 SRRL, 04 ICD-Face): a
# deeper IResNet (50 layers vs the students' 18 or mobile nets), cached once in the model zoo.
# It is trained with CosFace (s=64, m=0.35), not ArcFace: at the default profile's scale,
# ArcFace (s=64, m=0.5) trained from scratch collapsed in some runs (θ_y rising to ~155° and
# LFW-like accuracy falling to 68%), while CosFace converged in every run we made.
TEACHER_BACKBONE = "iresnet50"
TEACHER_WIDTH_FACTOR = 1.0
TEACHER_HEAD = ("cosface", {"s": 64.0, "m": 0.35})


def teacher_spec(bench: FaceBenchmark) -> ModelSpec:
    """The IResNet-50 CosFace teacher at the profile's scale and width."""
    head, head_kwargs = TEACHER_HEAD
    width = TEACHER_WIDTH_FACTOR * bench.profile.backbone_width
    return training_spec(bench, TEACHER_BACKBONE, head, head_kwargs=head_kwargs,
                         backbone_kwargs={"width": width}, name="teacher/iresnet50-cosface")


@dataclass
class Evaluation:
    """A backbone's results on every protocol of a benchmark."""

    name: str
    verification: dict[str, VerificationResult]
    scores: dict[str, np.ndarray]
    issame: dict[str, np.ndarray]
    tar: dict[str, dict[float, float]]
    embeddings: dict[str, np.ndarray] = field(repr=False)
    identification: IdentificationResult | None = None

    def positives(self, protocol: str) -> np.ndarray:
        return self.scores[protocol][self.issame[protocol]]

    def negatives(self, protocol: str) -> np.ndarray:
        return self.scores[protocol][~self.issame[protocol]]

    def roc(self, protocol: str) -> tuple[np.ndarray, np.ndarray]:
        fpr, tpr, _ = roc_curve(self.issame[protocol], self.scores[protocol])
        return fpr, tpr

    def summary(self) -> dict[str, float]:
        """One table row: 10-fold accuracies (%), IJB-like TAR at FAR, rank-1 (%)."""
        row: dict[str, float] = {}
        for name, result in self.verification.items():
            row[f"{PROTOCOL_LABELS.get(name, name)} acc"] = 100 * result.accuracy_mean
        for far in (1e-4, 1e-3, 1e-2):
            if "ijb" in self.tar:
                row[f"IJB-like TAR@{far:g}"] = self.tar["ijb"][far]
        if self.identification is not None:
            row["rank-1"] = 100 * self.identification.rank_accuracies[1]
        return row


def _pool_tensor(pool: Any) -> torch.Tensor | Any:
    if isinstance(pool, torch.Tensor):
        return to_float_image(pool) if pool.dtype == torch.uint8 else pool
    if hasattr(pool, "images_u8"):
        return to_float_image(torch.from_numpy(np.ascontiguousarray(pool.images_u8())))
    return pool


def _scores(embeddings: np.ndarray, protocol: PairProtocol, chunk: int = 65536) -> np.ndarray:
    out = np.empty(protocol.num_pairs, dtype=np.float64)
    first, second = protocol.first, protocol.second
    for start in range(0, protocol.num_pairs, chunk):
        a = embeddings[first[start:start + chunk]]
        b = embeddings[second[start:start + chunk]]
        out[start:start + chunk] = np.einsum("ij,ij->i", a, b)
    return np.clip(out, -1.0, 1.0)


def evaluate(backbone: nn.Module, bench: FaceBenchmark, name: str = "",
             device: torch.device | str = "cpu", batch_size: int = 256) -> Evaluation:
    """Flip-test embeddings of every pool, then every protocol (insightface verification on
    the folded lists; TAR at FAR on all lists; identification with distractors)."""
    embeddings = {
        pool: extract_embeddings(backbone, _pool_tensor(data), batch_size=batch_size,
                                 device=device).cpu().numpy().astype(np.float64)
        for pool, data in bench.pools.items()
    }
    verification, scores, issame, tar = {}, {}, {}, {}
    for key, vset in bench.verification.items():
        protocol = vset.protocol
        emb = embeddings[vset.pool]
        scores[key] = _scores(emb, protocol)
        issame[key] = protocol.issame.astype(bool)
        tar[key] = {far: float(tar_at_far(scores[key], issame[key], far=far)) for far in FARS}
        if protocol.fold is not None:
            verification[key] = evaluate_verification(emb[protocol.rows], protocol.issame,
                                                      nrof_folds=bench.profile.verification_folds)
    identification = None
    if bench.identification is not None:
        split = bench.identification
        test = embeddings["test"]
        identification = evaluate_identification(
            test[split.gallery_rows], split.gallery_labels, test[split.probe_rows],
            split.probe_labels, distractor_emb=embeddings["distractors"][split.distractor_rows])
    return Evaluation(name or getattr(backbone, "name", "model"), verification, scores, issame,
                      tar, embeddings, identification)


def summary_table(evaluations: Mapping[str, Evaluation]) -> pd.DataFrame:
    """Methods as rows, metrics as columns."""
    return pd.DataFrame({name: ev.summary() for name, ev in evaluations.items()}).T


METRICS: dict[str, Callable[..., Any]] = {
    "accuracy": best_threshold_accuracy,
    "auc": roc_auc,
    "mean_positive": mean_positive_similarity,
    "mean_negative": mean_negative_similarity,
    "d_prime": d_prime,
}


def metric_function(metric: str) -> Callable[..., Any]:
    """A paired-bootstrap metric by name; ``"tar@1e-3"`` is TAR at FAR 1e-3."""
    if metric.startswith("tar@"):
        return partial(tar_at_far, far=float(metric[4:]))
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of {sorted(METRICS)} or "
                          "'tar@<far>'")
    return METRICS[metric]


def compare(a: Evaluation, b: Evaluation, protocol: str, metric: str,
            n_boot: int = 2000, seed: int = 0) -> BootstrapResult:
    """Paired bootstrap over the protocol's pairs of metric(a) - metric(b)."""
    return paired_bootstrap(metric_function(metric), a.scores[protocol], b.scores[protocol],
                            a.issame[protocol], n_boot=n_boot, seed=seed)


def evidence(result: BootstrapResult, compared: str) -> dict[str, Any]:
    """A bootstrap result with a note on what was compared, ready for ``Claim.evaluate``."""
    return {**result.to_dict(), "compared": compared}
