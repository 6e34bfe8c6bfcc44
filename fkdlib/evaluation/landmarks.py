"""Landmark localisation with heatmaps: training targets, decoding and the normalised mean
error (NME), as FAN (Bulat & Tzimiropoulos, ICCV 2017) is trained and evaluated and as FAN-Face
(thesis ch. 3) uses it.

Coordinates are in pixels with pixel centres at integers (SynthFace's convention). A heatmap
of stride ``s`` covers ``s x s`` image pixels per cell, so image point ``p`` sits at
``(p + 0.5) / s - 0.5`` in heatmap pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..errors import ConfigError

# The 68-point iBUG scheme: outer corners of the right and left eye (the 300-W normalisation).
OUTER_EYE_CORNERS_68 = (36, 45)
# The same corners among the 51 internal points (the 68 without the 17 of the jaw line).
OUTER_EYE_CORNERS_51 = (36 - 17, 45 - 17)


def _mirror_68() -> tuple[int, ...]:
    pairs = [(i, 16 - i) for i in range(8)]  # jaw line
    pairs += [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]  # brows
    pairs += [(31, 35), (32, 34)]  # nostrils (27-30 and 33 lie on the midline)
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lips
    order = list(range(68))
    for a, b in pairs:
        order[a], order[b] = b, a
    return tuple(order)


# Point k of a face seen in a mirror is point MIRROR_68[k] of the face (iBUG 68-point scheme).
MIRROR_68 = _mirror_68()
MIRROR_51 = tuple(k - 17 for k in MIRROR_68[17:])


def mirror_landmarks(points: Tensor, width: int, mirror: tuple[int, ...] = MIRROR_51) -> Tensor:
    """The landmarks of the horizontally flipped images: ``x -> width - 1 - x`` (pixel centres
    at integers) and left and right points swapped by ``mirror``."""
    flipped = points[..., list(mirror), :].clone()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped


def to_heatmap_coordinates(points: Tensor, stride: float) -> Tensor:
    """Image pixel coordinates -> heatmap pixel coordinates of a map ``stride`` times smaller."""
    return (points + 0.5) / stride - 0.5


def to_image_coordinates(points: Tensor, stride: float) -> Tensor:
    """The inverse of :func:`to_heatmap_coordinates`."""
    return (points + 0.5) * stride - 0.5


def landmark_heatmaps(points: Tensor, side: int, sigma: float = 1.0) -> Tensor:
    """Gaussian heatmap targets: ``exp(-d^2 / (2 sigma^2))`` around each point, peak 1.

    Args:
        points: ``(B, N, 2)`` x, y in heatmap pixels.
        side: the heatmaps' side in pixels.
        sigma: the Gaussian's standard deviation in heatmap pixels (1 as in FAN's training).

    Returns:
        ``(B, N, side, side)`` float tensor.
    """
    if points.dim() != 3 or points.shape[-1] != 2:
        raise ConfigError(f"points must be (batch, landmarks, 2), got {tuple(points.shape)}")
    if not sigma > 0:
        raise ConfigError(f"sigma must be positive, got {sigma!r}")
    grid = torch.arange(side, dtype=points.dtype, device=points.device)
    dx = (grid.view(1, 1, 1, side) - points[..., 0, None, None]) ** 2
    dy = (grid.view(1, 1, side, 1) - points[..., 1, None, None]) ** 2
    return torch.exp(-(dx + dy) / (2.0 * sigma * sigma))


def decode_heatmaps(heatmaps: Tensor) -> Tensor:
    """Landmark positions from heatmaps, in heatmap pixels: each map's arg-max, moved a quarter
    pixel towards its larger neighbour along x and along y (the published FAN's decoding).

    Args:
        heatmaps: ``(B, N, H, W)``.

    Returns:
        ``(B, N, 2)`` x, y.
    """
    b, n, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, n, h * w).argmax(-1)
    y, x = flat // w, flat % w
    maps = heatmaps.reshape(b * n, h, w)
    rows = torch.arange(b * n, device=heatmaps.device)
    xf, yf = x.reshape(-1), y.reshape(-1)

    def towards(higher: Tensor, lower: Tensor) -> Tensor:
        return torch.sign(higher - lower) * 0.25

    right = maps[rows, yf, (xf + 1).clamp(max=w - 1)]
    left = maps[rows, yf, (xf - 1).clamp(min=0)]
    below = maps[rows, (yf + 1).clamp(max=h - 1), xf]
    above = maps[rows, (yf - 1).clamp(min=0), xf]
    inside_x = (xf > 0) & (xf < w - 1)
    inside_y = (yf > 0) & (yf < h - 1)
    px = xf.to(heatmaps.dtype) + torch.where(inside_x, towards(right, left), 0.0)
    py = yf.to(heatmaps.dtype) + torch.where(inside_y, towards(below, above), 0.0)
    return torch.stack([px, py], -1).reshape(b, n, 2)


def normalised_mean_error(predicted: Tensor, target: Tensor,
                          eye_corners: tuple[int, int] = OUTER_EYE_CORNERS_51) -> Tensor:
    """Per-image NME: the mean point-to-point distance divided by the distance between the
    outer eye corners of the target (the 300-W "inter-ocular" normalisation).

    Args:
        predicted, target: ``(B, N, 2)`` in the same pixel coordinates.
        eye_corners: indices of the two outer eye corners among the ``N`` points.

    Returns:
        ``(B,)`` NME per image (multiply by 100 for the usual percentage).
    """
    if predicted.shape != target.shape or predicted.dim() != 3 or predicted.shape[-1] != 2:
        raise ConfigError(
            f"predicted and target must both be (batch, landmarks, 2), got "
            f"{tuple(predicted.shape)} and {tuple(target.shape)}")
    right, left = eye_corners
    inter_ocular = (target[:, right] - target[:, left]).norm(dim=-1)
    return (predicted - target).norm(dim=-1).mean(-1) / inter_ocular


@torch.no_grad()
def predict_landmarks(fan: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """Landmarks a heatmap network finds in ``images`` (float ``(B, 3, H, W)``), decoded from
    its last stack (:func:`decode_heatmaps`) and returned in the pixels of ``images``
    ``(B, N, 2)``; a network with a ``resized`` method (:meth:`~fkdlib.models.fan.FAN.resized`)
    sees the images at its own side first."""
    prepare = getattr(fan, "resized", lambda x: x)
    was_training = fan.training
    fan.eval()
    try:
        maps = [fan(prepare(images[k:k + batch_size]))[-1]
                for k in range(0, len(images), batch_size)]
    finally:
        fan.train(was_training)
    stride = images.shape[-1] / maps[0].shape[-1]
    return to_image_coordinates(torch.cat([decode_heatmaps(m) for m in maps]), stride)


def nme_by_pose(predicted: Tensor, target: Tensor, yaw: np.ndarray,
                edges: Sequence[float] = (30.0, 60.0),
                eye_corners: tuple[int, int] = OUTER_EYE_CORNERS_51) -> pd.DataFrame:
    """Mean NME (%) per bin of absolute yaw, and over all images: one row per bin with
    ``pose`` (e.g. ``"30-60"``), ``images``, ``nme_percent`` and ``nme_sd_percent``."""
    nme = normalised_mean_error(predicted, target, eye_corners).numpy() * 100.0
    yaw = np.abs(np.asarray(yaw, dtype=float))
    if len(yaw) != len(nme):
        raise ConfigError(f"one yaw per image is needed, got {len(yaw)} for {len(nme)} images")
    bounds = [0.0, *edges, np.inf]
    rows = []
    for low, high in zip(bounds[:-1], bounds[1:]):
        chosen = nme[(yaw >= low) & (yaw < high)]
        label = f"{low:g}-{high:g}" if np.isfinite(high) else f">={low:g}"
        rows.append({"pose": f"|yaw| {label}", "images": len(chosen),
                     "nme_percent": chosen.mean() if len(chosen) else np.nan,
                     "nme_sd_percent": chosen.std(ddof=1) if len(chosen) > 1 else np.nan})
    rows.append({"pose": "all", "images": len(nme), "nme_percent": nme.mean(),
                 "nme_sd_percent": nme.std(ddof=1) if len(nme) > 1 else np.nan})
    return pd.DataFrame(rows)
