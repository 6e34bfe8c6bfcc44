"""``fkd synth export``: SynthFace written out in the layouts real face datasets come in.

The export is an offline stand-in for real data: the training split plays CASIA-WebFace /
MS1M (an identity-folder tree and insightface's ``train.rec``), the test split plays the
verification sets (insightface's ``lfw.bin``, ``cfp_fp.bin`` and ``agedb_30.bin``, and LFW's
``pairs.txt`` over an LFW-style folder). A user can try the real-data path of the notebooks
(``data="rec:OUT_DIR"``, or ``data="folder:OUT_DIR"`` for the folders) and ``fkd convert``
without downloading anything, and end-to-end tests can drive them on real formats offline.

On-disk layout of ``OUT_DIR`` (every group of ``layout`` selected)::

    train/<identity>/<identity>_<k>.png    training split, k = 0001, 0002, ... per identity
    test/<identity>/<identity>_<k>.png     test split (identities disjoint from train/)
    train.rec  train.idx  property         train/ packed by fkdlib's folder_to_rec
    lfw.bin  cfp_fp.bin  agedb_30.bin      the benchmark's LFW-, CFP-FP- and AgeDB-like lists
    pairs.txt                              the LFW-like list in LFW's format, over test/
    synthface_export.json                  what was exported (profile, seed, sizes)

Read the RecordIO files as ``RecordIODataset(OUT_DIR)`` or ``RecordIODataset(OUT_DIR /
"train.rec")`` (and ``data="rec:OUT_DIR"``): fkdlib takes an existing folder given as prefix
for the dataset folder, so the prefix ``OUT_DIR/train`` names the ``train/`` folder here.

``<identity>`` is ``id`` and the 7-digit global SynthFace identity (``id0000000`` ... in
train, ``id2000000`` ... in test), so the two splits never share a folder name, and sorted
folder names give the split's labels 0, 1, ... in order; ``<k>`` is the 1-based image index
(sorted file names give the dataset order). Images are lossless PNG at the profile's
resolution, so every reader gets back SynthFace's pixels exactly.

The verification lists are those :func:`fkdlib.evaluation.benchmark.face_benchmark` draws on
the test split for the same profile and seed (same functions, sizes and pose / age
thresholds), pair for pair. They are written fold after fold, each fold its positive pairs
then its negative pairs (the order the protocols already have), so insightface's contiguous
equal-block 10-fold split and ``_real_benchmark`` see the protocol's identity-disjoint folds;
``pairs.txt`` lists the same pairs in the same order. The IJB-like template list and the
identification distractors have no such file format and are not exported.

The export is atomic: everything is built in a hidden staging folder beside ``OUT_DIR`` and
renamed into place at the end, so an interrupted export leaves no half-written ``OUT_DIR``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import ConfigError, os_error_reason
from ...io import new_folders
from ...profiles import Profile, get_profile
from ...progress import progress
from ..formats.convert import folder_to_rec
from ..formats.images import encode_png
from ..formats.verification_bin import save_verification_bin
from . import params as P
from . import render as R
from .dataset import SynthFace
from .protocols import PairProtocol, check_identity_disjoint
from .sizes import synthface_data_spec, verification_lists

LAYOUT_GROUPS: tuple[str, ...] = ("folder", "rec", "bins", "pairs")
"""What ``layout`` may select:

* ``"folder"``: ``train/`` and ``test/`` identity folders.
* ``"rec"``: ``train.rec``, ``train.idx`` and ``property``. They are packed from a ``train/``
  folder; without ``"folder"`` that folder is built in the staging area and dropped.
