"""Distillation with extra unlabeled data and mixup (SRRL thesis §4.2.2, Eq. 4.9-4.12, Alg. 2).

``L = L_CE(D) + γ · L_KD(D) + λ · L_KD(U) + μ · L_mixup``:

- ``L_CE(D) + γ · L_KD(D)``: the labeled terms of an ordinary :class:`Distiller` (its
  ``losses``, e.g. ``{"kd": (KDLoss(), γ)}``);
- ``L_KD(U)``: Hinton KD (temperature T) on a batch of unlabeled images, the teacher's
  softened outputs serving as pseudo-labels (Eq. 4.9);
- ``L_mixup`` (Eq. 4.11-4.12): each labeled image is mixed with the unlabeled image drawn for
  it, ``x' = λ x_l + (1 − λ) x_u`` with ``λ ~ Beta(α, α)``, ``λ = max(λ, 1 − λ)`` (the labeled
  image dominates), and the student's softened output on ``x'`` is pulled toward
  ``y' = λ p_t(x_l) + (1 − λ) p_t(x_u)``, the same mixture of the teacher's softened
  predictions, by ``T² · KL(y' ‖ softmax(z_s(x')/T))``. Algorithm 2 sums all the terms, so
  μ = 1 by default.

α is not given in the thesis; we use α = 1 (mixup's CIFAR setting), named here and in the
notebook.

Determinism: the unlabeled images are an in-memory uint8 tensor (N, 3, H, W). At the n-th
forward call the distiller draws the batch indices (uniformly, without replacement when N is
at least the batch size), the horizontal flips (p = 0.5, as the trainer does for labeled data)
and λ from a NumPy generator seeded with ``(seed, n)``. The counter ``n`` is a buffer, so it
is saved in the trainer's checkpoints: a resumed run draws exactly the batches the
uninterrupted run would have drawn, independently of every other random number generator.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.transforms import to_float_image
from ..errors import ConfigError
from .base import Distiller, check_weight, wide
from .kd import KD_TEMPERATURE, kd_divergence, soft_target_kl

MIXUP_ALPHA = 1.0


class UnlabeledMixupDistiller(Distiller):
    """A :class:`Distiller` that adds KD on unlabeled images and labeled–unlabeled mixup.

    Args:
        student_backbone, student_head, teacher_backbone, teacher_head, losses, ce_weight:
            as for :class:`Distiller` (the labeled terms).
        unlabeled_images: uint8 tensor (N, 3, H, W) of unlabeled images, same size as the
            labeled ones (e.g. SynthFace identities disjoint from the labeled ones).
        unlabeled_weight: λ of ``L_KD(U)`` (0 skips it).
        mixup_weight: μ of ``L_mixup`` (0 skips it).
        mixup_alpha: α of ``Beta(α, α)``.
        temperature: T of both unlabeled terms.
        seed: seeds the unlabeled draws (see the module docstring).
        hflip: flip each unlabeled image with probability 0.5.
    """

    def __init__(self, student_backbone: nn.Module, student_head: nn.Module,
                 teacher_backbone: nn.Module, teacher_head: nn.Module,
                 unlabeled_images: Tensor,
                 losses: Mapping[str, tuple[nn.Module, float]] | None = None,
                 ce_weight: float = 1.0, unlabeled_weight: float = 1.0,
                 mixup_weight: float = 1.0, mixup_alpha: float = MIXUP_ALPHA,
                 temperature: float = KD_TEMPERATURE, seed: int = 0, hflip: bool = True) -> None:
        super().__init__(student_backbone, student_head, teacher_backbone, teacher_head,
                         losses or {}, ce_weight)
        if (not isinstance(unlabeled_images, Tensor) or unlabeled_images.dtype != torch.uint8
                or unlabeled_images.dim() != 4 or len(unlabeled_images) == 0):
            found = (f"{unlabeled_images.dtype} {tuple(unlabeled_images.shape)}"
                     if isinstance(unlabeled_images, Tensor) else type(unlabeled_images).__name__)
            raise ConfigError(f"unlabeled_images must be a non-empty uint8 tensor (N, C, H, W), "
                              f"got {found}")
        if not mixup_alpha > 0 or not temperature > 0:
            raise ConfigError(f"mixup_alpha and temperature must be > 0, got {mixup_alpha!r} "
                              f"and {temperature!r}")
        # a plain attribute, not a buffer: the images are data, not state for checkpoints
        self.unlabeled_images = unlabeled_images
        self.unlabeled_weight = check_weight("kd_unlabeled", unlabeled_weight)
        self.mixup_weight = check_weight("kd_mixup", mixup_weight)
        self.mixup_alpha, self.temperature = float(mixup_alpha), float(temperature)
        self.seed, self.hflip = int(seed), bool(hflip)
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))

    def draw_unlabeled(self, batch_size: int) -> tuple[Tensor, float]:
        """The next unlabeled batch (float, [-1, 1], on the CPU) and the mixup ``λ``.

        Advances the draw counter; the result depends only on ``(seed, counter)``.
        """
        rng = np.random.default_rng([self.seed, int(self.draws)])
        self.draws += 1
        count = len(self.unlabeled_images)
        index = rng.choice(count, size=batch_size, replace=batch_size > count)
        images = to_float_image(self.unlabeled_images[torch.from_numpy(index)])
        if self.hflip:
            flip = torch.from_numpy(rng.random(batch_size) < 0.5)
            images[flip] = images[flip].flip(-1)
        lam = float(rng.beta(self.mixup_alpha, self.mixup_alpha))
        return images, max(lam, 1.0 - lam)

    def forward(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Labeled terms plus ``"kd_unlabeled"`` and ``"kd_mixup"``."""
        logits = self.needs_logits
        # the mixup target mixes the teacher's softened predictions on the labeled images too
        student = self.student_outputs(images, logits)
        teacher = self.teacher_outputs(images, logits or bool(self.mixup_weight))
        terms = self.loss_terms(student, teacher, labels)
        if not (self.unlabeled_weight or self.mixup_weight):
            return terms
        unlabeled, lam = self.draw_unlabeled(len(images))
        if unlabeled.shape[1:] != images.shape[1:]:
            raise ConfigError(f"unlabeled images have shape {tuple(unlabeled.shape[1:])} but the "
                              f"labeled ones {tuple(images.shape[1:])}; resize one set")
        unlabeled = unlabeled.to(device=images.device, dtype=images.dtype)
        teacher_unlabeled = self.teacher_outputs(unlabeled)["logits"]
        if self.unlabeled_weight:
            student_unlabeled = self.student_head(self.student_backbone(unlabeled))
            terms["kd_unlabeled"] = self.unlabeled_weight * kd_divergence(
                student_unlabeled, teacher_unlabeled, self.temperature)
        if self.mixup_weight:
            mixed = lam * images + (1.0 - lam) * unlabeled
            target = (lam * F.softmax(wide(teacher["logits"]) / self.temperature, dim=1)
                      + (1.0 - lam) * F.softmax(wide(teacher_unlabeled) / self.temperature,
                                                dim=1))
            student_mixed = self.student_head(self.student_backbone(mixed))
            terms["kd_mixup"] = self.mixup_weight * soft_target_kl(
                student_mixed, target, self.temperature)
        return terms
