"""The official LFW verification pairs through scikit-learn's downloader and cache.

Reads View 2 of Labeled Faces in the Wild (Huang, Ramesh, Berg and Learned-Miller, "Labeled
Faces in the Wild: A Database for Studying Face Recognition in Unconstrained Environments",
UMass tech. report 07-49, 2007): the 6,000 pairs of ``pairs.txt``, 10 folds of 300 matched
then 300 mismatched pairs, in the funneled (roughly aligned) 250 x 250 images. The files are
fetched and cached by scikit-learn's :func:`sklearn.datasets.fetch_lfw_pairs`
(``subset="10_folds"``), so any laptop gets a real benchmark with no manual step: the first
call downloads about 230 MB into ``<data_home>/lfw_home``, later calls read that cache.

scikit-learn's cache layout (``sklearn/datasets/_lfw.py``, ``_check_fetch_lfw``)::

    <data_home>/lfw_home/pairsDevTrain.txt, pairsDevTest.txt, pairs.txt   (all three required)
    <data_home>/lfw_home/lfw_funneled/<name>/<name>_0001.jpg ...          (250 x 250 JPEGs)
    <data_home>/lfw_home/joblib/...                    (its memoised decoded arrays)

Each image is cropped to :data:`SQUARE_FACE_SLICE` (the face, square) by scikit-learn, then
resized here with Pillow to the model's input resolution. scikit-learn does not return the
person names, so they are read from the same ``pairs.txt`` with
:func:`~fkdlib.data.formats.folders.parse_lfw_pairs`; scikit-learn keeps the file's pair order
(it reads the lines in order and keeps those with 3 or 4 fields), which is checked against its
labels.

:func:`write_sklearn_lfw_cache` writes a fake cache in that same layout from given faces, so
tests build an offline LFW without a network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...errors import ConfigError, DataFormatError, MissingDataError
from ...io import atomic_write_bytes, atomic_write_text
from .folders import parse_lfw_pairs
from .images import encode_jpeg, hwc_to_chw_tensor

LFW_MEAN_EYES = np.array([[104.33, 111.58], [145.51, 110.76]])
"""Eye centres ``(x, y)`` of LFW's mean face in its 250 x 250 frame: the mean of 2,000
deep-funneled images (every fifth in name order), each eye the darkest point of the averaged
eye band, located to sub-pixel precision by a parabola through the darkest pixel and its
neighbours. (Measured on the deep-funneled release, which puts faces in the same frame as the
funneled one scikit-learn downloads.)"""


def arcface_square_slice(eyes: np.ndarray) -> tuple[slice, slice]:
    """The square ``(rows, cols)`` crop whose resize to 112 x 112 puts the two eye centres
    ``eyes`` (``[[x, y], [x, y]]``, pixel centres at integers) on the eye centres of the ArcFace
    template (scale and translation, rounded to whole pixels) - the framing every model here
    is trained on, SynthFace's aligned crops included."""
    from ..synthface.render import ARCFACE_TEMPLATE_112

    template = ARCFACE_TEMPLATE_112[:2]
    scale = np.linalg.norm(template[1] - template[0]) / np.linalg.norm(eyes[1] - eyes[0])
    side = round(112 / scale)
    scale = 112 / side
    # pixel centres at integers: template u = (x - start + 0.5) * scale - 0.5
    start = (eyes.mean(0) + 0.5) - (template.mean(0) + 0.5) / scale
    cols, rows = (int(round(v)) for v in start)
    return slice(rows, rows + side), slice(cols, cols + side)


# scikit-learn's default slice_ (rows 70:195, cols 78:172) is a narrow face region made for its
# eigenfaces demo; face models take square crops framed like the ArcFace template, so the crop
# is the square that puts LFW's mean eyes on the template's eyes.
SQUARE_FACE_SLICE: tuple[slice, slice] = arcface_square_slice(LFW_MEAN_EYES)
"""``(rows, cols)`` crop of the 250 x 250 funneled LFW image passed to scikit-learn: rows
51:182, cols 60:191 (131 x 131), LFW's mean eyes on the ArcFace template's."""

