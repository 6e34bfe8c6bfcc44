"""ICD-Face (Yu et al., ICCV 2023): feature-consistency distillation (FCD) plus intra-class
compactness distillation (ICD) with per-class feature banks.

FCD aligns each student embedding with the teacher's embedding of the same image. The paper
observes that under FCD alone a small student keeps the teacher's negative-pair similarity
distribution but has clearly lower positive-pair similarities; ICD distils the distribution of
positive-pair similarities. Because a batch holds too few positive pairs, each network keeps a
feature bank ``[num_classes, K, dim]`` filled FIFO by ground-truth label, and each batch
feature is paired with the bank entries of its class.

The paper publishes neither code nor these settings; our choices:

- **FCD** is the mean squared L2 distance between L2-normalised embeddings (``2 − 2 cos``,
  the same quantity as VarGFaceNet's angular loss), through a trained linear projection of
  the student's embedding when the sizes differ. Weight :data:`FCD_WEIGHT` = 7, VarGFaceNet's α
  for this same quantity.
- **Banks** store L2-normalised, detached embeddings, ``K = 8`` slots per class
  (:data:`ICD_SLOTS`; the notebook ablates K). Each network's similarities are computed in its
  own space (the student's raw embedding, not the FCD projection, which is what is evaluated).
- **Order**: the loss of a batch uses the banks as they were before the batch, then writes the
  batch (only in training mode). A sample is thus never paired with itself (a similarity of 1
  for both networks, which carries no information), and a class seen for the first time
  contributes nothing.
- **Soft histogram**: Gaussian kernels at :data:`ICD_BINS` = 41 centres evenly spaced on
  [-1, 1] (step 0.05), bandwidth σ = :data:`ICD_BANDWIDTH` = 0.05 (one step). Each similarity
  spreads one unit of mass over the bins (its kernel row is normalised with a softmax over
  bins, stable for any σ) and a sample's histogram is the mean over its valid entries.
- **ICD loss**: ``KL(teacher ‖ student)`` of the histograms with ε = 1e-8 inside the
  logarithms, the teacher detached, averaged over the samples that have at least one valid
  bank entry (0 when none has). Weight :data:`ICD_WEIGHT` = 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .angular import AngularLoss
from .base import Features, feature_shape, register_loss, require_feature, wide

FCD_WEIGHT = 7.0
ICD_WEIGHT = 1.0
ICD_SLOTS = 8
ICD_BINS = 41
ICD_BANDWIDTH = 0.05
ICD_EPS = 1e-8
PAPER_NUM_CLASSES = 85742  # MS1MV2 (MS-Celeb-1M cleaned by insightface), ICD-Face's training set
PAPER_EMBEDDING_SIZE = 512


class FeatureBank(nn.Module):
    """Per-class FIFO memory of L2-normalised features.

    Buffers (saved in checkpoints, so a resumed run continues with the same bank):
    ``features`` ``[C, K, D]``, ``pointer`` ``[C]`` (the slot written next, which is the oldest
    once the class is full) and ``valid`` ``[C, K]`` (slots written at least once).

    Args:
        num_classes, slots_per_class, dim: C, K, D.
        dtype: storage type of the features (float16 halves the memory at paper scale).
        device: where the buffers live.
    """

    def __init__(self, num_classes: int, slots_per_class: int, dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        for name, value in (("num_classes", num_classes), ("slots_per_class", slots_per_class),
                            ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"FeatureBank {name} must be a positive integer, got {value!r}")
        self.num_classes, self.slots_per_class, self.dim = num_classes, slots_per_class, dim
        self.register_buffer("features", torch.zeros(num_classes, slots_per_class, dim,
                                                     dtype=dtype, device=device))
        self.register_buffer("pointer", torch.zeros(num_classes, dtype=torch.long, device=device))
        self.register_buffer("valid", torch.zeros(num_classes, slots_per_class, dtype=torch.bool,
                                                  device=device))

    def _check(self, labels: Tensor, features: Tensor | None = None) -> None:
        if labels.dim() != 1:
            raise ConfigError(f"labels must be a 1-D tensor of class ids, got shape "
                              f"{tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ConfigError(f"labels must lie in [0, {self.num_classes - 1}] for a bank of "
                              f"{self.num_classes} classes, got [{int(labels.min())}, "
                              f"{int(labels.max())}]")
        if features is not None and (features.dim() != 2 or features.shape[0] != len(labels)
                                     or features.shape[1] != self.dim):
            raise ConfigError(f"features must have shape ({len(labels)}, {self.dim}), got "
                              f"{tuple(features.shape)}")

    @torch.no_grad()
    def update(self, features: Tensor, labels: Tensor) -> None:
        """Write each feature (normalised, detached) into its class's FIFO, in batch order.

        Several samples of one class are written to consecutive slots; when a class has more
        than K samples in the batch only its last K remain, exactly as sequential writes would
        leave it.
        """
        labels = labels.to(self.pointer.device).long()
        self._check(labels, features)
        if not labels.numel():
            return
        features = F.normalize(wide(features.detach()), dim=1).to(self.features)
        order = torch.sort(labels, stable=True).indices
        sorted_labels = labels[order]
        classes, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(labels), device=labels.device) - starts.repeat_interleave(counts)
        keep = rank >= counts.repeat_interleave(counts) - self.slots_per_class
        slots = (self.pointer[sorted_labels] + rank) % self.slots_per_class
        rows, slots = sorted_labels[keep], slots[keep]
        self.features[rows, slots] = features[order][keep]
        self.valid[rows, slots] = True
        self.pointer[classes] = (self.pointer[classes] + counts) % self.slots_per_class

    def entries(self, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The bank of each sample's class: features ``[B, K, D]`` and validity ``[B, K]``."""
        labels = labels.to(self.pointer.device).long()
        self._check(labels)
        return self.features[labels], self.valid[labels]

    def memory_bytes(self) -> int:
        """Bytes held by the three buffers."""
        return sum(buffer.numel() * buffer.element_size() for buffer in self.buffers())

    @staticmethod
    def estimate_bytes(slots_per_class: int, num_classes: int = PAPER_NUM_CLASSES,
                       dim: int = PAPER_EMBEDDING_SIZE, dtype: torch.dtype = torch.float16) -> int:
        """Bytes one bank would hold; the defaults are ICD-Face's scale (85,742 MS1MV2
        identities, 512-d, fp16): ``estimate_bytes(8)`` = 703,770,336 bytes (671 MiB) per
        network, twice that for the teacher's and the student's banks together."""
        features = num_classes * slots_per_class * dim * dtype.itemsize
        pointer = num_classes * torch.long.itemsize
        valid = num_classes * slots_per_class * torch.bool.itemsize
        return features + pointer + valid

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, slots_per_class={self.slots_per_class}, "
                f"dim={self.dim}, dtype={self.features.dtype}")


