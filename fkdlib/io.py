"""Atomic file writes: a reader never sees a half-written file, a crash loses nothing old."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` and move it into place only on success.

    The temporary file is fsync'ed and renamed with :func:`os.replace`, which is atomic on
    POSIX and Windows; on any exception it is removed, so are the folders made for ``path``,
    and ``path`` is left untouched. The file's permissions follow the umask, as a file made by
    :func:`open` would. An :class:`OSError` of the temporary file names ``path``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', got {mode!r}")
    target = Path(path)
    with new_folders(target.parent, writing=target):
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                            dir=target.parent)
        except OSError as error:
            raise _naming(error, target) from None
        try:
            # mkstemp creates the file 0600; the result gets what open() would give it
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o666 & ~_current_umask())
            with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.replace(tmp_name, target)
            except OSError as error:
                raise _naming(error, target) from None
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise


@contextlib.contextmanager
def new_folders(folder: str | os.PathLike,
                writing: str | os.PathLike | None = None) -> Iterator[Path]:
    """Make ``folder`` and its missing parents; if the block raises, remove the folders made
    here (those still empty), so that a failed write leaves no empty output folder behind.
    Folders that existed before are never touched. An :class:`OSError` of making them names
    ``writing``, the output they are for, when given."""
    folder = Path(folder)
    made = list(_until_existing(folder))
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _naming(error, Path(writing or folder)) from None
        yield folder
    except BaseException:
        for candidate in made:  # deepest first
            with contextlib.suppress(OSError):
                candidate.rmdir()
        raise


def _until_existing(folder: Path) -> Iterator[Path]:
    """``folder`` and its parents, deepest first, up to the first one that exists."""
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate):
            return
        yield candidate


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` about ``path``, the file being written, rather than its temporary file."""
    return OSError(error.errno, error.strerror, str(path))


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_bytes(data: bytes | memoryview) -> str:
    """Hex SHA-256 of a byte buffer."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
