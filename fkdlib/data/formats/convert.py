"""Conversions between image folders, insightface RecordIO and verification ``.bin`` files.

Each conversion keeps encoded image bytes unchanged whenever they are JPEG or PNG, so a round
trip (folder -> rec -> folder) gives bit-identical files; other encodings (BMP) are re-encoded
(JPEG at ``quality`` for RecordIO, as mxnet's ``pack_img``; PNG for ``.bin``). Every output is
atomic: RecordIO and ``.bin`` files through temporary files, output folders by building a
hidden sibling folder and renaming it into place, so a refused input writes nothing.

Output folder layouts:

* ``rec_to_folder``: ``OUT/<label>/<key>.<ext>``, ``<label>`` zero-padded to one width so that
  sorted folder names give back the labels, ``<key>`` the record key (8 digits).
* ``bin_to_folder``: ``OUT/pair_<k>/0.<ext>`` and ``1.<ext>`` (``<k>`` zero-padded, 5 digits at
  least) plus ``OUT/issame.txt`` with one ``1`` (same person) or ``0`` per pair, in pair order.
* ``lfw_to_sklearn_cache``: ``DATA_HOME/lfw_home/`` in scikit-learn's LFW cache layout (see
  :mod:`.sklearn_lfw`), from an LFW folder and ``pairs.txt`` obtained some other way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError, DataFormatError
from ...io import new_folders
from .folders import ImageFolderDataset, parse_lfw_pairs, resolve_lfw_pairs
from .images import (
    IMAGE_EXTENSIONS,
    decode_rgb,
    encode_jpeg,
    encode_png,
    extension_for,
    sniff_format,
)
from .recordio import RecordIODataset, RecordIOWriter, write_identity_records
from .sklearn_lfw import LFW_IMAGE_SIZE
from .verification_bin import read_verification_bin, save_verification_bin


@dataclass(frozen=True)
class ConversionSummary:
    """What a conversion wrote.

    Attributes:
        output: the file or folder written (for RecordIO, the ``.rec``).
        images: number of images written.
        identities: number of identities (RecordIO / folders), else 0.
        pairs: number of verification pairs (``.bin``), else 0.
        reencoded: images that were not JPEG/PNG and had to be re-encoded.
    """

    output: Path
    images: int
    identities: int = 0
    pairs: int = 0
    reencoded: int = 0

    def describe(self) -> str:
        """One line for the command line."""
        parts = [f"{self.images} images"]
        if self.identities:
            parts.append(f"{self.identities} identities")
        if self.pairs:
            parts.append(f"{self.pairs} pairs")
        if self.reencoded:
            parts.append(f"{self.reencoded} re-encoded")
        return f"wrote {self.output}: " + ", ".join(parts)


def folder_to_rec(
    src_dir: str | os.PathLike, out_prefix: str | os.PathLike, quality: int = 95
) -> ConversionSummary:
    """Pack an identity-folder tree into insightface's ``.rec/.idx/property``.

    Identities are the sorted sub-folder names (labels 0..C-1); the record layout is
    insightface's (see :mod:`.recordio`). All images must share one size, which ``property``
    records. Every image is decoded once to validate it.

    Args:
        src_dir: root of ``<identity>/<image>`` folders.
        out_prefix: output prefix, e.g. ``data/webface/train`` (gives ``train.rec``,
            ``train.idx`` and ``data/webface/property``).
        quality: JPEG quality for images that must be re-encoded (not JPEG/PNG).
    """
    if not 1 <= quality <= 100:
        raise ConfigError(f"--quality must be in 1..100, got {quality}")
    dataset = ImageFolderDataset(src_dir)
    state = {"size": None, "reencoded": 0}

    def encoded_images() -> Iterator[bytes]:
        for path, _ in dataset.samples:
            data = path.read_bytes()
            pixels = decode_rgb(data, str(path))
            size = state["size"] = state["size"] or pixels.shape[:2]
            if pixels.shape[:2] != size:
                raise DataFormatError(
                    f"{path}: expected {size[0]}x{size[1]} pixels like the first image, found "
                    f"{pixels.shape[0]}x{pixels.shape[1]}; a face .rec holds aligned crops of "
                    "one size: align or resize the images first"
                )
            if sniff_format(data) is None:
                data = encode_jpeg(pixels, quality)
                state["reencoded"] += 1
            yield data

    with RecordIOWriter(out_prefix) as writer:
        identities = write_identity_records(writer, dataset.targets, encoded_images())
        writer.set_property(identities, *state["size"])
    return ConversionSummary(
        writer.rec_path, len(dataset), identities=identities, reencoded=state["reencoded"]
    )


def rec_to_folder(prefix: str | os.PathLike, out_dir: str | os.PathLike) -> ConversionSummary:
    """Unpack an insightface ``.rec`` into ``OUT/<label>/<key>.<ext>``, bytes unchanged."""
    dataset = RecordIODataset(prefix)
    width = len(str(dataset.num_classes - 1))
    labels_seen = set()
    with _atomic_directory(Path(out_dir)) as staging:
        for index in range(len(dataset)):
            key = dataset.image_key(index)
            identity, payload = dataset.read_image_record(key)
            extension = extension_for(payload, f"{dataset.records.rec_path} (record {key})")
            folder = staging / f"{identity:0{width}d}"
            folder.mkdir(exist_ok=True)
            (folder / f"{key:08d}{extension}").write_bytes(payload)
            labels_seen.add(identity)
    return ConversionSummary(Path(out_dir), len(dataset), identities=len(labels_seen))


def pairs_to_bin(
    folder: str | os.PathLike, pairs_file: str | os.PathLike, out_bin: str | os.PathLike
) -> ConversionSummary:
    """Build an insightface verification ``.bin`` from an LFW-style folder and pairs file.

    The images go in as they are stored (JPEG/PNG bytes unchanged; other formats as PNG), so
    align and crop them beforehand if the model expects aligned 112x112 faces.
    """
    pairs = parse_lfw_pairs(pairs_file)
    encoded, reencoded = [], 0
    for first, second in resolve_lfw_pairs(pairs, folder):
        for path in (first, second):
            data = path.read_bytes()
            if sniff_format(data) is None:
                data = encode_png(decode_rgb(data, str(path)))
                reencoded += 1
            encoded.append(data)
    save_verification_bin(out_bin, encoded, [pair.same for pair in pairs])
    return ConversionSummary(Path(out_bin), len(encoded), pairs=len(pairs), reencoded=reencoded)


def bin_to_folder(bin_path: str | os.PathLike, out_dir: str | os.PathLike) -> ConversionSummary:
    """Unpack a verification ``.bin`` into ``OUT/pair_<k>/{0,1}.<ext>`` and ``OUT/issame.txt``.

    The whole file is read, checked by the restricted unpickler and every image decoded
    before anything is written: a refused file leaves no output.
    """
    encoded, issame = read_verification_bin(bin_path)
    extensions = []
    for index, data in enumerate(encoded):
        source = f"{bin_path} (image {index}, pair {index // 2})"
        decode_rgb(data, source)
        extensions.append(extension_for(data, source))
    width = max(5, len(str(len(issame) - 1)))
    with _atomic_directory(Path(out_dir)) as staging:
        for pair in range(len(issame)):
            folder = staging / f"pair_{pair:0{width}d}"
            folder.mkdir()
            for side in (0, 1):
                index = 2 * pair + side
                (folder / f"{side}{extensions[index]}").write_bytes(encoded[index])
        (staging / "issame.txt").write_text("".join(f"{int(same)}\n" for same in issame))
    return ConversionSummary(Path(out_dir), len(encoded), pairs=len(issame))


def lfw_to_sklearn_cache(
    folder: str | os.PathLike, pairs_file: str | os.PathLike, data_home: str | os.PathLike,
    dev_pairs_dir: str | os.PathLike | None = None,
) -> ConversionSummary:
    """Install LFW View 2 into scikit-learn's cache layout, for offline ``--eval lfw``.

    ``folder`` holds LFW's funneled (or deep-funneled) 250 x 250 images in their own layout
    (``NAME/NAME_0001.jpg``) and ``pairs_file`` is LFW's ``pairs.txt``: every image of each person
    its pairs name goes to ``DATA_HOME/lfw_home/lfw_funneled/`` (JPEG bytes unchanged, anything
    else re-encoded as JPEG), beside a copy of ``pairs.txt``. scikit-learn finds image ``k`` of a
    person as the ``k``-th file of the person's sorted folder, so a person's images must be
    numbered ``0001`` to ``N`` without gaps, and nothing else is copied into the folder.
    scikit-learn also checks that ``pairsDevTrain.txt`` and ``pairsDevTest.txt`` exist, though
    its ``10_folds`` subset reads only ``pairs.txt``: they are copied from ``dev_pairs_dir``
    when given, else written from the first and the last fold of ``pairs.txt`` (then only the
    ``10_folds`` subset of that cache is LFW's). ``lfw_home`` must be new or empty.

    Raises:
        MissingDataError: a missing pairs file, folder or image named by a pair.
        DataFormatError: a malformed pairs file, a person's images not numbered 1..N, an
            undecodable image, or one that is not 250 x 250 (scikit-learn crops fixed rows
            and columns of LFW's 250 x 250 images).
    """
    pairs = parse_lfw_pairs(pairs_file)
    dev_files = {}
    if dev_pairs_dir is not None:
        for filename in ("pairsDevTrain.txt", "pairsDevTest.txt"):
            parse_lfw_pairs(Path(dev_pairs_dir) / filename)
            dev_files[filename] = (Path(dev_pairs_dir) / filename).read_bytes()
    resolve_lfw_pairs(pairs, folder)  # every named image exists
    if not dev_files:
        per_fold = sum(pair.same for pair in pairs if pair.fold == 0)
        lines = Path(pairs_file).read_text(encoding="utf-8").splitlines()
        body = [line for line in lines[1:] if line.strip()]
        dev_files = {name: "\n".join([str(per_fold), *part, ""]).encode() for name, part in (
            ("pairsDevTrain.txt", body[:2 * per_fold]),
            ("pairsDevTest.txt", body[-2 * per_fold:]))}
    lfw_home = Path(data_home) / "lfw_home"
    names = sorted({name for pair in pairs for name in (pair.name1, pair.name2)})
    written = reencoded = 0
    # Written while checked: a refused image removes the staging folder, so nothing is left.
    with _atomic_directory(lfw_home) as staging:
        for name in names:
            person = staging / "lfw_funneled" / name
            person.mkdir(parents=True)
            for index, path in enumerate(_numbered_lfw_images(Path(folder), name), start=1):
                data = path.read_bytes()
                pixels = decode_rgb(data, str(path))
                if pixels.shape[:2] != (LFW_IMAGE_SIZE, LFW_IMAGE_SIZE):
                    raise DataFormatError(
                        f"{path}: {pixels.shape[1]} x {pixels.shape[0]} pixels; scikit-learn "
                        f"crops fixed rows and columns of LFW's {LFW_IMAGE_SIZE} x "
                        f"{LFW_IMAGE_SIZE} funneled images: use LFW's funneled or deep-funneled "
                        "images as published"
                    )
                if sniff_format(data) != "jpeg":
                    data = encode_jpeg(pixels)
                    reencoded += 1
                (person / f"{name}_{index:04d}.jpg").write_bytes(data)
                written += 1
        (staging / "pairs.txt").write_bytes(Path(pairs_file).read_bytes())
        for filename, data in dev_files.items():
            (staging / filename).write_bytes(data)
    return ConversionSummary(lfw_home, written, identities=len(names), pairs=len(pairs),
                             reencoded=reencoded)


def _numbered_lfw_images(folder: Path, name: str) -> list[Path]:
    """``folder/name/name_0001.<ext>`` .. ``name_N.<ext>``, checked to be numbered without gaps."""
    numbered: dict[int, Path] = {}
    for path in (folder / name).iterdir():
        stem, _, number = path.stem.rpartition("_")
        if stem == name and number.isdigit() and path.suffix.lower() in IMAGE_EXTENSIONS:
            numbered[int(number)] = path
    if sorted(numbered) != list(range(1, len(numbered) + 1)):
        raise DataFormatError(
            f"{folder / name}: images numbered {sorted(numbered)[:8]}...; scikit-learn finds "
            f"image k of a person as the k-th file of the folder, so expected {name}_0001 to "
            f"{name}_{len(numbered):04d} without gaps, as LFW publishes them"
        )
    return [numbered[k] for k in sorted(numbered)]


@contextlib.contextmanager
def _atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a hidden staging folder beside ``target``; rename it to ``target`` on success.

    On failure the staging folder goes, and so do the parent folders made for it: a failed
    conversion leaves nothing behind."""
    if target.exists() and not target.is_dir():
        raise ConfigError(
            f"{target}: expected a new (or empty) output folder, found a file; choose another "
            "output folder or remove this file"
        )
    if target.exists() and any(target.iterdir()):
        raise ConfigError(
            f"{target}: the output folder already exists and is not empty; choose a new folder "
            "or remove this one"
        )
    with new_folders(target.parent, writing=target):
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                            dir=target.parent))
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(target)) from None
        try:
            yield staging
            if target.exists():
                target.rmdir()  # empty (checked above); os.replace cannot overwrite it everywhere
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
