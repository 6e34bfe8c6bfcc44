"""Images/s of fkdlib's Trainer vs a bare PyTorch loop on the same model, batch and data.

Two workloads, each timed against a bare loop that does the same arithmetic (u8 -> float,
random flip, forward, loss, backward, gradient clipping, SGD step, LR schedule):

- classification: IResNet-18 + ArcFace head + cross-entropy (:class:`ClassificationTask`);
- distillation: a :class:`~fkdlib.distill.Distiller` with cross-entropy plus VarGFaceNet's
  angular loss (a loss that reads embeddings, not logits) against a bare loop with the same
  student forward/backward and teacher forward. Its embeddings have ArcFace's 512
  dimensions and its heads ``DISTILL_CLASSES`` identities, the order of CASIA-WebFace's
  10,575: there a full-class cosine matrix is a visible share of a step, so head work the
  losses never read (both networks' logits) shows in the ratio.

The ratio isolates the cost of fkdlib's own machinery (loss bookkeeping, NaN guard, callbacks,
progress bar, epoch seeding, and for distillation whatever the Distiller computes beyond what
its losses read). Runs alternate (bare, trainer, bare, trainer, ...), so both ratios are
measured in one run on a noisy machine: the ratio of the median step times (every step of every
run but each epoch's first) and the ratio of the median whole-run throughputs, the trainer's
timed over its whole ``fit()``, set-up included. Target: ratio >= 0.95. On the CPU the trainer
checks the loss every step (free there); the deferred check that spares a GPU a host sync per
step cannot show here.

Usage: python benchmarks/trainer_overhead.py [--repeats 5] [--epochs 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from fkdlib.data.transforms import random_hflip, to_float_image
from fkdlib.distill import ANGULAR_WEIGHT, AngularLoss, Distiller
from fkdlib.heads import create_head
from fkdlib.models import create_model
from fkdlib.training.trainer import ClassificationTask, TrainConfig, Trainer

RESOLUTION, WIDTH, EMBEDDING, BATCH, IMAGES = 32, 0.125, 128, 128, 2048
CLASSES = 64
DISTILL_EMBEDDING, DISTILL_CLASSES = 512, 10_000


class ArrayData(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self._images, self.metadata = images, pd.DataFrame({"identity": labels})
        self.num_classes = int(labels.max()) + 1

    def __len__(self) -> int:
        return len(self._images)

    def images_u8(self) -> np.ndarray:
        return self._images


def make_data(num_classes: int, seed: int = 0) -> ArrayData:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=IMAGES)
    images = rng.integers(0, 256, size=(IMAGES, 3, RESOLUTION, RESOLUTION), dtype=np.uint8)
    return ArrayData(images, labels)


def _network(embedding_size: int, num_classes: int) -> tuple[nn.Module, nn.Module]:
    backbone = create_model("iresnet18", input_size=RESOLUTION, width=WIDTH,
                            embedding_size=embedding_size)
    return backbone, create_head("arcface", embedding_size=embedding_size,
                                 num_classes=num_classes)


def make_classifier(seed: int) -> ClassificationTask:
    torch.manual_seed(seed)
    return ClassificationTask(*_network(EMBEDDING, CLASSES))


def make_distiller(seed: int) -> Distiller:
    torch.manual_seed(seed)
    student = _network(DISTILL_EMBEDDING, DISTILL_CLASSES)
    teacher = _network(DISTILL_EMBEDDING, DISTILL_CLASSES)
    angular = AngularLoss(DISTILL_EMBEDDING, DISTILL_EMBEDDING)
    return Distiller(*student, *teacher, {"angular": (angular, ANGULAR_WEIGHT)})


def classification_loss(task: ClassificationTask, x: torch.Tensor,
                        y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(task.head(task.backbone(x), y), y)


def distillation_loss(task: Distiller, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE + angular loss written out: only what the two terms read is computed."""
    student = task.student_backbone.forward_features(x)
    with torch.no_grad():
        teacher = task.teacher_backbone.forward_features(x)
    ce = F.cross_entropy(task.student_head(student["embedding"], y), y)
    return ce + task.loss_weights["angular"] * task.losses["angular"](student, teacher, y)


