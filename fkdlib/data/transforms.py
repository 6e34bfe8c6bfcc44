"""Image transforms shared by every dataset and the trainer.

Pixel convention (insightface, ArcFace paper profile): ``x = (u8 / 255 - 0.5) / 0.5``, i.e.
floats in [-1, 1].
"""

from __future__ import annotations

import torch


def to_float_image(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` to float32 in [-1, 1] as ``(x / 255 - 0.5) / 0.5``."""
    if images_u8.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 tensor, got {images_u8.dtype}")
    return (images_u8.float() / 255.0 - 0.5) / 0.5


def random_hflip(images: torch.Tensor, generator: torch.Generator | None = None,
                 p: float = 0.5) -> torch.Tensor:
    """Flip each image of a batch horizontally with probability ``p`` (new tensor)."""
    flip = torch.rand(images.shape[0], generator=generator) < p
    out = images.clone()
    out[flip] = images[flip].flip(-1)
    return out
