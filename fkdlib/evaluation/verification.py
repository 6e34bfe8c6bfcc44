"""1:1 face verification metrics under the insightface protocol.

Accuracy follows ``recognition/arcface_torch/eval/verification.py`` of insightface (itself
from FaceNet's ``lfw.py``, D. Sandberg), the protocol every paper here reports for LFW, CFP-FP
and AgeDB-30:

* pairs sit at rows ``0::2`` and ``1::2`` of the L2-normalised embeddings;
* distance = squared L2 distance, a pair is predicted "same" when ``distance < t``;
* ``t`` runs over ``np.arange(0, 4, 0.01)``;
* scikit-learn ``KFold(n_splits=10, shuffle=False)`` over pair indices, so fold k is the k-th
  contiguous block (the first ``N % 10`` folds one pair longer);
* per fold, the threshold with the best accuracy on the 9 training folds (the first one on a
  tie, ``np.argmax``) is applied to the held-out fold;
* mean and (population, ``np.std``) standard deviation of the 10 fold accuracies.

The ROC, AUC, EER and TAR at FAR are computed on all pairs at once from cosine similarity
(``1 - distance / 2`` for unit vectors), as the IJB benchmarks report them; the TAR at FAR
rule is :func:`fkdlib.evaluation.similarity.tar_at_far`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import auc as trapezoid_area
from sklearn.metrics import roc_curve
from sklearn.model_selection import KFold

from fkdlib.errors import ConfigError, DataFormatError
from fkdlib.evaluation.similarity import pair_scores, tar_at_far

THRESHOLDS = np.arange(0, 4, 0.01)
DEFAULT_FAR_TARGETS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
# Rows whose norm is further than this from 1 are rejected as not L2-normalised.
_NORM_TOLERANCE = 1e-3


# eq=False: fields hold arrays, whose == is elementwise, not a truth value.
@dataclass(frozen=True, eq=False)
class VerificationResult:
    """Verification metrics of one model on one pair list.

    Attributes:
        accuracy_mean, accuracy_std: mean and population std of the fold accuracies.
        fold_accuracies: ``(folds,)`` held-out accuracy of each fold.
        best_thresholds: ``(folds,)`` squared-L2 threshold chosen on each fold's training part.
        fpr, tpr, roc_thresholds: ROC over all pairs from
            :func:`sklearn.metrics.roc_curve` on cosine similarity.
        auc: area under that ROC.
        eer: equal error rate, where FAR = 1 - TAR on the (linearly interpolated) ROC.
        tar_at_far: FAR target -> TAR; NaN where ``far < 1 / num_negative``.
        num_positive, num_negative: pair counts.
    """

    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: np.ndarray
    best_thresholds: np.ndarray
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    roc_thresholds: np.ndarray = field(repr=False)
    auc: float
    eer: float
    tar_at_far: dict[float, float]
    num_positive: int
    num_negative: int

    @property
    def min_far(self) -> float:
        """Lowest FAR the negatives can measure, ``1 / num_negative``."""
        return 1.0 / self.num_negative

    def to_dict(self, include_roc: bool = False) -> dict[str, object]:
        """Flat JSON-ready dict; TARs under keys like ``"tar@far=1e-04"``.

        Args:
            include_roc: also return the ROC arrays as lists (long for big pair lists).
        """
        out: dict[str, object] = {
            "accuracy_mean": self.accuracy_mean,
            "accuracy_std": self.accuracy_std,
            "auc": self.auc,
            "eer": self.eer,
            "num_positive": self.num_positive,
            "num_negative": self.num_negative,
            "min_far": self.min_far,
            "fold_accuracies": self.fold_accuracies.tolist(),
            "best_thresholds": self.best_thresholds.tolist(),
        }
        out.update({f"tar@far={far:.0e}": tar for far, tar in self.tar_at_far.items()})
        if include_roc:
            out.update(fpr=self.fpr.tolist(), tpr=self.tpr.tolist(),
                       roc_thresholds=self.roc_thresholds.tolist())
        return out


def kfold_accuracy(
    distances: np.ndarray,
    issame: np.ndarray,
    nrof_folds: int = 10,
    thresholds: np.ndarray = THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """insightface's cross-validated accuracy (``calculate_roc``) on precomputed distances.

    Args:
        distances: ``(N,)`` squared L2 distance of each pair.
        issame: ``(N,)`` bool.
        nrof_folds: ``KFold`` splits without shuffling; 1 means train = test = all pairs, as
            insightface's ``LFold`` does.
        thresholds: candidate thresholds, "same" when ``distance < t``.

    Returns:
        ``(fold_accuracies, best_thresholds)``, each ``(nrof_folds,)``.
    """
    n = distances.size
    if not isinstance(nrof_folds, (int, np.integer)) or not 1 <= nrof_folds <= n:
        raise ConfigError(
            f"nrof_folds must be an integer in [1, {n}] (the number of pairs), got {nrof_folds!r}"
        )
    indices = np.arange(n)
    splits = (KFold(n_splits=nrof_folds, shuffle=False).split(indices) if nrof_folds > 1
              else [(indices, indices)])
    accuracies, best = np.zeros(nrof_folds), np.zeros(nrof_folds)
    for fold, (train, test) in enumerate(splits):
        train_accuracy = _accuracy_per_threshold(distances[train], issame[train], thresholds)
        best[fold] = thresholds[np.argmax(train_accuracy)]
        accuracies[fold] = np.mean((distances[test] < best[fold]) == issame[test])
    return accuracies, best


def _accuracy_per_threshold(
    distances: np.ndarray, issame: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """Accuracy of ``distance < t`` for every t, by binary search instead of a T x N matrix."""
    positives = np.sort(distances[issame])
    negatives = np.sort(distances[~issame])
    true_accepts = np.searchsorted(positives, thresholds, side="left")
    true_rejects = negatives.size - np.searchsorted(negatives, thresholds, side="left")
    return (true_accepts + true_rejects) / distances.size


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Equal error rate: the point of the ROC where FAR equals FRR = 1 - TAR.

    ``fpr - (1 - tpr)`` grows from -1 to 1 along the ROC; the EER is read where it crosses 0,
    interpolating linearly between the two ROC points around the crossing.
    """
    gap = fpr - (1.0 - tpr)
    after = int(np.argmax(gap >= 0))
    if after == 0:
        return float(fpr[0])
    before = after - 1
    step = (0.0 - gap[before]) / (gap[after] - gap[before])
    return float(fpr[before] + step * (fpr[after] - fpr[before]))


