"""CIFAR-10 and CIFAR-100, "python version" (Krizhevsky, 2009), read through a safe unpickler.

Layout of the archives from https://www.cs.toronto.edu/~kriz/cifar.html, once extracted:

* ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (training, 10 000 images
  each), ``test_batch`` (10 000) and ``batches.meta`` (``label_names``: 10 names).
* ``cifar-100-python/``: ``train`` (50 000), ``test`` (10 000) and ``meta``
  (``fine_label_names``: 100 names; ``coarse_label_names``: 20 super-class names).

Every file is a Python 2 pickle (protocol 2) of a dict whose keys are Python 2 ``str``: loaded
with ``encoding="bytes"`` (the site's recipe) they are ``b"data"``, ``b"labels"``, ...; with
``encoding="latin1"`` (torchvision's) they are ``"data"``, ``"labels"``. ``data`` is a
``(N, 3072)`` uint8 array, each row a 32 x 32 image stored channel by channel (1024 red, 1024
green, 1024 blue values, each plane row-major); the labels are lists of ints (``labels`` for
CIFAR-10; ``fine_labels`` and ``coarse_labels`` for CIFAR-100).

Files are read with :func:`~fkdlib.data.formats.safe_pickle.restricted_loads`, which builds
plain numeric numpy arrays and Python containers and refuses anything else before it runs, so
a tampered file cannot execute code. :func:`write_cifar` writes the same layout (Python 2
pickles, byte for byte the opcodes of the originals), for tests and for packing other
32 x 32 data for CIFAR tools.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ...errors import ConfigError, DataFormatError, MissingDataError, missing_folder
from ...io import atomic_write_bytes
from ..transforms import to_float_image
from .safe_pickle import restricted_loads

IMAGE_SHAPE = (3, 32, 32)
PIXELS_PER_IMAGE = 3 * 32 * 32
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR100_COARSE_CLASSES = 20
CIFAR_VARIANTS = (10, 100)
SPLITS = ("train", "test")
DOWNLOAD_HINT = "download the python version from https://www.cs.toronto.edu/~kriz/cifar.html"


def _layout(variant: int) -> dict[str, Any]:
    """File names and pickle keys of one variant."""
    if variant == 10:
        return {
            "folder": CIFAR10_FOLDER,
            "meta": "batches.meta",
            "files": {"train": CIFAR10_TRAIN_BATCHES, "test": ("test_batch",)},
            "label_key": "labels",
            "names_key": "label_names",
        }
    return {
        "folder": CIFAR100_FOLDER,
        "meta": "meta",
        "files": {"train": ("train",), "test": ("test",)},
        "label_key": "fine_labels",
        "names_key": "fine_label_names",
    }


def _check_variant(variant: Any, argument: str = "variant") -> int:
    if isinstance(variant, bool) or variant not in CIFAR_VARIANTS:
        raise ConfigError(
            f"{argument} must be 10 (CIFAR-10) or 100 (CIFAR-100), got {variant!r}"
        )
    return int(variant)


def _looks_like(folder: Path, variant: int) -> bool:
    """Whether ``folder`` holds any file of ``variant`` (so that a missing one is named)."""
    layout = _layout(variant)
    if variant == 10:
        names = (layout["meta"], *layout["files"]["train"], *layout["files"]["test"])
        return any((folder / name).is_file() for name in names)
    # "train" and "test" alone are too common to identify CIFAR-100; "meta" is needed, or both.
    return (folder / "meta").is_file() or all((folder / n).is_file() for n in SPLITS)


def find_cifar_folder(root: str | os.PathLike, variant: int | None = None) -> tuple[Path, int]:
    """Locate the extracted CIFAR folder in ``root`` and tell which variant it is.

    ``root`` may be the extracted folder itself (``cifar-10-batches-py`` or
    ``cifar-100-python``) or the folder that contains it.

    Args:
        root: a folder.
        variant: 10 or 100 to ask for one; ``None`` detects it (an error when ``root`` holds
            both).

    Returns:
        ``(folder, variant)``.

    Raises:
        MissingDataError: ``root`` does not exist or holds no CIFAR folder of the variant.
        ConfigError: ``variant`` is not 10, 100 or None, or it is None and both are present.
    """
    root = Path(root)
    if variant is not None:
        variant = _check_variant(variant)
    if not root.is_dir():
        raise missing_folder(
            root, "CIFAR folder", "expected the extracted python version, "
            f"{CIFAR10_FOLDER}/ (data_batch_1..5, test_batch, batches.meta) or "
            f"{CIFAR100_FOLDER}/ (train, test, meta), or the folder holding it; {DOWNLOAD_HINT}"
        )
    found: dict[int, Path] = {}
    for candidate_variant in CIFAR_VARIANTS:
        for folder in (root, root / _layout(candidate_variant)["folder"]):
            if folder.is_dir() and _looks_like(folder, candidate_variant):
                found.setdefault(candidate_variant, folder)
    if variant is None and len(found) > 1:
        raise ConfigError(
            f"{root} holds both CIFAR-10 ({found[10]}) and CIFAR-100 ({found[100]}); pass "
            "variant=10 or variant=100 to choose"
        )
    if variant is None and found:
        variant = next(iter(found))
    if variant not in found:
        wanted = [variant] if variant is not None else list(CIFAR_VARIANTS)
        expected = " or ".join(
            f"{root / _layout(v)['folder']}/{_layout(v)['meta']}" for v in wanted
        )
        present = sorted(entry.name for entry in root.iterdir())[:8]
        other = [v for v in found if v != variant]
        hint = f" It holds CIFAR-{other[0]}: pass variant={other[0]} or None." if other else ""
        raise MissingDataError(
            f"{root}: no CIFAR-{'/'.join(map(str, wanted))} data found; expected {expected} "
            f"(the files may also lie directly in {root}), found {present or 'an empty folder'}."
            f"{hint} Extract the archive there, or {DOWNLOAD_HINT}"
        )
    return found[variant], variant


def _load_dict(path: Path) -> dict[str, Any]:
    """Unpickle one CIFAR file safely; its keys as ``str`` whatever the pickle's encoding."""
    if not path.is_file():
        raise MissingDataError(
            f"{path}: CIFAR file missing; the extracted folder must hold every file of the "
            f"archive. Extract it again, or {DOWNLOAD_HINT}"
        )
    content = restricted_loads(path.read_bytes(), str(path))
    if not isinstance(content, dict):
        raise DataFormatError(
            f"{path}: expected a pickled dict (CIFAR python version), found a "
            f"{type(content).__name__}; the file is not a CIFAR batch: {DOWNLOAD_HINT}"
        )
    return {_text(key): value for key, value in content.items()}