* ``"bins"``: ``lfw.bin``, ``cfp_fp.bin`` and ``agedb_30.bin`` (self-contained).
* ``"pairs"``: ``pairs.txt`` *and* ``test/``, which the file's lines refer to.
"""

MANIFEST_NAME = "synthface_export.json"
"""The file recording an export; ``overwrite=True`` only replaces folders that hold one."""

BIN_FILES: dict[str, str] = {"lfw": "lfw.bin", "cfp_fp": "cfp_fp.bin", "agedb": "agedb_30.bin"}
_MAX_IMAGES_PER_IDENTITY = 9999  # LFW's 4-digit image numbers keep sorted names in order


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_synthface` wrote.

    Attributes:
        out_dir: the export folder.
        identities: identities per split written out (``{"train": 24, "test": 30}``):
            ``train`` when ``train/`` or ``train.rec`` is, ``test`` when ``test/`` is.
        images: images per split, likewise.
        pairs: pairs per verification file (``{"lfw.bin": 120, ..., "pairs.txt": 120}``).
        files: number of files written under ``out_dir`` (images included).
        entries: the top-level entries of ``out_dir``, sorted, folders with a trailing ``/``.
    """

    out_dir: Path
    identities: dict[str, int]
    images: dict[str, int]
    pairs: dict[str, int]
    files: int
    entries: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        parts = [f"{split} {self.identities[split]} identities / {self.images[split]} images"
                 for split in self.images]
        parts += [f"{name} {count} pairs" for name, count in self.pairs.items()]
        return f"wrote {self.out_dir}: " + ", ".join(parts) + f" ({self.files} files)"


def export_synthface(out_dir: str | os.PathLike, profile: str | Profile = "smoke",
                     seed: int = 0, layout: str | Iterable[str] = LAYOUT_GROUPS,
                     overwrite: bool = False, cache_dir: str | os.PathLike | None = None,
                     **profile_overrides: Any) -> ExportSummary:
    """Write SynthFace into ``out_dir`` as real face datasets are laid out (see module doc).

    Writes the training split as an identity-folder tree and an insightface ``train.rec``
    (the offline stand-in for CASIA-WebFace / MS1M), and the test split as an LFW-style
    folder, insightface's ``lfw.bin`` / ``cfp_fp.bin`` / ``agedb_30.bin`` and LFW's
    ``pairs.txt`` (the stand-in for the real verification sets), all sized by the profile
    exactly as the SynthFace benchmark of that profile and seed.

    Args:
        out_dir: the folder to create. It must not exist or be empty.
        profile: a profile name or :class:`~fkdlib.profiles.Profile`; its data sizes,
            resolution, difficulty, folds and ``protocol_scale`` size the export.
        seed: SynthFace seed, and the protocols' seed (as in ``face_benchmark``).
        layout: the groups of :data:`LAYOUT_GROUPS` to write, as a sequence or a
            comma-separated string (``"rec,bins"``); all of them by default.
        overwrite: replace an existing non-empty ``out_dir`` - only one that holds
            :data:`MANIFEST_NAME`, i.e. an earlier export, so that a mistyped path never
            deletes unrelated files. The old folder goes only once the new one is complete.
        cache_dir: SynthFace's array cache (e.g. ``"data/cache"``, the notebooks'); ``None``
            renders without reading or writing a cache.
        **profile_overrides: profile fields to change, e.g. ``test_identities=40``.

    Returns:
        An :class:`ExportSummary`.

    Raises:
        ConfigError: an unknown profile, field or layout group; ``out_dir`` exists and is not
            empty (without ``overwrite``), is a file, or cannot be created; sizes whose
            verification folds cannot be filled.
    """
    profile = get_profile(profile, **profile_overrides)
    groups = _parse_layout(layout)
    target = Path(out_dir)
    _check_target(target, overwrite)
    train_needed = bool({"folder", "rec"} & groups)
    test_needed = bool({"folder", "pairs"} & groups)

    test = SynthFace(**_synthface_kwargs(profile, "test", seed, cache_dir))
    train = SynthFace(**_synthface_kwargs(profile, "train", seed, cache_dir))
    for data in (train, test):
        if data.images_per_identity > _MAX_IMAGES_PER_IDENTITY:
            raise ConfigError(
                f"{data.split} split: {data.images_per_identity} images per identity, but "
                f"LFW-style file names number at most {_MAX_IMAGES_PER_IDENTITY}; lower "
                f"{data.split}_images_per_identity"
            )
    check_identity_disjoint(train.metadata, test.metadata, names=("train", "test"))
    # Drawn before anything is rendered, so that unfillable folds fail at once.
    protocols = (verification_lists(profile, test.metadata, seed)
                 if {"bins", "pairs"} & groups else {})

    identities: dict[str, int] = {}
    images: dict[str, int] = {}
    pairs: dict[str, int] = {}
    with _staged_directory(target.resolve(), overwrite) as staging:
        test_png: list[bytes] | None = None
        if train_needed:
            _write_split(staging / "train", train)
            identities["train"], images["train"] = train.num_identities, len(train)
        if test_needed or "bins" in groups:
            test_png = _write_split(staging / "test" if test_needed else None, test)
            if test_needed:
                identities["test"], images["test"] = test.num_identities, len(test)
        if "rec" in groups:
            # The .rec path, not the prefix: fkdlib reads an existing folder ``train/`` given
            # as prefix as the dataset folder (``train/train.rec``).
            folder_to_rec(staging / "train", staging / "train.rec")
            if "folder" not in groups:
                shutil.rmtree(staging / "train")
        if "bins" in groups:
            for name, protocol in protocols.items():
                order = fold_order(protocol)
                rows = protocol.rows.reshape(-1, 2)[order].reshape(-1)
                save_verification_bin(staging / BIN_FILES[name], [test_png[r] for r in rows],
                                      protocol.issame[order])
                pairs[BIN_FILES[name]] = protocol.num_pairs
        if "pairs" in groups:
            (staging / "pairs.txt").write_text(
                lfw_pairs_text(protocols["lfw"], test.metadata), encoding="utf-8")
            pairs["pairs.txt"] = protocols["lfw"].num_pairs
        _write_manifest(staging, profile, seed, groups, identities, images, pairs)
        files = sum(len(names) for _, _, names in os.walk(staging))
        entries = tuple(sorted(entry.name + ("/" if entry.is_dir() else "")
                               for entry in staging.iterdir()))
    return ExportSummary(target, identities, images, pairs, files, entries)


