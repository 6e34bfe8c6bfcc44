"""Embedding extraction with the insightface flip test.

insightface evaluates a face model on ``emb(x) + emb(flip(x))`` (horizontal flip), L2-normalised
(``recognition/arcface_torch/eval/verification.py``, ``test``); :func:`extract_embeddings`
does the same for a tensor of images or a dataset of ``{"image": ...}`` items, and
:func:`pair_embeddings` lays the result out in the ``.bin`` pair order (pair ``k`` at rows
``2k`` and ``2k + 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fkdlib.errors import ConfigError, DataFormatError
from fkdlib.progress import progress as progress_bar
from fkdlib.runtime import resolve_device


def _stack_images(items: Sequence[Any]) -> torch.Tensor:
    """Collate only the ``image`` of each item: other fields (landmarks, strings) may not stack."""
    for item in items:
        if not isinstance(item, dict) or "image" not in item:
            found = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise DataFormatError(
                f"extract_embeddings: dataset items must be dicts with an 'image' tensor "
                f"(3xHxW), found {found}"
            )
    return torch.stack([torch.as_tensor(item["image"]) for item in items])


def _batches(data: Dataset | torch.Tensor, batch_size: int):
    """Yield image batches ``(B, 3, H, W)`` in data order."""
    if isinstance(data, torch.Tensor):
        for start in range(0, data.shape[0], batch_size):
            yield data[start : start + batch_size]
    else:
        # A DataLoader (not item-by-item indexing) lets datasets with ``__getitems__`` render
        # whole batches at once.
        yield from DataLoader(data, batch_size=batch_size, shuffle=False,
                              collate_fn=_stack_images)


def _model_device(model: nn.Module) -> torch.device | None:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else None


def extract_embeddings(
    model: nn.Module,
    data: Dataset | torch.Tensor,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    flip: bool = True,
    progress: bool | None = None,
) -> torch.Tensor:
    """Embed every image in ``data``, L2-normalised, optionally with the flip test.

    Args:
        model: maps a ``(B, 3, H, W)`` batch to ``(B, D)`` embeddings. It runs in ``eval()``
            mode under :func:`torch.no_grad` on ``device``; its training mode and device are
            restored afterwards.
        data: a ``(N, 3, H, W)`` tensor, or a dataset whose items are dicts with an
            ``"image"`` tensor (other keys are ignored).
        batch_size: images per forward pass (the flip test doubles it).
        device: where to run, as accepted by :func:`fkdlib.runtime.resolve_device`.
        flip: insightface flip test, ``normalize(emb(x) + emb(x flipped left-right))``;
            ``False`` gives ``normalize(emb(x))``.
        progress: show a progress bar; ``None`` leaves it to :func:`fkdlib.progress.progress_enabled`
            (a terminal or an interactive notebook, never a papermill run).

    Returns:
        ``(N, D)`` float32 CPU tensor of unit rows, in data order.

    Raises:
        ConfigError: ``batch_size`` is not positive or the device is unavailable.
        DataFormatError: ``data`` is not 4-D images, or the model returns something other than
            a finite ``(B, D)`` tensor.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"extract_embeddings: batch_size must be a positive int, got "
                          f"{batch_size!r}")
    if isinstance(data, torch.Tensor) and (data.ndim != 4 or data.shape[1] != 3):
        raise DataFormatError(
            f"extract_embeddings: an image tensor must be (N, 3, H, W), got shape "
            f"{tuple(data.shape)}"
        )
    target = resolve_device(device)
    was_training = model.training
    original_device = _model_device(model)
    chunks: list[torch.Tensor] = []
    try:
        model.eval()
        model.to(target)
        shown = {} if progress is None else {"disable": not progress}
        with torch.no_grad(), progress_bar(total=len(data), desc="embedding", unit="img",
                                           **shown) as bar:
            for images in _batches(data, batch_size):
                images = images.to(target, dtype=torch.float32)
                count = images.shape[0]
                if flip:
                    # One forward pass for both views; in eval mode samples do not interact.
                    both = model(torch.cat([images, torch.flip(images, dims=[3])]))
                    _check_output(both, 2 * count)
                    embedding = both[:count] + both[count:]
                else:
                    embedding = model(images)
                    _check_output(embedding, count)
                chunks.append(embedding.float().cpu())
                bar.update(count)
    finally:
        model.train(was_training)
        if original_device is not None:
            model.to(original_device)
    if not chunks:
        raise DataFormatError("extract_embeddings: data holds no images")
    embeddings = torch.cat(chunks)
    if not torch.isfinite(embeddings).all():
        bad = int((~torch.isfinite(embeddings)).any(dim=1).sum())
        raise DataFormatError(
            f"extract_embeddings: the model produced non-finite embeddings for {bad} of "
            f"{embeddings.shape[0]} images; check the weights (a NaN during training?)"
        )
    return F.normalize(embeddings, dim=1)


def _check_output(output: Any, count: int) -> None:
    if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != count:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise DataFormatError(
            f"extract_embeddings: the model must return a ({count}, D) embedding tensor for a "
            f"batch of {count} images, got {shape}"
        )


def pair_embeddings(
    embeddings: torch.Tensor | np.ndarray, pair_rows: np.ndarray | torch.Tensor
) -> torch.Tensor | np.ndarray:
    """Gather embeddings in pair order: row ``2k`` and ``2k + 1`` are the two sides of pair k.

    Args:
        embeddings: ``(M, D)`` embeddings of the whole test set, in dataset order.
        pair_rows: flat ``(2N,)`` row positions, e.g. :attr:`PairProtocol.rows`.

    Returns:
        ``(2N, D)`` embeddings of the same type as ``embeddings``.

    Raises:
        DataFormatError: ``pair_rows`` is not a flat even-length integer array within range.
    """
    rows = np.asarray(pair_rows)
    if rows.ndim != 1 or rows.size % 2 or not np.issubdtype(rows.dtype, np.integer):
        raise DataFormatError(
            f"pair_embeddings: pair_rows must be a flat integer array of even length (2 rows "
            f"per pair), got dtype {rows.dtype} and shape {rows.shape}"
        )
    count = embeddings.shape[0]
    if rows.size and (rows.min() < 0 or rows.max() >= count):
        raise DataFormatError(
            f"pair_embeddings: pair_rows span {rows.min()}..{rows.max()} but there are only "
            f"{count} embeddings; were they extracted from the same metadata?"
        )
    if isinstance(embeddings, torch.Tensor):
        return embeddings[torch.as_tensor(rows, dtype=torch.long, device=embeddings.device)]
    return np.asarray(embeddings)[rows]