def _text(value: Any) -> str:
    # Python 2 str arrives as bytes (encoding="bytes" retry) or str (ASCII): accept both.
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _require(content: dict[str, Any], key: str, path: Path) -> Any:
    if key not in content:
        raise DataFormatError(
            f"{path}: expected the key {key!r} in the pickled dict, found keys "
            f"{sorted(content)}; the file is not a CIFAR file of this variant"
        )
    return content[key]


def _names(content: dict[str, Any], key: str, count: int, path: Path) -> list[str]:
    names = _require(content, key, path)
    if not isinstance(names, (list, tuple)) or len(names) != count:
        found = len(names) if isinstance(names, (list, tuple)) else type(names).__name__
        raise DataFormatError(
            f"{path}: expected {key!r} to list {count} class names, found {found}; "
            f"{DOWNLOAD_HINT}"
        )
    return [_text(name) for name in names]


def _labels(content: dict[str, Any], key: str, count: int, rows: int, path: Path) -> np.ndarray:
    raw = _require(content, key, path)
    labels = np.asarray(raw)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != rows:
        raise DataFormatError(
            f"{path}: expected {key!r} to hold {rows} integer labels (one per image row), "
            f"found {labels.dtype} values of shape {labels.shape}; the file is corrupt: "
            f"{DOWNLOAD_HINT}"
        )
    if rows and (labels.min() < 0 or labels.max() >= count):
        raise DataFormatError(
            f"{path}: expected {key!r} in [0, {count - 1}], found values from {labels.min()} "
            f"to {labels.max()}; the file belongs to another dataset or is corrupt"
        )
    return labels.astype(np.int64)


