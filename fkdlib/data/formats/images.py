"""Encoded-image helpers shared by the real-data readers and writers.

Every real face dataset stores *encoded* images (JPEG, sometimes PNG). The readers decode them
with Pillow into RGB, exactly as insightface does with ``mx.image.imdecode`` (RGB, 3 channels,
grey images expanded), and normalise them like insightface's training and evaluation code:
``(x / 255 - 0.5) / 0.5``, which maps uint8 pixels onto ``[-1, 1]``.
The writers keep the original bytes whenever they are JPEG or PNG, so a conversion round trip
is bit-exact; only other formats are re-encoded.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ...errors import ConfigError, DataFormatError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")
"""File suffixes (lower case) that the folder readers treat as images."""

_JPEG_SIGNATURE = b"\xff\xd8\xff"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sniff_format(data: bytes | bytearray | memoryview) -> str | None:
    """Name the encoding of an image buffer from its signature.

    Returns ``"jpeg"`` or ``"png"`` (the two encodings stored unchanged by the writers), or
    ``None`` for anything else.
    """
    head = bytes(data[:8])
    if head.startswith(_JPEG_SIGNATURE):
        return "jpeg"
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    return None


def extension_for(data: bytes, source: str) -> str:
    """File suffix (with the dot) that matches the encoding of ``data``.

    JPEG and PNG are recognised from their signature; any other encoding Pillow can open gets
    the suffix of the format Pillow reports (for example ``.bmp``).
    """
    known = sniff_format(data)
    if known == "jpeg":
        return ".jpg"
    if known == "png":
        return ".png"
    with _open_image(data, source) as image:
        return "." + (image.format or "bin").lower()


def decode_rgb(data: bytes | bytearray | memoryview, source: str) -> np.ndarray:
    """Decode an encoded image into an RGB ``uint8`` array of shape ``(H, W, 3)``.

    Args:
        data: the encoded bytes (JPEG, PNG, BMP, ... anything Pillow reads).
        source: where the bytes come from (file, record), named in the error message.

    Raises:
        DataFormatError: the bytes are empty, truncated or not an image.
    """
    with _open_image(data, source) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    """Losslessly encode an ``(H, W, 3)`` or ``(H, W)`` uint8 array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 array as JPEG (mxnet's ``pack_img`` default quality 95)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(
        buffer, format="JPEG", quality=quality
    )
    return buffer.getvalue()


def resize_rgb(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, 3)`` uint8 pixels resized to ``size = (height, width)`` with Pillow's bilinear
    filter (antialiased when shrinking); unchanged when already that size."""
    if pixels.shape[:2] == tuple(size):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((size[1], size[0]),
                                                     Image.Resampling.BILINEAR))


def image_size_pair(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``image_size`` as ``(height, width)``: one int means a square; ``None`` stays ``None``.

    Raises:
        ConfigError: not a positive int or a pair of them.
    """
    if image_size is None:
        return None
    pair = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    try:
        height, width = pair
    except (TypeError, ValueError):
        height = width = None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
               for v in (height, width)):
        raise ConfigError(f"image_size must be a positive int or (height, width) of them, got "
                          f"{image_size!r}")
    return int(height), int(width)


def hwc_to_chw_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 array -> contiguous ``(3, H, W)`` uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def _open_image(data: bytes | bytearray | memoryview, source: str) -> Image.Image:
    """Open (and fully load) an encoded image, turning every Pillow failure into one error."""
    if len(data) == 0:
        raise DataFormatError(f"{source}: expected an encoded image, found 0 bytes")
    try:
        # A decompression-bomb warning becomes an error: real face crops are small images.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(bytes(data)))
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise DataFormatError(
            f"{source}: expected an encoded image (JPEG/PNG/BMP), found {len(data)} bytes that "
            f"Pillow cannot decode ({_why_undecodable(error)}); the image is corrupt or not an "
            "image at all: replace it, or drop it from the dataset"
        ) from error
    return image


def _why_undecodable(error: Exception) -> str:
    """Pillow's reason in words; its "cannot identify image file" names the in-memory buffer
    (``<_io.BytesIO object at 0x...>``), which means nothing to a reader."""
    if isinstance(error, UnidentifiedImageError):
        return "no known image format starts with these bytes"
    return str(error)
