"""The training loop shared by every notebook.

A *task* is an ``nn.Module`` whose ``forward(images, labels)`` returns a dict of already
weighted loss terms (``{"ce": ...}`` for plain training, ``{"ce": ..., "kd": ...}`` for a
distiller, in the style of mdistiller). The trainer sums them, steps the optimiser over the
parameters that require gradients, and records per-epoch history. A new paper adds a task or a
loss; it does not edit this loop.

Reproducibility: at the start of epoch ``e`` every random number generator is re-seeded from
``(seed, e)`` and the batch order and flips come from a generator seeded the same way, so an
epoch's computation depends only on the state at its start. Checkpoints (model, optimiser,
scheduler, scaler, history) are written atomically after every epoch; a run killed mid-way and
resumed with ``resume=True`` repeats the interrupted epoch from its start and ends with weights
bit-identical to an uninterrupted run on the CPU.

NaN guard: a non-finite loss raises :class:`TrainingDivergedError`, always before the epoch's
checkpoint is written, so a diverged epoch never replaces the last good one. On the CPU the loss
is checked at every step; on an accelerator reading it would make the host wait for each step's
kernels, so a device-side flag is read every :data:`NAN_CHECK_INTERVAL` steps and at the end of
the epoch, and the error names the window of steps.

Speed on the CPU (measured by ``benchmarks/training_step.py`` at the default profile's sizes,
2 threads): a task with grouped or depthwise convolutions (MobileFaceNet, VarGFaceNet) trains
in the ``channels_last`` memory format (images and 4-D weights; MobileFaceNet's steps ~1.4x
faster, VarGFaceNet's ~1.06x, the same values up to float rounding) and gets its parameters
back in the default contiguous layout; a task of dense convolutions only (IResNet) stays
contiguous, where ``channels_last`` measured 10-20% slower. ``TrainConfig.amp`` enters autocast
only on CUDA: bf16 autocast on a CPU without native bf16 makes a step several times slower.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..data import dataset_labels
from ..data.transforms import hflip, hflip_mask, to_float_image
from ..errors import ConfigError, FkdError
from ..io import atomic_write_bytes
from ..progress import progress

CHECKPOINT_NAME = "last.pt"
NAN_CHECK_INTERVAL = 50


class TrainingDivergedError(FkdError, FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (ArcFace paper profile: SGD 0.9, wd 5e-4, lr 0.1, clip 5).

    ``milestones`` are fractions of the total number of steps, so one config serves every
    profile length.
    """

    epochs: int = 1
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "multistep"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    poly_power: float = 2.0
    grad_clip: float | None = 5.0
    amp: bool = True
    hflip: bool = True
    seed: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("multistep", "cosine", "poly", "constant"):
            raise ConfigError("schedule must be one of 'multistep', 'cosine', 'poly', "
                              f"'constant', got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs and batch_size must be >= 1, got {self.epochs}, "
                              f"{self.batch_size}")
        if any(not 0.0 < m < 1.0 for m in self.milestones):
            raise ConfigError(f"milestones are fractions of training in (0, 1), got "
                              f"{self.milestones}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


class ClassificationTask(nn.Module):
    """Backbone + margin head trained with cross-entropy (ArcFace Eq. 3 family)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.backbone(images), labels)
        return {"ce": F.cross_entropy(logits, labels)}


def _mix_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class _InMemoryBatches:
    """Whole dataset as a uint8 tensor: the fast path for SynthFace-sized data."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, batch_size: int):
        self.images_u8, self.labels, self.batch_size = images_u8, labels, batch_size

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def epoch(self, generator: torch.Generator):
        order = torch.randperm(len(self.labels), generator=generator)
        for step in range(len(self)):
            index = order[step * self.batch_size:(step + 1) * self.batch_size]
            yield to_float_image(self.images_u8[index]), self.labels[index]


class _LoaderBatches:
    """Any map-style dataset of dicts with ``image`` and ``identity`` through a DataLoader."""

    def __init__(self, dataset: Dataset, batch_size: int, num_workers: int):
        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size

    def epoch(self, generator: torch.Generator):
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True,
                            drop_last=True, num_workers=self.num_workers, generator=generator)
        for batch in loader:
            yield batch["image"], torch.as_tensor(batch["identity"])


def _batches(dataset: Dataset, batch_size: int, num_workers: int,
             targets: torch.Tensor | None = None):
    """Batches of (images, identity labels), or of (images, ``targets`` rows) for a task that
    learns something else (landmarks), which needs an in-memory dataset."""
    if len(dataset) < batch_size:
        raise ConfigError(f"the training set has {len(dataset)} samples, fewer than one batch "
                          f"of {batch_size}; lower batch_size or use more data")
    if hasattr(dataset, "images_u8"):
        images = torch.from_numpy(np.ascontiguousarray(dataset.images_u8()))
        labels = torch.from_numpy(dataset_labels(dataset)) if targets is None else targets
        if len(labels) != len(images):
            raise ConfigError(f"the task gave {len(labels)} training targets for "
                              f"{len(images)} images")
        return _InMemoryBatches(images, labels, batch_size)
    if targets is not None:
        raise ConfigError(f"{type(dataset).__name__} cannot give all its images at once "
                          "(images_u8), which training on per-image targets needs; use an "
                          "in-memory dataset such as SynthFace")
    return _LoaderBatches(dataset, batch_size, num_workers)