LFW_IMAGE_SIZE = 250
"""Side of the funneled LFW images (and of the canvas :func:`write_sklearn_lfw_cache` uses)."""

_PAIR_FILES = ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt")


@dataclass(frozen=True)
class LfwPairsSet:
    """The LFW View 2 pairs, decoded.

    Attributes:
        images: ``(2N, 3, R, R)`` uint8 RGB tensor; pair ``i`` is rows ``2i`` and ``2i + 1``.
        issame: ``(N,)`` bool, True where the pair shows one person.
        fold: ``(N,)`` int64 in ``0..9``, the fold of ``pairs.txt`` each pair belongs to.
        identities: ``(2N,)`` str, the person (LFW folder name) of each image row.
        source: where the pairs were read from.
    """

    images: torch.Tensor
    issame: np.ndarray
    fold: np.ndarray
    identities: np.ndarray
    source: str


def load_sklearn_lfw_pairs(
    resolution: int,
    data_home: str | os.PathLike | None = None,
    download: bool = True,
) -> LfwPairsSet:
    """Load the 6,000 LFW View 2 pairs via scikit-learn, cropped square and resized.

    Args:
        resolution: side of the returned square images (e.g. 112).
        data_home: scikit-learn's data folder; ``None`` means its default
            (``$SCIKIT_LEARN_DATA`` or ``~/scikit_learn_data``).
        download: let scikit-learn download what is missing (about 230 MB, once).

    Raises:
        ConfigError: ``resolution`` is not a positive int.
        MissingDataError: the cache is missing or incomplete and could not be downloaded.
        DataFormatError: ``pairs.txt`` disagrees with what scikit-learn decoded.
    """
    if not isinstance(resolution, Integral) or isinstance(resolution, bool) or resolution <= 0:
        raise ConfigError(
            f"resolution must be a positive int (the side of the square output images, "
            f"e.g. 112), got {resolution!r}"
        )
    # Deferred: sklearn.datasets is slow to import and only this loader needs it.
    from sklearn.datasets import fetch_lfw_pairs, get_data_home

    lfw_home = Path(get_data_home(data_home)) / "lfw_home"
    try:
        bunch = fetch_lfw_pairs(
            subset="10_folds", color=True, funneled=True, resize=1.0,
            slice_=SQUARE_FACE_SLICE, data_home=data_home, download_if_missing=download,
        )
    except OSError as error:
        raise MissingDataError(
            f"{lfw_home}: scikit-learn's LFW cache is missing or incomplete ({error}); it needs "
            "pairs.txt, pairsDevTrain.txt, pairsDevTest.txt and lfw_funneled/<name>/"
            "<name>_0001.jpg there. To get it: run once with network access and download=True "
            "(scikit-learn downloads about 230 MB into that folder), or copy an existing "
            "scikit-learn LFW cache (lfw_home/ with lfw_funneled/ and pairs.txt) there, or pass "
            "data_home= pointing at the folder that holds lfw_home/"
        ) from error
    except (IndexError, ValueError) as error:
        raise DataFormatError(
            f"{lfw_home}: scikit-learn could not match pairs.txt to the images in "
            f"lfw_funneled/ ({error!r}); a pair names an image number beyond a person's files "
            "or a malformed line: restore the cache (delete lfw_home/ and download again)"
        ) from error

    pairs_path = lfw_home / "pairs.txt"
    records = parse_lfw_pairs(pairs_path)
    issame = np.array([pair.same for pair in records], dtype=bool)
    target = np.asarray(bunch.target).astype(bool)
    if issame.shape != target.shape or not np.array_equal(issame, target):
        raise DataFormatError(
            f"{pairs_path}: its {len(issame)} pairs (same/different per line) disagree with the "
            f"{len(target)} labels scikit-learn returned from its memoised cache "
            f"({lfw_home / 'joblib'}); pairs.txt was changed after scikit-learn cached it, so "
            "the person names would not match the images: delete the joblib/ folder there to "
            "rebuild the cache, or restore pairs.txt"
        )
    return LfwPairsSet(
        images=_to_uint8_chw(np.asarray(bunch.pairs), resolution, lfw_home),
        issame=issame,
        fold=np.array([pair.fold for pair in records], dtype=np.int64),
        identities=np.array([name for pair in records for name in (pair.name1, pair.name2)],
                            dtype=str),
        source=(f"{lfw_home} (scikit-learn fetch_lfw_pairs, subset='10_folds', funneled, "
                f"crop rows {SQUARE_FACE_SLICE[0].start}:{SQUARE_FACE_SLICE[0].stop} x cols "
                f"{SQUARE_FACE_SLICE[1].start}:{SQUARE_FACE_SLICE[1].stop} resized to "
                f"{resolution}x{resolution})"),
    )


