"""Trainer callbacks: evaluation and statistics recorded per epoch, in the history table.

Callbacks follow the small protocol of :class:`~fkdlib.training.trainer.Trainer`: an optional
``on_epoch_end(trainer, epoch) -> dict`` whose entries become columns of the epoch's history
row (so they are cached with a model in the zoo and plotted by the notebooks). Monitors that a
model's spec can ask for by name (``ModelSpec.monitors``) are registered in :data:`MONITORS`
as ``factory(train_set, seed=...)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from ..data.transforms import to_float_image
from ..registry import Registry

MONITORS: Registry = Registry("training monitor", skip=1)


def student_modules(task: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The (backbone, head) being trained in a task: ``backbone``/``head`` of a
    classification task, ``student_backbone``/``student_head`` of a distiller."""
    for backbone, head in (("backbone", "head"), ("student_backbone", "student_head")):
        if hasattr(task, backbone) and hasattr(task, head):
            return getattr(task, backbone), getattr(task, head)
    raise TypeError(f"{type(task).__name__} has neither backbone/head nor "
                    "student_backbone/student_head to monitor")


@torch.no_grad()
def target_angles(backbone: nn.Module, head: nn.Module, images: torch.Tensor,
                  labels: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Angles θ_y (degrees) between embeddings and their class weight W_y (ArcFace Fig. 4).

    The angle is that of the normalised vectors, ``arccos(<x/‖x‖, W_y/‖W_y‖>)``, for every head
    (for plain Softmax it ignores the bias and the norms, as the paper's statistics do).
    """
    was_training = backbone.training, head.training
    backbone.eval(), head.eval()
    weight = head.normalized_weight()
    angles = []
    for start in range(0, len(labels), batch_size):
        x = images[start:start + batch_size].to(weight.device)
        emb = nn.functional.normalize(backbone(x), dim=1)
        cos = (emb * weight[labels[start:start + batch_size].to(weight.device)]).sum(1)
        angles.append(torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0))).cpu())
    backbone.train(was_training[0]), head.train(was_training[1])
    return torch.cat(angles).double().numpy()


class TargetAngleMonitor:
    """Records θ_y of a fixed sample of training images at the end of every epoch.

    History columns: ``theta_mean``, ``theta_median`` and ``theta_deg`` (the per-sample angles
    as a JSON list, the same samples at every epoch, so early and late epochs can be compared
    pair by pair).
    """

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor,
                 modules: Callable[[nn.Module], tuple[nn.Module, nn.Module]] = student_modules):
        self.images = to_float_image(images_u8)
        self.labels = labels.long()
        self.modules = modules

    @classmethod
    def from_dataset(cls, dataset, num_samples: int = 512, seed: int = 0) -> TargetAngleMonitor:
        """A fixed random sample of a dataset that exposes ``images_u8()`` and ``metadata``."""
        from ..data import dataset_labels

        labels = dataset_labels(dataset)
        rng = np.random.default_rng(seed)
        index = np.sort(rng.choice(len(labels), size=min(num_samples, len(labels)),
                                   replace=False))
        images = torch.from_numpy(np.ascontiguousarray(dataset.images_u8()[index]))
        return cls(images, torch.from_numpy(labels[index]))

    def on_epoch_end(self, trainer, epoch: int) -> dict[str, float | str]:
        backbone, head = self.modules(trainer.task)
        angles = target_angles(backbone, head, self.images, self.labels)
        return {"theta_mean": float(angles.mean()), "theta_median": float(np.median(angles)),
                "theta_deg": json.dumps(np.round(angles, 2).tolist())}


MONITORS.add("target_angles", TargetAngleMonitor.from_dataset)


def angles_from_history(history, epoch: int) -> np.ndarray:
    """The per-sample θ_y recorded at ``epoch`` (1-based; ``-1`` for the last)."""
    row = history.iloc[epoch - 1] if epoch > 0 else history.iloc[epoch]
    return np.asarray(json.loads(row["theta_deg"]), dtype=np.float64)