def _nan_check_interval(device: torch.device) -> int:
    """Steps between two host reads of the non-finite-loss flag (see the module docstring)."""
    return 1 if device.type == "cpu" else NAN_CHECK_INTERVAL


def _lr_lambda(config: TrainConfig, total_steps: int, steps_per_epoch: int):
    warmup = int(config.warmup_epochs * steps_per_epoch)
    milestones = [int(m * total_steps) for m in config.milestones]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        if config.schedule == "multistep":
            return config.gamma ** sum(step >= m for m in milestones)
        progress_fraction = (step - warmup) / max(1, total_steps - warmup)
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress_fraction))
        return max(0.0, 1.0 - progress_fraction) ** config.poly_power

    return factor


def prefers_channels_last(task: nn.Module, device: torch.device | str) -> bool:
    """Whether ``channels_last`` is the faster layout to train ``task`` on ``device``.

    Measured on a 2-core AVX2 CPU with 2 threads at the default profile's sizes
    (``benchmarks/training_step.py``): faster for networks with grouped or depthwise
    convolutions (Trainer steps: MobileFaceNet ~1.4x, VarGFaceNet ~1.06x), slower for dense
    ones (IResNet-18 and -50: 0.8-0.9x). A distiller with such a student and an IResNet-50
    teacher gains too (MobileFaceNet ~1.4x, VarGFaceNet ~1.06x). Not measured on accelerators,
    so ``False`` there.
    """
    if torch.device(device).type != "cpu":
        return False
    return any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in task.modules())