def soft_histogram(similarities: Tensor, mask: Tensor, bins: int = ICD_BINS,
                   bandwidth: float = ICD_BANDWIDTH) -> tuple[Tensor, Tensor]:
    """Differentiable Gaussian-kernel histogram of each row's similarities over [-1, 1].

    Args:
        similarities: ``[B, K]`` cosine similarities.
        mask: ``[B, K]`` bool, which entries count.
        bins: number of kernel centres, evenly spaced from -1 to 1 (both included).
        bandwidth: the kernels' standard deviation σ.

    Returns:
        ``(histograms [B, bins], has_entries [B])``: each histogram sums to one over the bins
        (every valid similarity contributes one unit of mass, spread by its kernel); a row
        without valid entries is all zeros and flagged False.
    """
    if bins < 2 or not bandwidth > 0:
        raise ConfigError(f"soft_histogram needs bins >= 2 and bandwidth > 0, got {bins!r} and "
                          f"{bandwidth!r}")
    if similarities.shape != mask.shape:
        raise ConfigError(f"similarities {tuple(similarities.shape)} and mask "
                          f"{tuple(mask.shape)} must have the same shape")
    centres = torch.linspace(-1.0, 1.0, bins, device=similarities.device,
                             dtype=wide(similarities).dtype)
    logits = -0.5 * ((wide(similarities).unsqueeze(-1) - centres) / bandwidth).pow(2)
    per_entry = torch.softmax(logits, dim=-1) * mask.unsqueeze(-1)
    counts = mask.sum(dim=1)
    histograms = per_entry.sum(dim=1) / counts.clamp(min=1).unsqueeze(1)
    return histograms, counts > 0


def histogram_kl(teacher: Tensor, student: Tensor, eps: float = ICD_EPS) -> Tensor:
    """Per-row ``KL(teacher ‖ student) = Σ_b p_t log((p_t + ε)/(p_s + ε))``."""
    return (teacher * (torch.log(teacher + eps) - torch.log(student + eps))).sum(dim=1)


