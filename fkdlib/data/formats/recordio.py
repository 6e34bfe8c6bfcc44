"""MXNet RecordIO (``.rec`` + ``.idx`` + ``property``) as insightface ships face datasets.

Read and written here without mxnet, following dmlc-core's ``recordio.h`` / ``recordio.cc``
and mxnet's ``python/mxnet/recordio.py``:

* **Framing.** A record on disk is ``magic (uint32 0xced7230a) | lrec (uint32) | data |
  zero padding to a multiple of 4 bytes``, little-endian. ``lrec`` holds the data length in its
  low 29 bits and a continuation flag ``cflag`` in its top 3 bits. When the payload contains the
  magic number at a 4-byte-aligned offset, the writer cuts the payload there and drops those 4
  bytes: the parts carry ``cflag`` 1 (first), 2 (middle), 3 (last); a whole record has 0. The
  reader joins the parts and puts the magic back between them.
* **Image record.** The payload starts with mxnet's ``IRHeader`` packed as ``'IfQQ'`` (flag,
  label, id, id2; 24 bytes). When ``flag > 0``, ``flag`` float32 labels follow the header (the
  scalar label is then unused); the encoded image (JPEG/PNG) follows.
* **Index.** ``prefix.idx`` is a text file, one ``"key\\toffset"`` line per record, the byte
  offset of the record's first frame in ``prefix.rec``.
* **insightface layout.** Record 0 has ``flag == 2``, no image and the labels
  ``(first_identity_key, end_identity_key)``; images are keys ``1 .. first_identity_key - 1``;
  each identity record ``k`` in ``[first_identity_key, end_identity_key)`` has the labels
  ``(first_image_key, end_image_key)`` of that identity's images. The text file ``property``
  beside ``train.rec`` holds ``"num_classes,height,width"`` (CASIA-WebFace: ``10572,112,112``).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import ConfigError, DataFormatError, missing_file
from ...io import atomic_open, atomic_write_text
from ..transforms import to_float_image
from .images import decode_rgb, hwc_to_chw_tensor, image_size_pair, resize_rgb

RECORD_MAGIC = 0xCED7230A
"""dmlc-core ``RecordIOWriter::kMagic``."""

_MAGIC_BYTES = struct.pack("<I", RECORD_MAGIC)
_FRAME_HEAD = struct.Struct("<II")
_LENGTH_BITS = 29
_MAX_PART_LENGTH = (1 << _LENGTH_BITS) - 1
_IR_HEADER = struct.Struct("<IfQQ")
# float32 labels hold integer keys exactly only up to 2**24: larger datasets cannot use this layout.
_FLOAT32_EXACT_INTS = 1 << 24


class IRHeader(NamedTuple):
    """mxnet's image-record header.

    Attributes:
        flag: 0 for a scalar ``label``; otherwise the number of float32 labels in ``label``.
        label: a float, or a tuple of ``flag`` floats.
        id: the record id (insightface stores the record key).
        id2: high bits of the id, normally 0.
    """

    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


def pack_record(
    label: float | Sequence[float], payload: bytes = b"", record_id: int = 0, id2: int = 0
) -> bytes:
    """Pack an ``IRHeader`` and a payload into a record, as mxnet's ``recordio.pack`` does.

    A scalar label gives ``flag = 0``; a sequence of labels gives ``flag = len(labels)`` with
    the labels stored as float32 right after the 24-byte header.
    """
    if isinstance(label, (int, float, np.integer, np.floating)):
        return _IR_HEADER.pack(0, float(label), record_id, id2) + bytes(payload)
    labels = np.asarray(label, dtype="<f4").reshape(-1)
    if labels.size == 0:
        raise ValueError("a record needs at least one label; pass a number for a scalar label")
    return _IR_HEADER.pack(labels.size, 0.0, record_id, id2) + labels.tobytes() + bytes(payload)


def unpack_record(record: bytes, source: str = "record") -> tuple[IRHeader, bytes]:
    """Split a record into its :class:`IRHeader` and the payload (mxnet's ``recordio.unpack``)."""
    if len(record) < _IR_HEADER.size:
        raise DataFormatError(
            f"{source}: expected an image record of at least {_IR_HEADER.size} bytes "
            f"(mxnet IRHeader 'IfQQ'), found {len(record)} bytes; the .rec is not an image "
            "RecordIO file or the .idx points at the wrong offsets"
        )
    flag, label, record_id, id2 = _IR_HEADER.unpack_from(record)
    payload_start = _IR_HEADER.size
    if flag == 0:
        return IRHeader(0, float(label), record_id, id2), record[payload_start:]
    labels_end = payload_start + 4 * flag
    if labels_end > len(record):
        raise DataFormatError(
            f"{source}: the header announces {flag} float32 labels ({4 * flag} bytes) but only "
            f"{len(record) - payload_start} bytes follow it; the record is corrupt"
        )
    labels = struct.unpack_from(f"<{flag}f", record, payload_start)
    return IRHeader(flag, tuple(float(x) for x in labels), record_id, id2), record[labels_end:]


def frame_record(record: bytes) -> bytes:
    """Encode one record as it lies in a ``.rec`` file (dmlc ``RecordIOWriter::WriteRecord``).

    The payload is cut at every 4-byte-aligned occurrence of the magic number (those 4 bytes
    are dropped and restored by the reader), each part gets ``magic | lrec`` in front, and the
    last part is zero-padded to a multiple of 4 bytes.
    """
    data = bytes(record)
    if len(data) > _MAX_PART_LENGTH:
        raise ValueError(f"RecordIO records must be shorter than 2**29 bytes, got {len(data)}")
    parts: list[bytes] = []
    start = 0
    position = data.find(_MAGIC_BYTES)
    while position >= 0:
        if position % 4:  # only 4-byte-aligned occurrences are cut, as dmlc scans words
            position = data.find(_MAGIC_BYTES, position + 1)
            continue
        cflag = 1 if start == 0 else 2
        parts.append(_FRAME_HEAD.pack(RECORD_MAGIC, (cflag << _LENGTH_BITS) | (position - start)))
        parts.append(data[start:position])
        start = position + 4
        position = data.find(_MAGIC_BYTES, start)
    tail_length = len(data) - start
    cflag = 3 if start else 0
    parts.append(_FRAME_HEAD.pack(RECORD_MAGIC, (cflag << _LENGTH_BITS) | tail_length))
    parts.append(data[start:])
    parts.append(b"\0" * (-tail_length % 4))
    return b"".join(parts)


def read_framed_record(buffer: Any, offset: int, source: str) -> tuple[bytes, int]:
    """Read the record whose first frame starts at ``offset`` of ``buffer`` (bytes or mmap).

    Returns the joined payload and the offset just past the record. Multi-part records
    (cflag 1, 2..., 3) are joined with the magic number restored between the parts.

    Raises:
        DataFormatError: truncated data, a wrong magic number, or an offset that does not
            point at the start of a record.
    """
    size = len(buffer)
    parts: list[bytes] = []
    position = offset
    while True:
        if position + _FRAME_HEAD.size > size:
            raise DataFormatError(
                f"{source}: expected an 8-byte RecordIO frame header at byte {position}, but the "
                f"file ends at byte {size}; the .rec is truncated: download or convert it again"
            )
        magic, lrec = _FRAME_HEAD.unpack_from(buffer, position)
        if magic != RECORD_MAGIC:
            raise DataFormatError(
                f"{source}: expected the RecordIO magic number 0x{RECORD_MAGIC:08x} at byte "
                f"{position}, found 0x{magic:08x}; this is not an MXNet RecordIO file, or the "
                ".idx does not belong to this .rec (regenerate the pair together)"
            )
        cflag, length = lrec >> _LENGTH_BITS, lrec & _MAX_PART_LENGTH
        expected_flags = (0, 1) if not parts else (2, 3)
        if cflag not in expected_flags:
            raise DataFormatError(
                f"{source}: frame at byte {position} has continuation flag {cflag}, expected one "
                f"of {expected_flags}; the .idx offset does not point at the start of a record "
                "or the file is corrupt"
            )
        data_start = position + _FRAME_HEAD.size
        data_end = data_start + length
        padded_end = data_start + length + (-length % 4)
        if padded_end > size:
            raise DataFormatError(
                f"{source}: frame at byte {position} announces {length} bytes of data (padded to "
                f"{padded_end - data_start}), but the file ends at byte {size}; the .rec is "
                "truncated: download or convert it again"
            )
        parts.append(bytes(buffer[data_start:data_end]))
        position = padded_end
        if cflag in (0, 3):
            return _MAGIC_BYTES.join(parts), position


def record_paths(prefix_or_rec_path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """The ``(.rec, .idx, property)`` paths of a RecordIO dataset.

    Accepts a prefix (``data/faces_webface_112x112/train``), the ``.rec`` or ``.idx`` path, or
    the dataset folder itself (then the insightface name ``train`` is used). ``property`` lives
    in the folder of the ``.rec``, as in insightface's downloads.
    """
    path = Path(prefix_or_rec_path)
    if path.is_dir():
        path = path / "train"
    elif path.suffix in (".rec", ".idx"):
        path = path.with_suffix("")
    return (
        path.with_name(path.name + ".rec"),
        path.with_name(path.name + ".idx"),
        path.parent / "property",
    )


def read_property(path: str | os.PathLike) -> tuple[int, tuple[int, int]]:
    """Parse insightface's ``property`` file: ``"num_classes,height,width"``.

    Returns:
        ``(num_classes, (height, width))``.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file(
            path, "property file", "expected a text file 'num_classes,height,width' "
            "(e.g. '10572,112,112' for CASIA-WebFace) beside the .rec, as insightface ships it. "
            "Copy it from the dataset download or write it by hand"
        )
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    fields = [field.strip() for field in text.split(",")]
    if len(fields) != 3 or not all(field.isdigit() and int(field) > 0 for field in fields):
        raise DataFormatError(
            f"{path}: expected 'num_classes,height,width' (three positive integers, e.g. "
            f"'10572,112,112'), found {text[:80]!r}; fix the file"
        )
    num_classes, height, width = (int(field) for field in fields)
    return num_classes, (height, width)


def read_index(idx_path: Path, rec_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse a ``.idx`` file into ``(keys, offsets)`` int64 arrays, in file order."""
    if not idx_path.is_file():
        raise missing_file(
            idx_path, "RecordIO index", "expected a text file of 'key<TAB>offset' lines "
            "beside the .rec (insightface ships train.idx with train.rec): copy it from the "
            "same download, or rebuild the pair with `fkd convert folder2rec`"
        )
    text = idx_path.read_text(encoding="ascii", errors="replace")
    table = _parse_index_fast(text)
    if table is None:
        table = _parse_index_lines(text, idx_path)
    keys, offsets = table[:, 0], table[:, 1]
    unique_keys, counts = np.unique(keys, return_counts=True)
    if np.any(counts > 1):
        duplicate = int(unique_keys[np.argmax(counts > 1)])
        raise DataFormatError(
            f"{idx_path}: key {duplicate} appears more than once; expected unique keys: "
            "the index is corrupt, regenerate it"
        )
    beyond = np.flatnonzero((offsets < 0) | (offsets >= rec_size))
    if beyond.size:
        row = int(beyond[0])
        raise DataFormatError(
            f"{idx_path}: key {int(keys[row])} points at byte {int(offsets[row])}, but the .rec "
            f"has {rec_size} bytes; the .rec is truncated or the .idx belongs to another file"
        )
    return keys, offsets


def _parse_index_fast(text: str) -> np.ndarray | None:
    """``(n, 2)`` key/offset table parsed in C; ``None`` when the text is not plainly
    ``n`` lines of ``"key\toffset"`` (the line-by-line parser then explains what is wrong).

    MS1MV2's index has 5.8 million lines: a Python loop over them takes seconds and
    gigabytes, ``np.fromstring`` a fraction of a second.
    """
    stripped = text.strip()
    rows = stripped.count("\n") + 1
    if not stripped or stripped.count("\t") != rows:
        return None
    with warnings.catch_warnings():
        # numpy warns (and may one day raise) when it stops at text that is not an integer.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            values = np.fromstring(stripped, dtype=np.int64, sep=" ")
        except ValueError:
            return None
    if values.size != 2 * rows:
        return None
    return values.reshape(rows, 2)


def _parse_index_lines(text: str, idx_path: Path) -> np.ndarray:
    """Line-by-line parser: tolerates blank lines, names the first malformed line."""
    numbered = [
        (number, line.strip().split("\t"))
        for number, line in enumerate(text.split("\n"), start=1)
        if line.strip()
    ]
    if not numbered:
        raise DataFormatError(f"{idx_path}: expected 'key<TAB>offset' lines, found an empty file")
    for number, row in numbered:
        if not _is_index_row(row):
            raise DataFormatError(
                f"{idx_path}: line {number}: expected 'key<TAB>offset' (two integers), found "
                f"{chr(9).join(row)[:80]!r}; the index is corrupt: regenerate it"
            )
    return np.array([[int(key), int(offset)] for _, (key, offset) in numbered], dtype=np.int64)


def _is_index_row(row: list[str]) -> bool:
    if len(row) != 2:
        return False
    try:
        int(row[0]), int(row[1])
    except ValueError:
        return False
    return True


class RecordIOFile:
    """Random access to an indexed RecordIO pair through a memory map.

    The map is opened lazily in each process, so the object can be pickled into DataLoader
    workers (spawn or fork).
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path)
        if not self.rec_path.is_file():
            raise missing_file(
                self.rec_path, "RecordIO file", "expected the .rec of an insightface dataset "
                "(e.g. faces_webface_112x112/train.rec); check the path or see data/README.md"
            )
        self.size = self.rec_path.stat().st_size
        if self.size == 0:
            raise DataFormatError(
                f"{self.rec_path}: expected RecordIO records, found an empty file"
            )
        self.keys, self._offsets = read_index(self.idx_path, self.size)
        order = np.argsort(self.keys, kind="stable")
        self._sorted_keys = self.keys[order]
        self._sorted_offsets = self._offsets[order]
        self._map: mmap.mmap | None = None
        self._map_pid: int | None = None
        # The record that lies last in the file is read once so that truncation shows at once.
        self.read(int(self.keys[np.argmax(self._offsets)]))

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (int, np.integer)):
            return False
        position = int(np.searchsorted(self._sorted_keys, key))
        return position < len(self._sorted_keys) and self._sorted_keys[position] == key

    def offset_of(self, key: int) -> int:
        """Byte offset of record ``key`` in the ``.rec``."""
        position = int(np.searchsorted(self._sorted_keys, key))
        if position >= len(self._sorted_keys) or self._sorted_keys[position] != key:
            raise DataFormatError(
                f"{self.idx_path}: no record with key {key}; the index holds "
                f"{len(self.keys)} keys from {int(self._sorted_keys[0])} to "
                f"{int(self._sorted_keys[-1])}"
            )
        return int(self._sorted_offsets[position])

    def read(self, key: int) -> bytes:
        """The raw record ``key`` (header and payload, frames joined)."""
        record, _ = read_framed_record(
            self._buffer(), self.offset_of(key), f"{self.rec_path} (record {key})"
        )
        return record

    def read_record(self, key: int) -> tuple[IRHeader, bytes]:
        """Record ``key`` split into its :class:`IRHeader` and payload."""
        return unpack_record(self.read(key), f"{self.rec_path} (record {key})")

    def close(self) -> None:
        """Release the memory map (it is reopened on the next read)."""
        if self._map is not None:
            self._map.close()
        self._map, self._map_pid = None, None

    def _buffer(self) -> mmap.mmap:
        if self._map is None or self._map_pid != os.getpid():
            with open(self.rec_path, "rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            self._map_pid = os.getpid()
        return self._map

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_map"], state["_map_pid"] = None, None
        return state


class RecordIODataset(Dataset):
    """An insightface face-recognition ``.rec`` as a torch Dataset (CASIA-WebFace, MS1MV2...).

    Items are dicts ``{"image": float32 (3, H, W) in [-1, 1], "identity": int}``; the image is
    decoded to RGB and normalised with insightface's ``(x/255 - 0.5)/0.5``, then ``transform``
    (if any) is applied to that tensor. When record 0 is insightface's identity header, the
    dataset iterates the image keys listed by the identity records, in identity order (as
    insightface's ``FaceImageIter``); otherwise every key of the ``.idx``, in file order.

    Args:
        prefix_or_rec_path: the prefix, the ``.rec`` path, or the folder holding ``train.rec``.
        transform: optional callable applied to the float image tensor.
        on_error: ``"raise"`` stops on an undecodable image with the file and record key;
            ``"skip"`` replaces it with the next decodable item and counts it in ``skipped``
            (counted in the process that read it: with DataLoader workers, in each worker).
        image_size: resize every image to this size (one int: a square; ``(height, width)``)
            with a bilinear filter before normalising; ``None`` keeps the stored size.

    Attributes:
        num_classes, stored_size: from ``property``.
        image_size: the size of the images the dataset yields.
        identity_ranges: ``(first_image_key, end_image_key)`` per identity, or ``None``.
        records: the underlying :class:`RecordIOFile`.
    """

    def __init__(
        self,
        prefix_or_rec_path: str | os.PathLike,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        on_error: str = "raise",
        image_size: int | tuple[int, int] | None = None,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        resize = image_size_pair(image_size)
        rec_path, idx_path, property_path = record_paths(prefix_or_rec_path)
        self.records = RecordIOFile(rec_path, idx_path)
        self.num_classes, self.stored_size = read_property(property_path)
        self.image_size = resize or self.stored_size
        self.transform = transform
        self.on_error = on_error
        self.identity_ranges = self._read_identity_ranges(property_path)
        if self.identity_ranges is None:
            self._image_keys = self.records.keys
        else:
            self._image_keys = np.concatenate(
                [np.arange(start, end, dtype=np.int64) for start, end in self.identity_ranges]
            )
        self._bad_keys: set[int] = set()

    @property
    def skipped(self) -> int:
        """Number of undecodable images skipped so far (``on_error="skip"``)."""
        return len(self._bad_keys)

    def __len__(self) -> int:
        return len(self._image_keys)

    def image_key(self, index: int) -> int:
        """The ``.idx`` key of dataset item ``index``."""
        return int(self._image_keys[index])

    def read_record(self, key: int) -> tuple[IRHeader, bytes]:
        """Raw access: the header and payload (encoded image) of record ``key``."""
        return self.records.read_record(key)

    def read_image_record(self, key: int) -> tuple[int, bytes]:
        """The identity label and the encoded image bytes (undecoded) of record ``key``."""
        header, payload = self.read_record(key)
        return self._identity_of(header, f"{self.records.rec_path} (record {key})"), payload

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        for attempt in range(len(self)):
            key = self.image_key((index + attempt) % len(self))
            if key in self._bad_keys:
                continue
            identity, payload = self.read_image_record(key)
            source = f"{self.records.rec_path} (record {key})"
            try:
                pixels = decode_rgb(payload, source)
            except DataFormatError:
                if self.on_error == "raise":
                    raise
                self._note_skipped(key, source)
                continue
            pixels = resize_rgb(pixels, self.image_size)
            image = to_float_image(hwc_to_chw_tensor(pixels))
            if self.transform is not None:
                image = self.transform(image)
            return {"image": image, "identity": identity}
        raise DataFormatError(
            f"{self.records.rec_path}: none of its {len(self)} images could be decoded; "
            "the file is not an image RecordIO or is corrupt throughout"
        )

    def _identity_of(self, header: IRHeader, source: str) -> int:
        label = header.label if header.flag == 0 else header.label[0]
        identity = int(label)
        if identity != label or not 0 <= identity < self.num_classes:
            raise DataFormatError(
                f"{source}: expected an integer identity label in [0, {self.num_classes}) "
                f"(num_classes from property), found {label}; the property file or the "
                "record is wrong"
            )
        return identity

    def _note_skipped(self, key: int, source: str) -> None:
        if not self._bad_keys:
            warnings.warn(
                f"{source}: undecodable image skipped; further skips are only counted "
                "(dataset.skipped)",
                stacklevel=3,
            )
        self._bad_keys.add(key)

    def _read_identity_ranges(self, property_path: Path) -> list[tuple[int, int]] | None:
        if 0 not in self.records:
            return None
        header, payload = self.records.read_record(0)
        if header.flag < 2 or payload:
            return None
        first, end = (int(value) for value in header.label[:2])
        source = f"{self.records.rec_path} (record 0)"
        if not 1 <= first <= end:
            raise DataFormatError(
                f"{source}: identity header labels ({first}, {end}) are not a key range "
                "1 <= first <= end; the .rec is corrupt"
            )
        if end - first != self.num_classes:
            raise DataFormatError(
                f"{source}: record 0 lists {end - first} identities (records {first}..{end - 1}) "
                f"but {property_path} says num_classes={self.num_classes}; fix the property file"
            )
        ranges = []
        for key in range(first, end):
            identity_header, _ = self.records.read_record(key)
            start, stop = -1, -1
            if identity_header.flag >= 2:
                start, stop = int(identity_header.label[0]), int(identity_header.label[1])
            if not 1 <= start <= stop <= first:
                raise DataFormatError(
                    f"{self.records.rec_path} (record {key}): expected an identity record with "
                    f"an image key range inside [1, {first}), found header {identity_header}; "
                    "the .rec is corrupt"
                )
            ranges.append((start, stop))
        return ranges


class RecordIOWriter:
    """Write an indexed RecordIO pair (and insightface's ``property``) atomically.

    Records go to temporary files beside the targets; ``close()`` (or leaving the ``with``
    block normally) moves ``.rec`` and ``.idx`` into place and writes ``property`` when
    :meth:`set_property` was called. An exception inside the ``with`` block removes the
    temporary files and leaves any existing dataset untouched.

    Example:
        >>> with RecordIOWriter("out/train") as writer:  # doctest: +SKIP
        ...     writer.write_image(1, png_bytes, label=0)
    """

    def __init__(self, prefix: str | os.PathLike) -> None:
        self.rec_path, self.idx_path, self.property_path = record_paths(prefix)
        self._stack = contextlib.ExitStack()
        self._rec = self._stack.enter_context(atomic_open(self.rec_path, "wb"))
        self._idx = self._stack.enter_context(atomic_open(self.idx_path, "w"))
        self._offset = 0
        self._keys: set[int] = set()
        self._property: tuple[int, int, int] | None = None
        self.split_records = 0
        self._open = True

    def write(self, key: int, record: bytes) -> int:
        """Append a raw record under ``key``; returns its byte offset."""
        if not self._open:
            raise ValueError(f"{self.rec_path}: the writer is closed")
        key = int(key)
        if key < 0 or key in self._keys:
            raise ValueError(f"record keys must be unique non-negative ints, got {key} again")
        framed = frame_record(record)
        if len(framed) != _FRAME_HEAD.size + len(record) + (-len(record) % 4):
            self.split_records += 1
        offset = self._offset
        self._rec.write(framed)
        self._idx.write(f"{key}\t{offset}\n")
        self._offset += len(framed)
        self._keys.add(key)
        return offset

    def write_image(
        self, key: int, encoded: bytes, label: float | Sequence[float], record_id: int | None = None
    ) -> int:
        """Append an image record (``IRHeader`` + encoded bytes) under ``key``."""
        return self.write(key, pack_record(label, encoded, key if record_id is None else record_id))

    def set_property(self, num_classes: int, height: int, width: int) -> None:
        """Write ``property`` (``"num_classes,height,width"``) when the writer closes."""
        values = (int(num_classes), int(height), int(width))
        if min(values) <= 0:
            raise ValueError(f"property values must be positive, got {values}")
        self._property = values

    def close(self) -> None:
        """Move the finished files into place."""
        if self._open:
            self._open = False
            self._stack.close()
            if self._property is not None:
                atomic_write_text(self.property_path, ",".join(map(str, self._property)) + "\n")

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is None:
            self.close()
        elif self._open:
            self._open = False
            self._stack.__exit__(exc_type, exc, traceback)


def write_identity_records(
    writer: RecordIOWriter, labels: Sequence[int], images: Iterable[bytes]
) -> int:
    """Write a dataset in insightface's layout: header record 0, images, identity records.

    Args:
        writer: an open :class:`RecordIOWriter` with no records yet.
        labels: the identity of each image, grouped: ``0, 0, 1, 1, 1, 2, ...`` (labels start
            at 0 and each identity's images are contiguous).
        images: the encoded images, in the order of ``labels`` (may be a lazy iterator).

    Returns:
        The number of identities.
    """
    labels = [int(label) for label in labels]
    if not labels:
        raise ConfigError("write_identity_records needs at least one image")
    steps = np.diff(labels)
    if labels[0] != 0 or np.any((steps != 0) & (steps != 1)):
        raise ConfigError(
            "labels must start at 0 and be grouped by identity (each step 0 or +1), e.g. "
            f"[0, 0, 1, 2, 2]; got {labels[:10]}{' ...' if len(labels) > 10 else ''}"
        )
    num_images, num_identities = len(labels), labels[-1] + 1
    first_identity_key = num_images + 1
    end_identity_key = first_identity_key + num_identities
    if end_identity_key > _FLOAT32_EXACT_INTS:
        raise ConfigError(
            f"{num_images} images and {num_identities} identities need record keys up to "
            f"{end_identity_key}, beyond what the float32 labels of the insightface layout "
            f"hold exactly ({_FLOAT32_EXACT_INTS}); split the dataset into several .rec files"
        )
    writer.write(0, pack_record((first_identity_key, end_identity_key), b"", record_id=0))
    pending = iter(images)
    for key, label in enumerate(labels, start=1):
        encoded = next(pending, None)
        if encoded is None:
            raise ConfigError(f"{num_images} labels but only {key - 1} images were given")
        writer.write_image(key, encoded, label)
    if next(pending, None) is not None:
        raise ConfigError(f"more images than the {num_images} labels were given")
    boundaries = np.flatnonzero(np.diff(labels, prepend=-1, append=num_identities)) + 1
    for identity in range(num_identities):
        key = first_identity_key + identity
        image_range = (int(boundaries[identity]), int(boundaries[identity + 1]))
        writer.write(key, pack_record(image_range, b"", record_id=key))
    return num_identities
