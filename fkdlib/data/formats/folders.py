"""Plain image folders (one sub-folder per identity) and LFW's ``pairs.txt``.

* :class:`ImageFolderDataset` reads ``root/<identity>/<image>`` trees, the layout of LFW,
  CASIA-WebFace or VGGFace2 dumps: identities are the sorted sub-folder names (label ``i`` =
  ``classes[i]``), images are the ``.jpg/.jpeg/.png/.bmp`` files below each, sorted.
* :func:`parse_lfw_pairs` reads the LFW protocol file (Huang et al., "Labeled Faces in the
  Wild", tech. report 07-49, 2007): a header ``"<folds> <n>"`` then, per fold, ``n`` matched
  pairs ``"name i j"`` followed by ``n`` mismatched pairs ``"name1 i name2 j"``; image ``i`` of
  ``name`` is ``name/name_%04d.jpg``. (``pairsDevTrain.txt`` has a one-number header ``n``:
  a single fold.)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ...errors import (
    ConfigError,
    DataFormatError,
    MissingDataError,
    missing_file,
    missing_folder,
)
from ..transforms import to_float_image
from .images import IMAGE_EXTENSIONS, decode_rgb, hwc_to_chw_tensor, image_size_pair, resize_rgb


class ImageFolderDataset(Dataset):
    """One folder per identity, as a torch Dataset.

    Items are dicts ``{"image": float32 (3, H, W) in [-1, 1], "identity": int}``; images are
    decoded to RGB, normalised with insightface's ``(x/255 - 0.5)/0.5``, then ``transform`` (if
    any) is applied to the tensor. Hidden files and folders (``.name``) are ignored, and so are
    identity folders without images (with a warning), so that labels stay dense.

    Args:
        root: the folder holding one sub-folder per identity.
        transform: optional callable applied to the float image tensor.
        on_error: ``"raise"`` stops on an undecodable image naming the file; ``"skip"`` replaces
            it with the next decodable item and counts it in ``skipped``.
        image_size: resize every image to this size (one int: a square; ``(height, width)``)
            with a bilinear filter before normalising; ``None`` keeps each image's own size.

    Attributes:
        classes: identity folder names, sorted; label ``i`` is ``classes[i]``.
        class_to_idx: name -> label.
        samples: ``(path, label)`` per image, grouped by label, sorted by path.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        on_error: str = "raise",
        image_size: int | tuple[int, int] | None = None,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.image_size = image_size_pair(image_size)
        self.root = Path(root)
        if not self.root.is_dir():
            raise missing_folder(
                self.root, "image folder",
                "expected a folder with one sub-folder per identity (root/<identity>/<image>.jpg)"
            )
        self.transform = transform
        self.on_error = on_error
        folders = sorted(
            entry for entry in self.root.iterdir() if entry.is_dir() and not _hidden(entry)
        )
        images_per_folder = {folder.name: _image_files(folder) for folder in folders}
        empty = [name for name, files in images_per_folder.items() if not files]
        self.classes = [name for name, files in images_per_folder.items() if files]
        if not self.classes:
            raise DataFormatError(
                f"{self.root}: expected one sub-folder per identity holding images "
                f"({'/'.join(IMAGE_EXTENSIONS)}), found {len(folders)} sub-folders and no image "
                "in any of them; point root at the folder whose sub-folders are the identities"
            )
        if empty:
            warnings.warn(
                f"{self.root}: {len(empty)} identity folders hold no image and are ignored "
                f"(e.g. {', '.join(empty[:3])})",
                stacklevel=2,
            )
        self.class_to_idx = {name: label for label, name in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = [
            (path, label)
            for label, name in enumerate(self.classes)
            for path in images_per_folder[name]
        ]
        self._bad: set[int] = set()

    @property
    def num_classes(self) -> int:
        """Number of identities."""
        return len(self.classes)

    @property
    def targets(self) -> list[int]:
        """The label of every sample, in dataset order."""
        return [label for _, label in self.samples]

    @property
    def skipped(self) -> int:
        """Number of undecodable images skipped so far (``on_error="skip"``)."""
        return len(self._bad)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        for attempt in range(len(self)):
            position = (index + attempt) % len(self)
            if position in self._bad:
                continue
            path, label = self.samples[position]
            try:
                pixels = decode_rgb(path.read_bytes(), str(path))
            except DataFormatError:
                if self.on_error == "raise":
                    raise
                if not self._bad:
                    warnings.warn(
                        f"{path}: undecodable image skipped; further skips are only counted "
                        "(dataset.skipped)",
                        stacklevel=2,
                    )
                self._bad.add(position)
                continue
            if self.image_size is not None:
                pixels = resize_rgb(pixels, self.image_size)
            image = to_float_image(hwc_to_chw_tensor(pixels))
            if self.transform is not None:
                image = self.transform(image)
            return {"image": image, "identity": label}
        raise DataFormatError(f"{self.root}: none of its {len(self)} images could be decoded")


@dataclass(frozen=True)
class LfwPair:
    """One line of an LFW pairs file.

    Attributes:
        name1, index1, name2, index2: the two images (``name2 == name1`` for matched pairs).
        same: True for a matched pair (a 3-field line).
        fold: the fold (LFW "set") the pair belongs to, from 0.
        line: the line number in the file, for messages.
    """

    name1: str
    index1: int
    name2: str
    index2: int
    same: bool
    fold: int
    line: int


def parse_lfw_pairs(path: str | os.PathLike) -> list[LfwPair]:
    """Parse an LFW pairs file (``pairs.txt``, ``pairsDevTrain.txt``, ``pairsDevTest.txt``).

    Returns:
        The pairs in file order; each fold holds ``n`` matched then ``n`` mismatched pairs.

    Raises:
        MissingDataError: no such file, or a folder.
        DataFormatError: a malformed header or line, a wrong number of lines, or a fold whose
            matched/mismatched counts differ from the header's ``n``.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "LFW pairs file",
                           "expected a text file in LFW's pairs.txt format (data/README.md)")
    numbered = [
        (number, line.split())
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if line.strip()
    ]
    if not numbered:
        raise DataFormatError(f"{path}: expected an LFW pairs file, found an empty file")
    header_line, header = numbered[0]
    if not 1 <= len(header) <= 2 or not all(field.isdigit() and int(field) > 0 for field in header):
        raise DataFormatError(
            f"{path}: line {header_line}: expected the header '<folds> <pairs per fold>' "
            f"(e.g. '10 300'), found {' '.join(header)!r}"
        )
    folds, per_fold = (1, int(header[0])) if len(header) == 1 else map(int, header)
    lines = numbered[1:]
    if len(lines) != 2 * folds * per_fold:
        raise DataFormatError(
            f"{path}: the header announces {folds} folds x ({per_fold} matched + {per_fold} "
            f"mismatched) = {2 * folds * per_fold} pairs, found {len(lines)} pair lines"
        )
    pairs = [
        _parse_pair_line(path, number, fields, position // (2 * per_fold))
        for position, (number, fields) in enumerate(lines)
    ]
    for fold in range(folds):
        matched = sum(pair.same for pair in pairs if pair.fold == fold)
        if matched != per_fold:
            raise DataFormatError(
                f"{path}: fold {fold} (lines {lines[fold * 2 * per_fold][0]}.."
                f"{lines[(fold + 1) * 2 * per_fold - 1][0]}) holds {matched} matched pairs, "
                f"expected {per_fold} matched and {per_fold} mismatched"
            )
    return pairs


def lfw_image_path(root: str | os.PathLike, name: str, index: int) -> Path | None:
    """``root/name/name_%04d.<ext>`` for the first image extension that exists, else None."""
    stem = Path(root) / name / f"{name}_{index:04d}"
    for extension in IMAGE_EXTENSIONS:
        candidate = stem.with_name(stem.name + extension)
        if candidate.is_file():
            return candidate
    return None


def resolve_lfw_pairs(pairs: Sequence[LfwPair], root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Image paths of each pair under an LFW-style folder (``root/name/name_0001.jpg``).

    Raises:
        MissingDataError: some images do not exist (all of them are counted, a few listed).
    """
    if not Path(root).is_dir():
        raise missing_folder(root, "LFW image folder", "expected root/NAME/NAME_0001.jpg")
    resolved, missing = [], []
    for pair in pairs:
        paths = []
        for name, index in ((pair.name1, pair.index1), (pair.name2, pair.index2)):
            path = lfw_image_path(root, name, index)
            if path is None:
                missing.append(f"{name}/{name}_{index:04d}.jpg (pairs line {pair.line})")
            paths.append(path)
        resolved.append((paths[0], paths[1]))
    if missing:
        raise MissingDataError(
            f"{root}: {len(missing)} images named by the pairs file are missing, e.g. "
            f"{'; '.join(missing[:3])}; expected the LFW layout root/NAME/NAME_0001.jpg "
            f"(extensions {', '.join(IMAGE_EXTENSIONS)})"
        )
    return resolved


def _parse_pair_line(path: Path, number: int, fields: list[str], fold: int) -> LfwPair:
    try:
        if len(fields) == 3:
            return LfwPair(fields[0], _positive(fields[1]), fields[0], _positive(fields[2]),
                           True, fold, number)
        if len(fields) == 4:
            return LfwPair(fields[0], _positive(fields[1]), fields[2], _positive(fields[3]),
                           False, fold, number)
    except ValueError:
        pass
    raise DataFormatError(
        f"{path}: line {number}: expected 'name i j' (matched) or 'name1 i name2 j' "
        f"(mismatched) with positive image numbers, found {' '.join(fields)!r}"
    )


def _positive(field: str) -> int:
    value = int(field)
    if value <= 0:
        raise ValueError(field)
    return value


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