def _pixels(content: dict[str, Any], path: Path) -> np.ndarray:
    data = _require(content, "data", path)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != PIXELS_PER_IMAGE
    ):
        found = (
            f"a {data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else f"a {type(data).__name__}"
        )
        raise DataFormatError(
            f"{path}: expected 'data' as a uint8 array of shape (N, {PIXELS_PER_IMAGE}) (one "
            f"3 x 32 x 32 image per row, channel by channel), found {found}; {DOWNLOAD_HINT}"
        )
    return data


class CIFARDataset(Dataset):
    """CIFAR-10 or CIFAR-100 from the python-pickle distribution, as a torch Dataset.

    Items are ``{"image": float32 (3, 32, 32) in [-1, 1], "identity": int}`` (the image
    normalised by :func:`~fkdlib.data.transforms.to_float_image`, then ``transform`` if any);
    ``identity`` is the class (the fine class for CIFAR-100). The whole split is loaded once.

    Args:
        root: the extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) or the
            folder holding it.
        split: ``"train"`` (50 000 images) or ``"test"`` (10 000).
        variant: 10 or 100; ``None`` detects it from the files.
        transform: optional callable applied to each float image tensor.

    Attributes:
        folder: the folder the files were read from.
        variant: 10 or 100.
        classes: class names, label ``i`` is ``classes[i]``.
        coarse_classes: CIFAR-100's 20 super-class names (empty for CIFAR-10).
        targets: ``(N,)`` int64 labels in file order.
        metadata: one row per image: ``identity``, ``filename``, and ``coarse_identity``
            (CIFAR-100's super-class, -1 for CIFAR-10).

    Raises:
        MissingDataError: the folder or one of its files is missing.
        DataFormatError: a file is not what the format promises (keys, shapes, label ranges).
        UnsafePickleError: a file references code; nothing in it was executed.
        ConfigError: ``split`` or ``variant`` is invalid.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        variant: int | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        self.folder, self.variant = find_cifar_folder(root, variant)
        self.split = split
        self.transform = transform
        layout = _layout(self.variant)
        meta_path = self.folder / layout["meta"]
        meta = _load_dict(meta_path)
        self.classes = _names(meta, layout["names_key"], self.variant, meta_path)
        self.coarse_classes = (
            _names(meta, "coarse_label_names", CIFAR100_COARSE_CLASSES, meta_path)
            if self.variant == 100
            else []
        )
        pixels, labels, coarse, filenames = [], [], [], []
        for name in layout["files"][split]:
            path = self.folder / name
            content = _load_dict(path)
            data = _pixels(content, path)
            rows = len(data)
            pixels.append(data)
            labels.append(_labels(content, layout["label_key"], self.variant, rows, path))
            coarse.append(
                _labels(content, "coarse_labels", CIFAR100_COARSE_CLASSES, rows, path)
                if self.variant == 100
                else np.full(rows, -1, dtype=np.int64)
            )
            names = content.get("filenames")
            # Optional: re-packed copies of CIFAR sometimes drop the file names.
            if isinstance(names, list) and len(names) == rows:
                filenames += [_text(name) for name in names]
            else:
                filenames += [""] * rows
        self._images = np.concatenate(pixels).reshape(-1, *IMAGE_SHAPE)
        self.targets = np.concatenate(labels)
        self.metadata = pd.DataFrame(
            {
                "identity": self.targets,
                "coarse_identity": np.concatenate(coarse),
                "filename": filenames,
            }
        )

    @property
    def num_classes(self) -> int:
        """10 or 100."""
        return len(self.classes)

    def images_u8(self) -> np.ndarray:
        """All images as a ``(N, 3, 32, 32)`` uint8 RGB array (shared, not a copy)."""
        return self._images

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} CIFAR images")
        image = to_float_image(torch.from_numpy(self._images[index]))
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image, "identity": int(self.targets[index])}


def write_cifar(
    root: str | os.PathLike,
    variant: int,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    classes: Sequence[str] | None = None,
) -> Path:
    """Write a CIFAR folder in the original layout and pickle format (atomically per file).

    Args:
        root: where to create ``cifar-10-batches-py/`` or ``cifar-100-python/``.
        variant: 10 or 100.
        splits: ``{"train": (images, labels), "test": (images, labels)}`` with ``images`` a
            ``(N, 3, 32, 32)`` uint8 array and ``labels`` ``N`` ints in ``[0, variant)``.
            CIFAR-10's training images are divided over the five ``data_batch_*`` files in
            order (at least 5 are needed).
        classes: ``variant`` class names; default ``class_00`` ... ``class_99``.

    The files are Python 2 pickles like the originals. CIFAR-100's ``coarse_labels`` are
    written as ``label // 5`` with names ``superclass_00`` .. ``superclass_19``: 20 groups of
    5 classes, as in the real data, though not the real grouping.

    Returns:
        The created folder.
    """
    variant = _check_variant(variant)
    layout = _layout(variant)
    if classes is None:
        classes = [f"class_{i:02d}" for i in range(variant)]
    if len(classes) != variant:
        raise ConfigError(f"classes must hold {variant} names for CIFAR-{variant}, got "
                          f"{len(classes)}")
    missing = [split for split in SPLITS if split not in splits]
    if missing:
        raise ConfigError(f"splits must give 'train' and 'test' (images, labels); missing "
                          f"{missing}")
    folder = Path(root) / layout["folder"]
    contents: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        rows, labels = _writable_split(splits[split], split, variant)
        names = layout["files"][split]
        chunks = np.array_split(np.arange(len(rows)), len(names))
        if min(len(chunk) for chunk in chunks) == 0:
            raise ConfigError(f"the {split} split of CIFAR-{variant} is written to {len(names)} "
                              f"files and needs at least {len(names)} images, got {len(rows)}")
        for number, (name, chunk) in enumerate(zip(names, chunks), start=1):
            kind = "training" if split == "train" else "testing"
            filenames = [f"{split}_{index:06d}.png" for index in chunk]
            batch_label = f"{kind} batch {number} of {len(names)}"
            if variant == 10:
                contents[name] = {"batch_label": batch_label, "labels": labels[chunk].tolist(),
                                  "data": rows[chunk], "filenames": filenames}
            else:
                contents[name] = {"filenames": filenames, "batch_label": batch_label,
                                  "fine_labels": labels[chunk].tolist(),
                                  "coarse_labels": (labels[chunk] // 5).tolist(),
                                  "data": rows[chunk]}
    if variant == 10:
        contents[layout["meta"]] = {
            "num_cases_per_batch": len(contents[CIFAR10_TRAIN_BATCHES[0]]["labels"]),
            "label_names": list(classes),
            "num_vis": PIXELS_PER_IMAGE,
        }
    else:
        contents[layout["meta"]] = {
            "fine_label_names": list(classes),
            "coarse_label_names": [f"superclass_{i:02d}" for i in range(CIFAR100_COARSE_CLASSES)],
        }
    for name, content in contents.items():
        atomic_write_bytes(folder / name, python2_pickle(content))
    return folder


def _writable_split(
    split: tuple[np.ndarray, np.ndarray], name: str, variant: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``(images, labels)``; return ``(N, 3072)`` rows and int64 labels."""
    images, labels = (np.asarray(part) for part in split)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ConfigError(f"{name} images must be a uint8 array (N, 3, 32, 32), got "
                          f"{images.dtype} {images.shape}")
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise ConfigError(f"{name} labels must be {len(images)} integers, got {labels.dtype} "
                          f"{labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= variant):
        raise ConfigError(f"{name} labels must lie in [0, {variant - 1}] for CIFAR-{variant}, "
                          f"got {labels.min()} .. {labels.max()}")
    return np.ascontiguousarray(images).reshape(len(images), -1), labels.astype(np.int64)


# Python 2 pickle (protocol 2) opcodes, as cPickle wrote the CIFAR files (see pickletools).
_PROTO_2 = b"\x80\x02"
_STOP = b"."
_MARK = b"("
_NONE = b"N"
_TRUE, _FALSE = b"\x88", b"\x89"
_BININT1, _BININT2, _BININT = b"K", b"M", b"J"
_SHORT_BINSTRING, _BINSTRING = b"U", b"T"
_EMPTY_TUPLE, _TUPLE, _SMALL_TUPLES = b")", b"t", (b"\x85", b"\x86", b"\x87")
_EMPTY_LIST, _APPENDS = b"]", b"e"
_EMPTY_DICT, _SETITEMS = b"}", b"u"
_REDUCE, _BUILD = b"R", b"b"
# Python 2 numpy's reduction of a uint8 array: _reconstruct(ndarray, (0,), "b") then
# __setstate__((1, shape, dtype, is_fortran, raw bytes)); dtype("u1", 0, 1) then
# __setstate__((3, "|", None, None, None, -1, -1, 0)).
_GLOBAL_RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\n"
_GLOBAL_NDARRAY = b"cnumpy\nndarray\n"
_GLOBAL_DTYPE = b"cnumpy\ndtype\n"
_UINT8_DTYPE_STATE = (3, "|", None, None, None, -1, -1, 0)


def python2_pickle(obj: Any) -> bytes:
    """Pickle ``obj`` exactly as Python 2's ``cPickle.dump(obj, f, 2)`` would (without memo).

    Python 3's pickler writes ``bytes`` at protocol 2 as a call to ``_codecs.encode``, which
    loads as ``bytes`` under every encoding; Python 2 ``str`` (opcodes ``U``/``T``) loads as
    ``bytes`` with ``encoding="bytes"`` and as ``str`` with ``encoding="latin1"``, which is what
    CIFAR readers rely on. Supports None, bool, int (32-bit), str and bytes (both written as
    Python 2 ``str``), tuple, list, dict and C-contiguous uint8 numpy arrays.
    """
    out = bytearray(_PROTO_2)
    _emit(obj, out)
    out += _STOP
    return bytes(out)


def _emit(obj: Any, out: bytearray) -> None:
    if obj is None:
        out += _NONE
    elif isinstance(obj, bool):
        out += _TRUE if obj else _FALSE
    elif isinstance(obj, (int, np.integer)):
        _emit_int(int(obj), out)
    elif isinstance(obj, (str, bytes)):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            out += _SHORT_BINSTRING + bytes([len(data)]) + data
        else:
            out += _BINSTRING + struct.pack("<i", len(data)) + data
    elif isinstance(obj, tuple):
        _emit_tuple(obj, out)
    elif isinstance(obj, list):
        out += _EMPTY_LIST
        if obj:
            out += _MARK
            for item in obj:
                _emit(item, out)
            out += _APPENDS
    elif isinstance(obj, dict):
        out += _EMPTY_DICT
        if obj:
            out += _MARK
            for key, value in obj.items():
                _emit(key, out)
                _emit(value, out)
            out += _SETITEMS
    elif isinstance(obj, np.ndarray) and obj.dtype == np.uint8 and obj.flags.c_contiguous:
        out += _GLOBAL_RECONSTRUCT + _GLOBAL_NDARRAY
        _emit((0,), out)
        _emit(b"b", out)
        out += _SMALL_TUPLES[2] + _REDUCE
        out += _MARK
        _emit(1, out)
        _emit(tuple(obj.shape), out)
        out += _GLOBAL_DTYPE
        _emit(("u1", 0, 1), out)
        out += _REDUCE
        _emit(_UINT8_DTYPE_STATE, out)
        out += _BUILD
        out += _FALSE
        _emit(obj.tobytes(), out)
        out += _TUPLE + _BUILD
    else:
        raise TypeError(
            f"python2_pickle cannot write a {type(obj).__name__}; it writes None, bool, int, "
            "str, bytes, tuple, list, dict and C-contiguous uint8 arrays"
        )


def _emit_int(value: int, out: bytearray) -> None:
    if 0 <= value < 1 << 8:
        out += _BININT1 + bytes([value])
    elif 0 <= value < 1 << 16:
        out += _BININT2 + struct.pack("<H", value)
    elif -(1 << 31) <= value < 1 << 31:
        out += _BININT + struct.pack("<i", value)
    else:
        raise TypeError(f"python2_pickle writes 32-bit integers only, got {value}")


def _emit_tuple(items: tuple, out: bytearray) -> None:
    if not items:
        out += _EMPTY_TUPLE
    elif len(items) <= len(_SMALL_TUPLES):
        for item in items:
            _emit(item, out)
        out += _SMALL_TUPLES[len(items) - 1]
    else:
        out += _MARK
        for item in items:
            _emit(item, out)
        out += _TUPLE
