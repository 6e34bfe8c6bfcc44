"""Small face-like images and dataset trees for the format tests (plus checks of the fixture).

The other ``test_formats_*`` modules import the helpers from here. The images are tiny
(20 x 16 pixels) so that every test file runs in a second or two.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 20, 16


def face_like_image(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A random (H, W, 3) uint8 face: background, skin ellipse, two eyes, a mouth, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    image[:] = rng.uniform(0, 255, 3)
    cy, cx = height / 2 + rng.uniform(-1, 1), width / 2 + rng.uniform(-1, 1)
    face = ((yy - cy) / (0.42 * height)) ** 2 + ((xx - cx) / (0.38 * width)) ** 2 <= 1
    image[face] = rng.uniform([150, 100, 80], [255, 200, 170])
    eye_y = int(cy - 0.12 * height)
    for eye_x in (int(cx - 0.18 * width), int(cx + 0.18 * width)):
        image[eye_y, eye_x] = rng.uniform(0, 60, 3)
    mouth = rng.uniform([120, 20, 20], [200, 60, 60])
    image[int(cy + 0.22 * height), int(cx - 2) : int(cx + 2)] = mouth
    image += rng.normal(0, 6, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    """Encode with Pillow (PNG by default: lossless, so round trips are exact)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def make_identity_tree(root: Path, counts: dict[str, int], seed: int = 0) -> dict[Path, np.ndarray]:
    """Write ``root/<name>/<name>_%04d.png`` face images; return path -> pixels."""
    written = {}
    for offset, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(1, count + 1):
            pixels = face_like_image(seed + 1000 * offset + index)
            path = folder / f"{name}_{index:04d}.png"
            path.write_bytes(encode(pixels))
            written[path] = pixels
    return written


def test_face_like_image_is_deterministic_and_has_a_face():
    first, again, other = face_like_image(3), face_like_image(3), face_like_image(4)
    assert first.shape == (HEIGHT, WIDTH, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    # The centre is skin: red channel drawn from [150, 255] (before noise of sd 6).
    centre = first[HEIGHT // 2 - 1 : HEIGHT // 2 + 2, WIDTH // 2 - 1 : WIDTH // 2 + 2]
    assert centre[..., 0].mean() > 140
    assert centre[..., 0].std() < 12


def test_png_encoding_of_the_fixture_round_trips_exactly():
    pixels = face_like_image(7)
    decoded = np.asarray(Image.open(io.BytesIO(encode(pixels))))
    assert np.array_equal(decoded, pixels)


def test_identity_tree_layout(tmp_path):
    written = make_identity_tree(tmp_path, {"bob": 2, "amy": 1})
    names = sorted(str(path.relative_to(tmp_path)) for path in written)
    assert names == ["amy/amy_0001.png", "bob/bob_0001.png", "bob/bob_0002.png"]