def write_sklearn_lfw_cache(
    data_home: str | os.PathLike,
    faces: Mapping[str, Sequence[np.ndarray]],
    folds: int = 10,
    pairs_per_fold: int = 300,
    seed: int = 0,
) -> Path:
    """Write a fake scikit-learn LFW cache (its own on-disk layout) from the given faces.

    Each face (``(H, W, 3)`` or ``(H, W)`` uint8, any size) is resized to the crop's size and pasted
    into :data:`SQUARE_FACE_SLICE` of a grey 250 x 250 canvas, saved as JPEG at
    ``<data_home>/lfw_home/lfw_funneled/<name>/<name>_<i:04d>.jpg`` (``i`` from 1). ``pairs.txt``
    gets ``folds`` folds of ``pairs_per_fold`` matched then ``pairs_per_fold`` mismatched pairs,
    drawn with ``numpy.random.default_rng(seed)``; ``pairsDevTrain.txt`` and
    ``pairsDevTest.txt`` (required by scikit-learn to exist) repeat the first and last fold.
    With these, ``fetch_lfw_pairs(..., download_if_missing=False)`` works offline.

    Returns:
        ``data_home`` as a Path.

    Raises:
        ConfigError: bad counts or names, a non-image array, fewer than two identities with
            images or none with two images, or a non-empty ``lfw_home`` already there.
    """
    for label, value in (("folds", folds), ("pairs_per_fold", pairs_per_fold)):
        if not isinstance(value, Integral) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{label} must be a positive int, got {value!r}")
    names = sorted(name for name, images in faces.items() if len(images) > 0)
    for name in names:
        if not name or name != name.strip() or any(c.isspace() or c in "/\\" for c in name) \
                or name.startswith("."):
            raise ConfigError(
                f"identity names become LFW folder names and pairs.txt fields: expected no "
                f"whitespace, slashes or leading dot (e.g. 'Aaron_Eckhart'), got {name!r}"
            )
    with_two = [name for name in names if len(faces[name]) >= 2]
    if len(names) < 2 or not with_two:
        raise ConfigError(
            f"an LFW pairs file needs at least two identities with images (mismatched pairs) "
            f"and one with two images or more (matched pairs); got {len(names)} identities "
            f"with images, {len(with_two)} of them with two or more"
        )
    data_home = Path(data_home)
    lfw_home = data_home / "lfw_home"
    if lfw_home.is_dir() and any(lfw_home.iterdir()):
        raise ConfigError(
            f"{lfw_home} already holds files; write_sklearn_lfw_cache writes a fresh cache "
            "(scikit-learn's memoised arrays there would go stale): pass an empty data_home"
        )

    for name in names:
        for number, face in enumerate(faces[name], start=1):
            atomic_write_bytes(
                lfw_home / "lfw_funneled" / name / f"{name}_{number:04d}.jpg",
                encode_jpeg(_on_canvas(face, f"faces[{name!r}][{number - 1}]")),
            )

    rng = np.random.default_rng(seed)
    fold_lines = []
    for _ in range(folds):
        lines = []
        for _ in range(pairs_per_fold):
            name = with_two[rng.integers(len(with_two))]
            first, second = sorted(rng.choice(len(faces[name]), size=2, replace=False) + 1)
            lines.append(f"{name}\t{first}\t{second}")
        for _ in range(pairs_per_fold):
            name1, name2 = (names[i] for i in rng.choice(len(names), size=2, replace=False))
            index1 = rng.integers(len(faces[name1])) + 1
            index2 = rng.integers(len(faces[name2])) + 1
            lines.append(f"{name1}\t{index1}\t{name2}\t{index2}")
        fold_lines.append(lines)
    atomic_write_text(lfw_home / "pairs.txt", "\n".join(
        [f"{folds}\t{pairs_per_fold}"] + [line for lines in fold_lines for line in lines]) + "\n")
    for filename, lines in (("pairsDevTrain.txt", fold_lines[0]),
                            ("pairsDevTest.txt", fold_lines[-1])):
        atomic_write_text(lfw_home / filename, "\n".join([str(pairs_per_fold), *lines]) + "\n")
    return data_home


