"""Closed-set 1:N identification: rank-k accuracy and the CMC curve (MegaFace protocol).

Each probe is compared by cosine similarity with every gallery image and every distractor
(MegaFace, Kemelmacher-Shlizerman et al. 2016: distractors are other people, so they never
match). A probe's rank is 1 + the number of non-matching entries that score at least as high
as its best-scoring mate. Ties count against the probe: a collapsed model that maps every face
to the same point then gets rank = gallery size, not a perfect score. The CMC curve is the
fraction of probes with rank <= k for k = 1 .. gallery size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fkdlib.errors import ConfigError, DataFormatError

# Probe-by-gallery similarities computed at once, to bound memory with a million distractors.
_BLOCK_ELEMENTS = 1 << 22


# eq=False: fields hold arrays, whose == is elementwise, not a truth value.
@dataclass(frozen=True, eq=False)
class IdentificationResult:
    """Identification metrics.

    Attributes:
        rank_accuracies: rank k -> fraction of probes whose mate is within the top k.
        cmc: ``(gallery_size,)`` cumulative match characteristic, ``cmc[k-1]`` = rank-k accuracy.
        probe_ranks: ``(num_probes,)`` rank of each probe's best mate (1 = first).
        num_probes: number of probes.
        gallery_size: enrolled images plus distractors.
        num_distractors: distractors among ``gallery_size``.
    """

    rank_accuracies: dict[int, float]
    cmc: np.ndarray = field(repr=False)
    probe_ranks: np.ndarray = field(repr=False)
    num_probes: int
    gallery_size: int
    num_distractors: int

    def to_dict(self) -> dict[str, object]:
        """Flat JSON-ready dict with keys like ``"rank1"``."""
        out: dict[str, object] = {f"rank{k}": v for k, v in self.rank_accuracies.items()}
        out.update(num_probes=self.num_probes, gallery_size=self.gallery_size,
                   num_distractors=self.num_distractors)
        return out


def _unit_rows(array: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    values = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else array
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise DataFormatError(f"evaluate_identification: {name} must be (n, D), got shape "
                              f"{values.shape}")
    if not np.isfinite(values).all():
        raise DataFormatError(f"evaluate_identification: {name} holds NaN or inf")
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    if (norms == 0).any():
        raise DataFormatError(f"evaluate_identification: {name} has {int((norms == 0).sum())} "
                              "all-zero row(s); cosine similarity is undefined")
    return values / norms


def evaluate_identification(
    gallery_emb: np.ndarray | torch.Tensor,
    gallery_labels: np.ndarray | Sequence,
    probe_emb: np.ndarray | torch.Tensor,
    probe_labels: np.ndarray | Sequence,
    distractor_emb: np.ndarray | torch.Tensor | None = None,
    ranks: Sequence[int] = (1, 5, 10),
) -> IdentificationResult:
    """Rank-k identification accuracy and CMC with cosine similarity (see module docstring).

    Args:
        gallery_emb: ``(G, D)`` enrolled embeddings; ``gallery_labels`` their identities
            (several images per identity allowed).
        probe_emb: ``(P, D)`` query embeddings; ``probe_labels`` their identities, each of
            which must be enrolled.
        distractor_emb: ``(M, D)`` embeddings of other identities, or None.
        ranks: ranks k to report (a k beyond the gallery size gives 1.0).

    Raises:
        DataFormatError: shapes disagree, values are not finite, or a probe has no mate.
        ConfigError: a rank below 1.
    """
    gallery = _unit_rows(gallery_emb, "gallery_emb")
    probes = _unit_rows(probe_emb, "probe_emb")
    distractors = (np.empty((0, gallery.shape[1])) if distractor_emb is None
                   else _unit_rows(distractor_emb, "distractor_emb"))
    if gallery.shape[0] == 0 or probes.shape[0] == 0:
        raise DataFormatError(
            f"evaluate_identification: need at least one gallery row and one probe, got "
            f"{gallery.shape[0]} and {probes.shape[0]}"
        )
    gallery_ids = np.asarray(gallery_labels)
    probe_ids = np.asarray(probe_labels)
    if gallery_ids.shape != (gallery.shape[0],) or probe_ids.shape != (probes.shape[0],):
        raise DataFormatError(
            f"evaluate_identification: need one label per embedding, got {gallery_ids.shape} "
            f"labels for {gallery.shape[0]} gallery rows and {probe_ids.shape} for "
            f"{probes.shape[0]} probes"
        )
    dims = {gallery.shape[1], probes.shape[1], distractors.shape[1]}
    if len(dims) != 1:
        raise DataFormatError(f"evaluate_identification: embedding sizes differ: {sorted(dims)}")
    orphans = ~np.isin(probe_ids, gallery_ids)
    if orphans.any():
        raise DataFormatError(
            f"evaluate_identification: {int(orphans.sum())} probe(s) have no mate in the "
            f"gallery (identities {np.unique(probe_ids[orphans])[:10].tolist()}); enroll "
            "every probe identity"
        )
    bad_ranks = [k for k in ranks if not isinstance(k, (int, np.integer)) or k < 1]
    if bad_ranks:
        raise ConfigError(f"evaluate_identification: ranks must be integers >= 1, got "
                          f"{bad_ranks}")

    gallery_size = gallery.shape[0] + distractors.shape[0]
    probe_ranks = np.empty(probes.shape[0], dtype=np.int64)
    block = max(1, _BLOCK_ELEMENTS // gallery_size)
    for start in range(0, probes.shape[0], block):
        stop = start + block
        similarity = probes[start:stop] @ gallery.T
        mates = probe_ids[start:stop, None] == gallery_ids[None, :]
        best_mate = np.where(mates, similarity, -np.inf).max(axis=1, keepdims=True)
        impostors_above = ((similarity >= best_mate) & ~mates).sum(axis=1)
        if distractors.shape[0]:
            impostors_above += (probes[start:stop] @ distractors.T >= best_mate).sum(axis=1)
        probe_ranks[start:stop] = 1 + impostors_above

    cmc = np.cumsum(np.bincount(probe_ranks, minlength=gallery_size + 1)[1:]) / probe_ranks.size
    return IdentificationResult(
        rank_accuracies={int(k): float(np.mean(probe_ranks <= k)) for k in ranks},
        cmc=cmc,
        probe_ranks=probe_ranks,
        num_probes=int(probe_ranks.size),
        gallery_size=int(gallery_size),
        num_distractors=int(distractors.shape[0]),
    )