class Trainer:
    """Fits a task (backbone + head, or a distiller) on a dataset.

    Parameters
    ----------
    task:
        Module whose ``forward(images, labels)`` returns a dict of weighted loss terms.
    config:
        :class:`TrainConfig`.
    checkpoint_dir:
        Where ``last.pt`` is written after every epoch (``None``: no checkpoints).
    callbacks:
        Objects with an optional ``on_epoch_end(trainer, epoch) -> dict`` (e.g. periodic
        verification) and ``on_step_end(trainer, epoch, step, losses)``.
    device:
        A ``torch.device``; AMP is used only on CUDA when ``config.amp``.
    channels_last:
        Train 4-D images and weights in the ``channels_last`` memory format; ``None`` (default)
        means on the CPU for a task with grouped or depthwise convolutions, where it is
        measured faster (see :func:`prefers_channels_last`). The layout changes no value
        beyond float rounding and is not part of :class:`TrainConfig`; after :meth:`fit` (also
        a failed one) the parameters are back in the contiguous layout.
    """

    def __init__(self, task: nn.Module, config: TrainConfig,
                 checkpoint_dir: str | Path | None = None,
                 callbacks: Sequence[Any] = (), device: torch.device | str = "cpu",
                 channels_last: bool | None = None):
        self.task = task
        self.config = config
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.callbacks = list(callbacks)
        self.device = torch.device(device)
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.channels_last = (prefers_channels_last(task, self.device) if channels_last is None
                              else bool(channels_last))
        self.history: list[dict[str, float]] = []

    # -- construction of the optimisation state -------------------------------------------
    def _parameters(self) -> list[nn.Parameter]:
        params = [p for p in self.task.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("the task has no trainable parameters")
        return params

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = self._parameters()
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.config.lr, momentum=self.config.momentum,
                                   weight_decay=self.config.weight_decay)
        return torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    # -- checkpoints -----------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path | None:
        return self.checkpoint_dir / CHECKPOINT_NAME if self.checkpoint_dir else None

    def _save_checkpoint(self, epoch: int, optimizer, scheduler, scaler) -> None:
        if self.checkpoint_path is None:
            return
        state = {"epoch": epoch, "config": self.config.to_dict(),
                 "task": self.task.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                 "history": self.history}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.checkpoint_path, buffer.getvalue())

    def _load_checkpoint(self, optimizer, scheduler, scaler) -> int:
        """Restore the last checkpoint; returns the number of completed epochs."""
        path = self.checkpoint_path
        if path is None or not path.exists():
            return 0
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as error:  # torch raises several types for a damaged file
            raise FkdError(f"cannot resume from {path}: the checkpoint is unreadable ({error}); "
                           "delete it to start over") from error
        saved = state["config"]
        current = self.config.to_dict()
        changed = {k: (saved.get(k), v) for k, v in current.items()
                   if k != "epochs" and saved.get(k) != v}
        if changed:
            raise ConfigError(f"cannot resume from {path}: it was written with a different "
                              f"configuration {changed} (saved, now); use resume=False or "
                              "another checkpoint_dir")
        self.task.load_state_dict(state["task"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        self.history = list(state["history"])
        return int(state["epoch"])

    # -- the loop --------------------------------------------------------------------------
    def fit(self, dataset: Dataset, resume: bool = False) -> pd.DataFrame:
        """Train for ``config.epochs`` epochs; returns the per-epoch history."""
        try:
            return self._fit(dataset, resume)
        finally:
            if self.channels_last:  # hand the weights back in the layout everyone expects
                self.task.to(memory_format=torch.contiguous_format)

    def _fit(self, dataset: Dataset, resume: bool) -> pd.DataFrame:
        config = self.config
        # A task that learns per-image targets other than identities (FAN's landmarks) says
        # which (training_targets) and how a horizontal flip moves them (flip_targets).
        targets = getattr(self.task, "training_targets", None)
        flip_targets = getattr(self.task, "flip_targets", None)
        batches = _batches(dataset, config.batch_size, config.num_workers,
                           None if targets is None else targets(dataset))
        steps_per_epoch = len(batches)
        total_steps = steps_per_epoch * config.epochs
        self.task.to(self.device)
        if self.channels_last:  # before the optimiser exists: it holds the parameters
            self.task.to(memory_format=torch.channels_last)
        optimizer = self._make_optimizer()
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(config, total_steps, steps_per_epoch))
        scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.history = []
        start_epoch = self._load_checkpoint(optimizer, scheduler, scaler) if resume else 0
        params = self._parameters()
        check_interval = _nan_check_interval(self.device)
        for epoch in range(start_epoch, config.epochs):
            torch.manual_seed(_mix_seed(config.seed, epoch))
            generator = torch.Generator().manual_seed(_mix_seed(config.seed, epoch, 1))
            self.task.train()
            sums: dict[str, torch.Tensor] = {}
            nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
            unchecked_from = 0
            started = time.perf_counter()
            bar = progress(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}")
            for step, (images, labels) in enumerate(batches.epoch(generator)):
                if config.hflip:
                    flip = hflip_mask(images.shape[0], generator)
                    images = hflip(images, flip)
                    if flip_targets is not None:
                        labels = flip_targets(labels, flip, images.shape[-1])
                images = images.to(self.device, non_blocking=True)
                if self.channels_last and images.dim() == 4:
                    images = images.contiguous(memory_format=torch.channels_last)
                labels = labels.to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, enabled=self.use_amp):
                    losses = self.task(images, labels)
                loss = sum(losses.values())
                nonfinite |= ~torch.isfinite(loss)
                if (step + 1) % check_interval == 0:
                    self._check_finite(nonfinite, epoch, unchecked_from, step, losses)
                    unchecked_from = step + 1
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(params, config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + value.detach()
                for callback in self.callbacks:
                    hook = getattr(callback, "on_step_end", None)
                    if hook is not None:
                        hook(self, epoch, step, losses)
                bar.update()
            bar.close()
            if unchecked_from < steps_per_epoch:
                self._check_finite(nonfinite, epoch, unchecked_from, steps_per_epoch - 1, losses)
            elapsed = time.perf_counter() - started
            row: dict[str, float] = {"epoch": epoch + 1,
                                     "lr": optimizer.param_groups[0]["lr"],
                                     "time_s": elapsed,
                                     "images_per_s": steps_per_epoch * config.batch_size / elapsed}
            row.update({f"loss_{k}": float(v) / steps_per_epoch for k, v in sums.items()})
            row["loss"] = sum(row[f"loss_{k}"] for k in sums)
            for callback in self.callbacks:
                hook = getattr(callback, "on_epoch_end", None)
                if hook is not None:
                    row.update(hook(self, epoch) or {})
            self.history.append(row)
            self._save_checkpoint(epoch + 1, optimizer, scheduler, scaler)
        self.task.eval()
        return pd.DataFrame(self.history)

    def _check_finite(self, nonfinite: torch.Tensor, epoch: int, first_step: int,
                      last_step: int, losses: dict[str, torch.Tensor]) -> None:
        """Raise :class:`TrainingDivergedError` if a loss of steps ``first_step`` ..
        ``last_step`` was not finite; ``losses`` are the terms of ``last_step``."""
        if bool(nonfinite):  # the one host-device synchronisation of the guard
            self._diverged(epoch, first_step, last_step, losses)

    def _diverged(self, epoch: int, first_step: int, last_step: int,
                  losses: dict[str, torch.Tensor]) -> NoReturn:
        values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
        if first_step == last_step:
            where = f"step {last_step + 1} ({values})"
        else:
            where = (f"one of steps {first_step + 1}-{last_step + 1}, checked together so that "
                     f"the host does not wait for the {self.device.type} device at every step "
                     f"(step {last_step + 1}: {values}; the weights in memory may already be "
                     "NaN)")
        kept = (f"the last good checkpoint ({self.checkpoint_path}) is kept"
                if self.checkpoint_path and self.checkpoint_path.exists()
                else "no checkpoint had been written yet")
        raise TrainingDivergedError(
            f"loss is not finite at epoch {epoch + 1}, {where}; {kept}. "
            f"Likely causes: a learning rate too high (lr={self.config.lr}), a margin too large "
            "for a model this early in training (lower m or warm up with a softmax head), or "
            "fp16 overflow under AMP (set amp=False)"
        )
