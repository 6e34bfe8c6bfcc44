"""Evaluating classifiers and comparing a student's outputs with its teacher's (SRRL, Yang et
al. ICLR 2021, thesis ch. 4, Tables 4.2-4.5): top-k accuracy on a test split, per-image
teacher-student KL and label cross-entropy, and the teacher-student feature distance after the
best linear alignment."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LinearRegression
from torch import nn

from ..data.transforms import to_float_image


@dataclass(eq=False)
class ClassificationEvaluation:
    """A classifier's results on a CIFAR test split (thesis Tables 4.2–4.4)."""

    name: str
    logits: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)

    @property
    def correct(self) -> np.ndarray:
        """Top-1 correctness of each test image."""
        return self.logits.argmax(axis=1) == self.labels

    def top_k(self, k: int) -> float:
        """Fraction of test images whose label is among the ``k`` largest logits."""
        k = min(k, self.logits.shape[1])
        top = np.argpartition(-self.logits, k - 1, axis=1)[:, :k]
        return float((top == self.labels[:, None]).any(axis=1).mean())

    def summary(self) -> dict[str, float]:
        """One table row: top-1 and top-5 accuracy (%)."""
        return {"Top-1": 100 * self.top_k(1), "Top-5": 100 * self.top_k(5)}


@torch.no_grad()
def model_outputs(backbone: nn.Module, head: nn.Module, images_u8: torch.Tensor,
                  batch_size: int = 256, device: str | torch.device = "cpu"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(h, logits)`` of every image, in eval mode, without flip: the raw penultimate
    feature ``h`` (the embedding) and the head's inference logits (``s·cos θ`` for margin
    heads, ``W h + b`` for a softmax head)."""
    backbone.eval().to(device)
    head.eval().to(device)
    features, logits = [], []
    for start in range(0, len(images_u8), batch_size):
        batch = to_float_image(images_u8[start:start + batch_size]).to(device)
        h = backbone(batch)
        features.append(h.float().cpu())
        logits.append(head(h).float().cpu())
    backbone.cpu(), head.cpu()
    return torch.cat(features).double().numpy(), torch.cat(logits).double().numpy()


def teacher_kl(teacher_logits: np.ndarray, student_logits: np.ndarray) -> np.ndarray:
    """Per image ``KL(softmax(z_T) ‖ softmax(z_S))`` in nats (T = 1; thesis Table 4.3)."""
    teacher = torch.as_tensor(teacher_logits, dtype=torch.float64)
    student = torch.as_tensor(student_logits, dtype=torch.float64)
    log_t, log_s = F.log_softmax(teacher, dim=1), F.log_softmax(student, dim=1)
    return (log_t.exp() * (log_t - log_s)).sum(dim=1).numpy()


def label_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image cross-entropy of the logits with the label (thesis Table 4.3)."""
    return F.cross_entropy(torch.tensor(logits, dtype=torch.float64),
                           torch.tensor(labels, dtype=torch.long), reduction="none").numpy()


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def fitted_l2(student_fit: np.ndarray, teacher_fit: np.ndarray, student_test: np.ndarray,
              teacher_test: np.ndarray) -> np.ndarray:
    """Per test image ``‖ĥ_T − (A ĥ_S + b)‖²`` on L2-normalised features (thesis Table 4.5).

    The student's features live in their own basis (the connector that mapped them to the
    teacher's during training is not part of the trained model), so the affine map ``A, b``
    is fitted by least squares on separate images (``*_fit``) and the distance measured on
    the test images: every student, distilled or not, gets the same best linear alignment.
    Normalised features compare directions, what a cosine face verifier uses.
    """
    regression = LinearRegression().fit(unit_rows(student_fit), unit_rows(teacher_fit))
    residual = unit_rows(teacher_test) - regression.predict(unit_rows(student_test))
    return (residual ** 2).sum(axis=1)

