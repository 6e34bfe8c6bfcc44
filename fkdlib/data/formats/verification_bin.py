"""insightface verification files: ``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...

Format (insightface ``recognition/arcface_torch/eval/verification.py``, ``load_bin``): a pickle
of ``(bins, issame_list)`` where ``bins`` holds ``2N`` encoded images (JPEG or PNG bytes, or
1-D uint8 arrays from ``cv2.imencode``) and ``issame_list`` holds ``N`` booleans; pair ``k`` is
``(bins[2k], bins[2k + 1])``, i.e. the pairs are ``bins[0::2]`` against ``bins[1::2]``. The
pickle is read with a restricted unpickler (:mod:`.safe_pickle`), never with ``pickle.load``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ...errors import ConfigError, DataFormatError, missing_file
from ...io import atomic_write_bytes
from .images import decode_rgb, encode_png, hwc_to_chw_tensor, image_size_pair, resize_rgb
from .safe_pickle import restricted_loads

PICKLE_PROTOCOL = 4
"""Protocol of the files we write: bytes need no global, and Python 3.4+ reads it."""


class VerificationBin(NamedTuple):
    """A decoded verification set.

    Attributes:
        images: ``(2N, 3, H, W)`` uint8 RGB tensor; pair ``k`` is rows ``2k`` and ``2k + 1``.
        issame: ``(N,)`` bool array, True where the pair shows one person.
    """

    images: torch.Tensor
    issame: np.ndarray


def read_verification_bin(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """Read and validate a verification ``.bin`` without decoding its images.

    Returns:
        ``(encoded_images, issame)``: ``2N`` byte strings and an ``(N,)`` bool array.

    Raises:
        MissingDataError: no such file, or a folder.
        UnsafePickleError: the pickle references anything beyond plain data.
        DataFormatError: not ``(bins, issame)``, or ``len(bins) != 2 * len(issame)``.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(
            path, "verification file", "expected an insightface .bin such as lfw.bin, "
            "cfp_fp.bin or agedb_30.bin (see data/README.md)"
        )
    content = restricted_loads(path.read_bytes(), str(path))
    if not isinstance(content, (tuple, list)) or len(content) != 2:
        found = f"{type(content).__name__}" + (
            f" of {len(content)} items" if isinstance(content, (tuple, list)) else ""
        )
        raise DataFormatError(
            f"{path}: expected a pickled pair (bins, issame_list), found a {found}; "
            "this is not an insightface verification .bin"
        )
    bins, issame_list = content
    encoded = _encoded_images(bins, path)
    issame = _issame_array(issame_list, path)
    if len(encoded) % 2:
        raise DataFormatError(
            f"{path}: expected an even number of images (two per pair), found {len(encoded)}; "
            "the file is truncated or corrupt: download it again"
        )
    if len(encoded) != 2 * len(issame):
        raise DataFormatError(
            f"{path}: expected 2 x len(issame) = {2 * len(issame)} images for {len(issame)} "
            f"pairs, found {len(encoded)}; the file is corrupt: download it again"
        )
    return encoded, issame


def load_verification_bin(
    path: str | os.PathLike, image_size: int | tuple[int, int] | None = None
) -> VerificationBin:
    """Load a verification ``.bin`` as decoded RGB images and pair labels.

    Args:
        path: the ``.bin`` file.
        image_size: ``(height, width)`` (or one int for square images) to resize every image
            to with bilinear interpolation; ``None`` keeps the stored size, which must then be
            the same for every image (112 x 112 in insightface's files).

    Returns:
        A :class:`VerificationBin` (``images`` uint8 ``(2N, 3, H, W)``, ``issame`` bool
        ``(N,)``). Normalise with :func:`fkdlib.data.transforms.to_float_image`.
    """
    encoded, issame = read_verification_bin(path)
    target = image_size_pair(image_size)
    expected = target
    images = []
    for index, data in enumerate(encoded):
        source = f"{path} (image {index}, pair {index // 2})"
        pixels = decode_rgb(data, source)
        expected = expected or pixels.shape[:2]  # without image_size, the first image rules
        if pixels.shape[:2] != expected:
            if target is None:
                raise DataFormatError(
                    f"{source}: expected every image to be {expected} like the first one, "
                    f"found {pixels.shape[:2]}; pass image_size=(H, W) to resize"
                )
            pixels = resize_rgb(pixels, target)
        images.append(hwc_to_chw_tensor(pixels))
    return VerificationBin(torch.stack(images), issame)


def save_verification_bin(
    path: str | os.PathLike,
    images_or_encoded: torch.Tensor | np.ndarray | Sequence[bytes],
    issame: Sequence[bool] | np.ndarray,
) -> None:
    """Write a verification ``.bin`` that insightface's ``load_bin`` and ours read (atomic).

    Args:
        path: the output file.
        images_or_encoded: ``(2N, 3, H, W)`` uint8 images (stored as lossless PNG), or ``2N``
            encoded images (JPEG/PNG bytes, stored unchanged after a decode check).
        issame: ``N`` booleans, pair ``k`` = images ``2k`` and ``2k + 1``.
    """
    if isinstance(images_or_encoded, (torch.Tensor, np.ndarray)):
        array = np.asarray(images_or_encoded)
        if array.ndim != 4 or array.shape[1] != 3 or array.dtype != np.uint8:
            raise ConfigError(
                f"images must be a uint8 array (2N, 3, H, W), got {array.dtype} {array.shape}"
            )
        encoded = [encode_png(image.transpose(1, 2, 0)) for image in array]
    else:
        encoded = [bytes(data) for data in images_or_encoded]
        for index, data in enumerate(encoded):
            decode_rgb(data, f"image {index} given for {path}")
    labels = [bool(value) for value in np.asarray(issame).reshape(-1)]
    if len(encoded) != 2 * len(labels):
        raise ConfigError(
            f"{path}: expected 2 x len(issame) = {2 * len(labels)} images, got {len(encoded)}"
        )
    atomic_write_bytes(path, pickle.dumps((encoded, labels), protocol=PICKLE_PROTOCOL))


def _encoded_images(bins: Any, path: Path) -> list[bytes]:
    if not isinstance(bins, (list, tuple)):
        raise DataFormatError(
            f"{path}: expected the first item to be a list of encoded images, found "
            f"{type(bins).__name__}"
        )
    encoded = []
    for index, item in enumerate(bins):
        if isinstance(item, (bytes, bytearray)):
            encoded.append(bytes(item))
        elif isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim <= 2:
            encoded.append(item.tobytes())  # cv2.imencode output, (n,) or (n, 1)
        else:
            found = f"{type(item).__name__}" + (
                f" {item.dtype} {item.shape}" if isinstance(item, np.ndarray) else ""
            )
            raise DataFormatError(
                f"{path}: image {index}: expected encoded image bytes (or a uint8 array from "
                f"cv2.imencode), found {found}"
            )
    return encoded


def _issame_array(issame_list: Any, path: Path) -> np.ndarray:
    values = issame_list.tolist() if isinstance(issame_list, np.ndarray) else issame_list
    if not isinstance(values, (list, tuple)) or not all(
        isinstance(value, (bool, np.bool_)) or (isinstance(value, int) and value in (0, 1))
        for value in values
    ):
        raise DataFormatError(
            f"{path}: expected the second item to be a list of booleans (issame), found "
            f"{type(issame_list).__name__} {str(issame_list)[:60]}"
        )
    return np.asarray(values, dtype=bool).reshape(-1)


__all__ = [
    "VerificationBin",
    "load_verification_bin",
    "read_verification_bin",
    "save_verification_bin",
]
