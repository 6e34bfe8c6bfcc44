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


def hflip_mask(batch: int, generator: torch.Generator | None = None, p: float = 0.5
               ) -> torch.Tensor:
    """Which images of a batch to flip: ``(batch,)`` bool, each True with probability ``p``."""
    return torch.rand(batch, generator=generator) < p


def hflip(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The batch with the images where ``mask`` holds flipped horizontally (new tensor)."""
    out = images.clone()
    out[mask] = images[mask].flip(-1)
    return out


def random_hflip(images: torch.Tensor, generator: torch.Generator | None = None,
                 p: float = 0.5) -> torch.Tensor:
    """Flip each image of a batch horizontally with probability ``p`` (new tensor)."""
    return hflip(images, hflip_mask(images.shape[0], generator, p))
