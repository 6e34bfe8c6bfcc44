"""CPU forward latency of several networks, measured in one run as ratios to a reference
(VarGFaceNet's efficiency claims, Yan et al. ICCVW 2019 Table 1): a shared machine is noisy,
so only ratios measured side by side mean something."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from ..errors import ConfigError


def measure_latency(models: Mapping[str, nn.Module], input_size: int,
                    batch_sizes: Sequence[int] = (1, 32), repeats: int = 3,
                    warmup: int = 1, reference: str | None = None) -> pd.DataFrame:
    """CPU forward latency of each model, measured in one run, as ratios to ``reference``.

    Every model first runs ``warmup`` untimed passes at the smallest batch size (kernel
    selection and allocations happen on the first calls; at the smallest batch they cost
    little). Then, for each batch size, ``repeats`` rounds run each model once in turn
    (interleaved, so a slow spell of a shared machine hits every model alike); the median of a
    model's rounds is its latency. Models run in eval mode without gradients on the current
    torch threads.

    Returns:
        One row per (model, batch): ``latency (ms)``, ``per image (ms)`` and
        ``ratio to <reference>`` (latency / reference's latency at the same batch size).
    """
    reference = next(iter(models), "") if reference is None else reference
    if reference not in models:
        raise ConfigError(f"reference {reference!r} is not among the models {list(models)}")
    if repeats < 1 or warmup < 0 or not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError(f"need repeats >= 1, warmup >= 0 and batch sizes >= 1, got repeats="
                          f"{repeats}, warmup={warmup}, batch_sizes={list(batch_sizes)}")

    def images(model: nn.Module, batch: int) -> torch.Tensor:
        return torch.zeros(batch, getattr(model, "in_channels", 3), input_size, input_size)

    rows = []
    with torch.inference_mode():
        for model in models.values():
            model.eval()
            for _ in range(warmup):
                model(images(model, min(batch_sizes)))
        for batch in batch_sizes:
            inputs = {name: images(model, batch) for name, model in models.items()}
            times: dict[str, list[float]] = {name: [] for name in models}
            for _ in range(repeats):
                for name, model in models.items():
                    start = time.perf_counter()
                    model(inputs[name])
                    times[name].append(time.perf_counter() - start)
            medians = {name: statistics.median(values) for name, values in times.items()}
            for name, seconds in medians.items():
                rows.append({"backbone": name, "batch": batch, "latency (ms)": 1e3 * seconds,
                             "per image (ms)": 1e3 * seconds / batch,
                             f"ratio to {reference}": seconds / medians[reference]})
    return pd.DataFrame(rows)

