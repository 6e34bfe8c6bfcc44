"""Images/s of fkdlib's Trainer vs a bare PyTorch loop on the same model, batch and data.

Both loops do the same arithmetic (u8 -> float, random flip, IResNet-18 forward, ArcFace head,
cross-entropy, backward, gradient clipping, SGD step, LR schedule); the ratio isolates the
trainer's own cost (loss bookkeeping, NaN guard, callbacks, progress bar, epoch seeding).
Runs alternate (bare, trainer, bare, trainer, ...) and the median of each is compared, so the
ratio is measured in one run on a noisy machine. Target: ratio >= 0.95.

Usage: python benchmarks/trainer_overhead.py [--repeats 3] [--epochs 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from fkdlib.data.transforms import random_hflip, to_float_image
from fkdlib.heads import create_head
from fkdlib.models import create_model
from fkdlib.training.trainer import ClassificationTask, TrainConfig, Trainer

RESOLUTION, CLASSES, PER_CLASS, BATCH = 32, 64, 32, 128


class ArrayData(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        self._images, self.metadata = images, pd.DataFrame({"identity": labels})
        self.num_classes = int(labels.max()) + 1

    def __len__(self):
        return len(self._images)

    def images_u8(self):
        return self._images


def make_task(seed: int) -> ClassificationTask:
    torch.manual_seed(seed)
    backbone = create_model("iresnet18", input_size=RESOLUTION, width=0.125, embedding_size=128)
    head = create_head("arcface", embedding_size=128, num_classes=CLASSES)
    return ClassificationTask(backbone, head)


def bare_loop(task: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int) -> float:
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
            y = labels[index]
            loss = F.cross_entropy(task.head(task.backbone(x), y), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            scheduler.step()
    return epochs * steps * BATCH / (time.perf_counter() - start)


def trainer_loop(task: nn.Module, data: ArrayData, epochs: int) -> float:
    config = TrainConfig(epochs=epochs, batch_size=BATCH, lr=0.1, schedule="constant")
    start = time.perf_counter()  # the whole fit(), set-up included
    Trainer(task, config).fit(data)
    return epochs * (len(data) // BATCH) * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    images = rng.integers(0, 256, size=(len(labels), 3, RESOLUTION, RESOLUTION), dtype=np.uint8)
    data = ArrayData(images, labels)
    images_t, labels_t = torch.from_numpy(images), torch.from_numpy(labels)
    bare, ours = [], []
    bare_loop(make_task(0), images_t, labels_t, 1)  # warm-up (allocator, kernels)
    for repeat in range(args.repeats):
        bare.append(bare_loop(make_task(repeat), images_t, labels_t, args.epochs))
        ours.append(trainer_loop(make_task(repeat), data, args.epochs))
        print(f"repeat {repeat + 1}: bare {bare[-1]:.0f} img/s, trainer {ours[-1]:.0f} img/s")
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"model iresnet18 (width 0.125, {RESOLUTION} px), batch {BATCH}, "
          f"{len(labels)} images, {args.threads} threads")
    print(f"median bare loop: {statistics.median(bare):.0f} img/s")
    print(f"median trainer:   {statistics.median(ours):.0f} img/s")
    print(f"trainer / bare ratio: {ratio:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