def evaluate_verification(
    embeddings: np.ndarray | torch.Tensor,
    issame: np.ndarray | Sequence[bool],
    nrof_folds: int = 10,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
) -> VerificationResult:
    """Evaluate pair-ordered, L2-normalised embeddings with the insightface protocol.

    See the module docstring for the exact protocol.

    Args:
        embeddings: ``(2N, D)`` unit rows, pair ``k`` at rows ``2k`` and ``2k + 1`` (e.g.
            :func:`~fkdlib.evaluation.embed.pair_embeddings` of
            :func:`~fkdlib.evaluation.embed.extract_embeddings`).
        issame: ``(N,)`` bool.
        nrof_folds: cross-validation folds for the accuracy (insightface: 10).
        far_targets: FARs at which to report the TAR.

    Raises:
        DataFormatError: odd row count, ``issame`` length mismatch, NaN/inf, rows that are
            not unit length (normalise them: the fixed threshold grid 0..4 assumes unit
            vectors, so un-normalised rows are a bug upstream we refuse to hide), or a pair
            list without positives or without negatives.
        ConfigError: bad ``nrof_folds`` or a FAR target outside (0, 1).
    """
    scores, same = pair_scores(embeddings, issame, "evaluate_verification")
    emb = np.asarray(
        embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) else embeddings,
        dtype=np.float64,
    )
    norms = np.linalg.norm(emb, axis=1)
    off = np.abs(norms - 1.0) > _NORM_TOLERANCE
    if off.any():
        raise DataFormatError(
            f"evaluate_verification: {int(off.sum())} of {norms.size} embedding rows are not "
            f"L2-normalised (norms {norms.min():.4g}..{norms.max():.4g}); pass "
            "torch.nn.functional.normalize(emb, dim=1) or use extract_embeddings"
        )
    num_positive = int(same.sum())
    num_negative = int(same.size - num_positive)
    if num_positive == 0 or num_negative == 0:
        raise DataFormatError(
            f"evaluate_verification: need both positive and negative pairs, got "
            f"{num_positive} positive and {num_negative} negative"
        )
    for far in far_targets:
        if not 0 < far < 1:
            raise ConfigError(f"evaluate_verification: FAR targets must be in (0, 1), got {far!r}")

    distances = np.sum((emb[0::2] - emb[1::2]) ** 2, axis=1)
    fold_accuracies, best_thresholds = kfold_accuracy(distances, same, nrof_folds)
    fpr, tpr, roc_thresholds = roc_curve(same, scores)
    return VerificationResult(
        accuracy_mean=float(np.mean(fold_accuracies)),
        accuracy_std=float(np.std(fold_accuracies)),
        fold_accuracies=fold_accuracies,
        best_thresholds=best_thresholds,
        fpr=fpr,
        tpr=tpr,
        roc_thresholds=roc_thresholds,
        auc=float(trapezoid_area(fpr, tpr)),
        eer=equal_error_rate(fpr, tpr),
        tar_at_far={float(far): float(tar_at_far(scores, same, far=far)) for far in far_targets},
        num_positive=num_positive,
        num_negative=num_negative,
    )