def _to_uint8_chw(pairs: np.ndarray, resolution: int, lfw_home: Path) -> torch.Tensor:
    """scikit-learn's ``(N, 2, S, S, 3)`` float pairs (``S`` the crop's side) ->
    ``(2N, 3, R, R)`` uint8."""
    if pairs.ndim != 5 or pairs.shape[1] != 2 or pairs.shape[4] != 3:
        raise DataFormatError(
            f"{lfw_home}: expected scikit-learn's colour pairs of shape (N, 2, H, W, 3), "
            f"got {pairs.shape}"
        )
    # scikit-learn's _load_imgs divides the decoded uint8 by 255 (float32 in [0, 1], though its
    # docstring says "between 0 and 255"); with resize=1.0 Pillow returns the crop unchanged, so
    # x * 255 is an exact integer. A 0..255 float array (a future version) is accepted as is.
    low, high = (float(pairs.min()), float(pairs.max())) if pairs.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise DataFormatError(
            f"{lfw_home}: expected scikit-learn's pixels in [0, 1] (or [0, 255]), "
            f"found values in [{low}, {high}]"
        )
    scale = 255.0 if high <= 1.0 else 1.0
    flat = pairs.reshape(-1, *pairs.shape[2:])
    images = torch.empty((len(flat), 3, resolution, resolution), dtype=torch.uint8)
    for row, face in enumerate(flat):
        pixels = np.clip(np.rint(face * scale), 0, 255).astype(np.uint8)
        if pixels.shape[:2] != (resolution, resolution):
            pixels = np.asarray(Image.fromarray(pixels).resize(
                (resolution, resolution), Image.Resampling.BICUBIC))  # antialiased
        images[row] = hwc_to_chw_tensor(pixels)
    return images


def _on_canvas(face: np.ndarray, label: str) -> np.ndarray:
    """A face resized to the crop's size and pasted into SQUARE_FACE_SLICE of a grey 250 x 250."""
    face = np.asarray(face)
    if face.dtype != np.uint8 or not (face.ndim == 2 or (face.ndim == 3 and face.shape[2] == 3)) \
            or min(face.shape[:2]) == 0:
        raise ConfigError(
            f"{label}: expected an (H, W, 3) or (H, W) uint8 image, got {face.dtype} array of "
            f"shape {face.shape}"
        )
    rows, cols = SQUARE_FACE_SLICE
    size = (cols.stop - cols.start, rows.stop - rows.start)
    canvas = np.full((LFW_IMAGE_SIZE, LFW_IMAGE_SIZE, 3), 128, dtype=np.uint8)
    canvas[rows, cols] = np.asarray(
        Image.fromarray(face).convert("RGB").resize(size, Image.Resampling.BICUBIC))
    return canvas
