"""A labelled contact sheet of SynthFace samples (one row per identity) as a PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ...errors import ConfigError
from ...io import atomic_open
from .dataset import SynthFace
from .params import FACIAL_HAIR, HAIR_STYLES, age_group_of, sample_identity

MAX_PREVIEW_IMAGES = 1024
CELL_MIN_PIXELS = 96
LABEL_WIDTH = 150
CAPTION_HEIGHT = 14
GENDERS = ("F", "M")
AGE_GROUPS = ("0-19", "20-49", "50+")


def preview_grid(n: int) -> tuple[int, int]:
    """(identities, images per identity) of an ``n``-image preview: a near-square grid."""
    columns = math.ceil(math.sqrt(n))
    return math.ceil(n / columns), columns


def save_preview(out: str | Path, n: int = 64, resolution: int = 64, seed: int = 0,
                 difficulty: str = "medium", aligned: bool = True) -> Path:
    """Render ``n`` training samples and write them as a labelled grid to ``out`` (PNG).

    Rows are identities, labelled with their id and attributes (gender, base age and its
    group, skin tone, hair style, facial hair); columns are that identity's images,
    captioned with their yaw. Cells are enlarged (nearest neighbour) to at least 96 pixels
    so that small resolutions stay visible. Returns the path written (atomically).
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"the preview is written as PNG; --out must end in .png, got {out}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not (
            1 <= n <= MAX_PREVIEW_IMAGES):
        raise ConfigError(f"--n must be an integer from 1 to {MAX_PREVIEW_IMAGES}, got {n!r}")
    rows, columns = preview_grid(int(n))
    dataset = SynthFace("train", rows, columns, resolution, seed=seed, difficulty=difficulty,
                        aligned=aligned, use_cache=False)
    images = dataset.images_u8().transpose(0, 2, 3, 1)
    meta = dataset.metadata
    zoom = max(1, math.ceil(CELL_MIN_PIXELS / dataset.resolution))
    cell = dataset.resolution * zoom
    sheet = Image.new("RGB", (LABEL_WIDTH + columns * cell, rows * (cell + CAPTION_HEIGHT)),
                      "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k in range(int(n)):
        row, column = divmod(k, columns)
        top = row * (cell + CAPTION_HEIGHT)
        left = LABEL_WIDTH + column * cell
        tile = Image.fromarray(images[k]).resize((cell, cell), Image.NEAREST)
        sheet.paste(tile, (left, top))
        sample = meta.iloc[k]
        draw.text((left + 2, top + cell + 1), f"yaw {sample['yaw']:+.0f}", fill="black",
                  font=font)
        if column == 0:
            person = sample_identity(seed, int(sample["global_identity"]))
            extras = [f"{HAIR_STYLES[person.hair_style]} hair"]
            if person.facial_hair:
                extras.append(FACIAL_HAIR[person.facial_hair])
            label = (f"id {person.global_identity}\n{GENDERS[person.gender]}, age "
                     f"{person.base_age:.0f} ({AGE_GROUPS[age_group_of(person.base_age)]})\n"
                     f"skin tone {person.skin_tone}\n{', '.join(extras)}")
            draw.multiline_text((4, top + 4), label, fill="black", font=font, spacing=3)
    with atomic_open(out, "wb") as handle:
        sheet.save(handle, format="PNG")
    return out