def fold_order(protocol: PairProtocol) -> np.ndarray:
    """Pair indices in file order: fold by fold, each fold's positives then its negatives
    (stable, so the protocol's own order within each part is kept).

    Raises:
        ConfigError: the folds differ in size, so contiguous equal blocks (how insightface
            and ``_real_benchmark`` split a ``.bin`` into folds) would not give them back.
    """
    if protocol.fold is None:
        raise ConfigError(f"{protocol.name}: an all-pairs list has no folds to write")
    order = np.lexsort((~protocol.issame, protocol.fold))
    fold = protocol.fold[order]
    folds = np.unique(fold).size
    n = fold.size
    if not np.array_equal(np.searchsorted(np.unique(fold), fold), (np.arange(n) * folds) // n):
        raise ConfigError(f"{protocol.name}: folds of unequal size cannot be written as the "
                          "contiguous equal blocks of a verification file")
    return order


def identity_folder(global_identity: int) -> str:
    """Folder name of a SynthFace identity: ``id`` and its 7-digit global id."""
    return f"id{int(global_identity):07d}"


def image_name(global_identity: int, index: int) -> str:
    """LFW-style file name of image ``index`` (0-based) of an identity:
    ``<folder>_<index + 1:04d>.png``."""
    return f"{identity_folder(global_identity)}_{int(index) + 1:04d}.png"


def lfw_pairs_text(protocol: PairProtocol, metadata: pd.DataFrame) -> str:
    """The pair list as LFW's ``pairs.txt``: header ``"<folds>\\t<pairs per fold / 2>"``,
    then per fold its matched pairs ``"name\\ti\\tj"`` and its mismatched pairs
    ``"name1\\ti\\tname2\\tj"``; ``name`` is the identity folder and ``i`` the 1-based image
    number (``name/name_%04d.png``, :func:`~fkdlib.data.formats.lfw_image_path`)."""
    order = fold_order(protocol)
    fold_ids, fold = np.unique(protocol.fold, return_inverse=True)
    per_fold = protocol.num_pairs // fold_ids.size
    positives = np.bincount(fold[protocol.issame], minlength=fold_ids.size)
    if per_fold % 2 or np.any(2 * positives != per_fold):
        raise ConfigError(f"{protocol.name}: LFW's pairs.txt needs as many positive as "
                          "negative pairs in every fold")
    names = [identity_folder(g) for g in metadata["global_identity"].to_numpy()]
    numbers = (metadata["index"].to_numpy() + 1).tolist()
    lines = [f"{fold_ids.size}\t{per_fold // 2}"]
    for k in order:
        a, b = protocol.rows[2 * k], protocol.rows[2 * k + 1]
        if protocol.issame[k]:
            lines.append(f"{names[a]}\t{numbers[a]}\t{numbers[b]}")
        else:
            lines.append(f"{names[a]}\t{numbers[a]}\t{names[b]}\t{numbers[b]}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- helpers


def _synthface_kwargs(profile: Profile, split: str, seed: int,
                      cache_dir: str | os.PathLike | None) -> dict[str, Any]:
    """``SynthFace`` arguments of :func:`~.sizes.synthface_data_spec`."""
    kwargs: dict[str, Any] = {key: value for key, value
                              in synthface_data_spec(profile, split, seed).items()
                              if key != "kind"}
    kwargs["use_cache"] = cache_dir is not None
    if cache_dir is not None:
        kwargs["cache_dir"] = cache_dir
    return kwargs


def _parse_layout(layout: str | Iterable[str]) -> set[str]:
    names = layout.split(",") if isinstance(layout, str) else list(layout)
    groups = {str(name).strip() for name in names if str(name).strip()}
    unknown = sorted(groups - set(LAYOUT_GROUPS))
    if unknown or not groups:
        raise ConfigError(f"layout {layout!r}: expected one or more of "
                          f"{', '.join(LAYOUT_GROUPS)}" + (f"; unknown: {unknown}" if unknown
                                                            else ""))
    return groups


def _check_target(target: Path, overwrite: bool) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(f"{target}: exists and is not a folder; choose a new output folder")
    if not any(target.iterdir()):
        return
    if not overwrite:
        raise ConfigError(f"{target}: the output folder already exists and is not empty; "
                          "choose a new folder, remove this one, or replace an earlier export "
                          "with overwrite (--overwrite)")
    if not (target / MANIFEST_NAME).is_file():
        raise ConfigError(f"{target}: not an earlier SynthFace export (no {MANIFEST_NAME}), "
                          "so overwrite does not replace it; choose a new folder or remove "
                          "this one yourself")


@contextlib.contextmanager
def _staged_directory(target: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a hidden staging folder beside ``target``; move it into place on success,
    after moving aside (then deleting) an earlier export when ``overwrite``."""
    with contextlib.ExitStack() as stack:
        try:
            # the parent folders made here go again if the export fails
            parent = stack.enter_context(new_folders(target.parent))
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                            dir=parent))
        except OSError as error:
            raise ConfigError(f"{target}: cannot create the output folder: "
                              f"{os_error_reason(error)}; choose a writable location") from None
        try:
            yield staging
            _check_target(target, overwrite)  # unchanged since the start, or refuse now
            old = None
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                            dir=target.parent))
                os.replace(target, old / "export")
            os.replace(staging, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _write_split(folder: Path | None, data: SynthFace) -> list[bytes]:
    """Encode every image of ``data`` as PNG and, when ``folder`` is given, write
    ``folder/<identity>/<identity>_<k>.png``. Returns the PNG bytes in dataset order."""
    pixels = data.images_u8()
    meta = data.metadata
    globals_ = meta["global_identity"].to_numpy()
    index = meta["index"].to_numpy()
    encoded = []
    bar = progress(total=len(data), desc=f"export {data.split}", unit="img")
    with bar:
        for row in range(len(data)):
            png = encode_png(pixels[row].transpose(1, 2, 0))
            encoded.append(png)
            if folder is not None:
                person = folder / identity_folder(globals_[row])
                person.mkdir(parents=True, exist_ok=True)
                (person / image_name(globals_[row], index[row])).write_bytes(png)
            bar.update(1)
    return encoded


def _write_manifest(staging: Path, profile: Profile, seed: int, groups: set[str],
                    identities: Mapping[str, int], images: Mapping[str, int],
                    pairs: Mapping[str, int]) -> None:
    manifest = {
        "format": "fkdlib SynthFace export (fkd synth export)",
        "profile": profile.to_dict(), "seed": seed,
        "layout": [group for group in LAYOUT_GROUPS if group in groups],
        "identities": dict(identities), "images": dict(images), "pairs": dict(pairs),
        "renderer_version": R.RENDERER_VERSION, "params_version": P.PARAMS_VERSION,
    }
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                         encoding="utf-8")