class FCDLoss(AngularLoss):
    """ICD-Face's feature-consistency distillation: ``mean ‖ t/‖t‖ − s/‖s‖ ‖²`` on the
    embeddings, through a trained linear projection when the sizes differ."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__(student_dim, teacher_dim, project=student_dim != teacher_dim)


class ICDLoss(nn.Module):
    """Intra-class compactness distillation with a teacher and a student feature bank.

    For each sample: cosine similarities of its embedding to the valid bank entries of its
    class (teacher feature vs teacher bank, student feature vs student bank), soft histograms
    of both, ``KL(teacher ‖ student)`` with the teacher detached; mean over samples with at
    least one valid entry. Then (in training mode) both banks receive the batch.

    Args:
        num_classes: training identities.
        slots_per_class: K.
        dim_s, dim_t: embedding sizes of student and teacher.
        bins, bandwidth: of :func:`soft_histogram`.
        bank_dtype: storage type of the banks.
    """

    def __init__(self, num_classes: int, slots_per_class: int, dim_s: int, dim_t: int,
                 bins: int = ICD_BINS, bandwidth: float = ICD_BANDWIDTH,
                 bank_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if bins < 2 or not bandwidth > 0:
            raise ConfigError(f"ICD needs bins >= 2 and bandwidth > 0, got {bins!r} and "
                              f"{bandwidth!r}")
        self.bins, self.bandwidth = int(bins), float(bandwidth)
        self.teacher_bank = FeatureBank(num_classes, slots_per_class, dim_t, bank_dtype)
        self.student_bank = FeatureBank(num_classes, slots_per_class, dim_s, bank_dtype)

    def similarity_histograms(self, student_embeddings: Tensor, teacher_embeddings: Tensor,
                              labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(teacher_hist, student_hist, has_entries)`` against the banks as they are now."""
        student_unit = F.normalize(wide(student_embeddings), dim=1)
        teacher_unit = F.normalize(wide(teacher_embeddings.detach()), dim=1)
        teacher_bank, mask = self.teacher_bank.entries(labels)
        student_bank, _ = self.student_bank.entries(labels)
        teacher_sims = torch.einsum("bd,bkd->bk", teacher_unit,
                                    teacher_bank.to(teacher_unit.dtype))
        student_sims = torch.einsum("bd,bkd->bk", student_unit,
                                    student_bank.to(student_unit.dtype))
        teacher_hist, has_entries = soft_histogram(teacher_sims, mask, self.bins, self.bandwidth)
        student_hist, _ = soft_histogram(student_sims, mask, self.bins, self.bandwidth)
        return teacher_hist, student_hist, has_entries

    def forward(self, student: Features, teacher: Features, labels: Tensor) -> Tensor:
        student_embeddings = require_feature(student, "embedding", "student")
        teacher_embeddings = require_feature(teacher, "embedding", "teacher").detach()
        teacher_hist, student_hist, has_entries = self.similarity_histograms(
            student_embeddings, teacher_embeddings, labels)
        divergence = histogram_kl(teacher_hist, student_hist) * has_entries
        loss = divergence.sum() / has_entries.sum().clamp(min=1)
        if self.training:
            self.teacher_bank.update(teacher_embeddings, labels)
            self.student_bank.update(student_embeddings, labels)
        return loss

    def extra_repr(self) -> str:
        return f"bins={self.bins}, bandwidth={self.bandwidth}"


@register_loss("fcd", default_weight=FCD_WEIGHT)
def _build_fcd(student_backbone: nn.Module, teacher_backbone: nn.Module,
               teacher_head: nn.Module) -> FCDLoss:
    return FCDLoss(feature_shape(student_backbone, "embedding", "student")[0],
                   feature_shape(teacher_backbone, "embedding", "teacher")[0])


@register_loss("icd", default_weight=ICD_WEIGHT)
def _build_icd(student_backbone: nn.Module, teacher_backbone: nn.Module, teacher_head: nn.Module,
               slots_per_class: int = ICD_SLOTS, bins: int = ICD_BINS,
               bandwidth: float = ICD_BANDWIDTH, bank_dtype: str = "float32") -> ICDLoss:
    num_classes = getattr(teacher_head, "num_classes", None)
    if not isinstance(num_classes, int):
        raise ConfigError(f"ICD sizes its banks from the teacher head's num_classes; "
                          f"{type(teacher_head).__name__} has none")
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if bank_dtype not in dtypes:
        raise ConfigError(f"bank_dtype must be one of {', '.join(dtypes)}, got {bank_dtype!r}")
    return ICDLoss(num_classes, slots_per_class,
                   feature_shape(student_backbone, "embedding", "student")[0],
                   feature_shape(teacher_backbone, "embedding", "teacher")[0],
                   bins, bandwidth, dtypes[bank_dtype])