class StepClock:
    """Durations between consecutive step ends within an epoch, as a trainer callback or called
    by the bare loop; the first step of an epoch (it includes the epoch's set-up) is left out."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._last = 0.0

    def tick(self, step: int) -> None:
        now = time.perf_counter()
        if step:
            self.durations.append(now - self._last)
        self._last = now

    def on_step_end(self, trainer: Trainer, epoch: int, step: int,
                    losses: dict[str, torch.Tensor]) -> None:
        self.tick(step)


def bare_loop(task: nn.Module, data: ArrayData, epochs: int,
              loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
              clock: StepClock) -> float:
    images = torch.from_numpy(data.images_u8())
    labels = torch.tensor(data.metadata["identity"].to_numpy())
    params = [p for p in task.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    steps = len(labels) // BATCH
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    generator = torch.Generator().manual_seed(0)
    task.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for step in range(steps):
            index = order[step * BATCH:(step + 1) * BATCH]
            x = random_hflip(to_float_image(images[index]), generator)
            loss = loss_fn(task, x, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            scheduler.step()
            clock.tick(step)
    return epochs * steps * BATCH / (time.perf_counter() - start)


def trainer_loop(task: nn.Module, data: ArrayData, epochs: int, clock: StepClock) -> float:
    config = TrainConfig(epochs=epochs, batch_size=BATCH, lr=0.1, schedule="constant")
    start = time.perf_counter()  # the whole fit(), set-up included
    Trainer(task, config, callbacks=[clock]).fit(data)
    return epochs * (len(data) // BATCH) * BATCH / (time.perf_counter() - start)


def compare(label: str, make_task: Callable[[int], nn.Module], data: ArrayData,
            loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
            repeats: int, epochs: int) -> None:
    """Alternate bare and trainer runs; print both ratios of their medians.

    The median step, over all steps of all runs, shrugs off the bursts of a shared machine
    that can halve a whole run; the whole-run ratio also charges the trainer's set-up.
    """
    bare_loop(make_task(0), data, 1, loss_fn, StepClock())  # warm-up (allocator, kernels)
    bare_steps, ours_steps = StepClock(), StepClock()
    bare, ours = [], []
    for repeat in range(repeats):
        bare.append(bare_loop(make_task(repeat), data, epochs, loss_fn, bare_steps))
        ours.append(trainer_loop(make_task(repeat), data, epochs, ours_steps))
        print(f"  {label} run {repeat + 1}: bare {bare[-1]:.0f} img/s, "
              f"trainer {ours[-1]:.0f} img/s", flush=True)
    bare_step = BATCH / statistics.median(bare_steps.durations)
    ours_step = BATCH / statistics.median(ours_steps.durations)
    print(f"{label}:\n"
          f"  median step:      bare {bare_step:.0f} img/s, trainer {ours_step:.0f} img/s, "
          f"trainer / bare ratio {ours_step / bare_step:.3f} (target >= 0.95)\n"
          f"  median whole run: bare {statistics.median(bare):.0f} img/s, trainer "
          f"{statistics.median(ours):.0f} img/s, trainer / bare ratio "
          f"{statistics.median(ours) / statistics.median(bare):.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"iresnet18 (width {WIDTH}, {RESOLUTION} px) + ArcFace, batch {BATCH}, {IMAGES} "
          f"images x {args.epochs} epoch(s), {args.threads} threads, {args.repeats} runs each")
    compare(f"classification ({EMBEDDING}-d, {CLASSES} classes)", make_classifier,
            make_data(CLASSES), classification_loss, args.repeats, args.epochs)
    compare(f"distillation, CE + angular ({DISTILL_EMBEDDING}-d, {DISTILL_CLASSES} classes)",
            make_distiller, make_data(DISTILL_CLASSES), distillation_loss, args.repeats,
            args.epochs)


if __name__ == "__main__":
    main()
