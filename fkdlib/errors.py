"""Exception types shared across fkdlib.

Every error raised for bad input says what was expected, what was found and how to fix it.
The classes subclass the built-in exception a caller would naturally catch (``ValueError``,
``FileNotFoundError``) so that generic handlers keep working.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class FkdError(Exception):
    """Base class of every fkdlib error."""


class ConfigError(FkdError, ValueError):
    """An unknown name or an invalid setting (profile, model, device, ...)."""


class DataFormatError(FkdError, ValueError):
    """A file exists but does not hold what its format promises."""


class MissingDataError(FkdError, FileNotFoundError):
    """A file or folder that is needed does not exist."""


class UnsafePickleError(DataFormatError):
    """A pickle asked for a type outside the allow-list; nothing in it was executed."""


class CacheCorruptError(FkdError, RuntimeError):
    """A cache entry failed its checksum or is incomplete."""


class FolderInUse(FkdError):
    """Another process holds the lock of an output folder (``fkd reproduce``)."""


class Interrupted(FkdError):
    """SIGINT or SIGTERM stopped a run after it cleaned up (``fkd`` exits with status 130);
    ``outcomes`` holds what the run did finish (for ``fkd reproduce``, its notebook runs)."""

    def __init__(self, message: str, outcomes: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.outcomes = list(outcomes)


class DataUnavailable(FkdError, KeyError):
    """The data does not provide what an analysis needs: an evaluation protocol (no IJB-like
    template list in a folder of ``.bin`` files), SynthFace's ground-truth attributes, or a
    training monitor's record. What needs it is reported as not assessed, not failed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def os_error_reason(error: OSError) -> str:
    """Why the system refused a path, in words: "X is a file, not a folder" where a file
    stands in the way of a folder (mkdir's bare "File exists" or "Not a directory" would not
    say which), else the system's message."""
    if error.filename is not None and isinstance(error, (FileExistsError, NotADirectoryError)):
        path = Path(error.filename)
        for candidate in (path, *path.parents):
            if candidate.exists() and not candidate.is_dir():
                return f"{candidate} is a file, not a folder"
    return error.strerror or str(error)


def missing_file(path: str | os.PathLike, what: str, hint: str) -> MissingDataError:
    """The error for a needed file that does not exist, or that is a folder (saying so).

    ``what`` names the file (``"verification file"``); ``hint`` says what was expected and how
    to fix it."""
    if Path(path).is_dir():
        return MissingDataError(f"{path}: expected the {what} here, found a folder; {hint}")
    return MissingDataError(f"{path}: {what} not found; {hint}")


def missing_folder(path: str | os.PathLike, what: str, hint: str) -> MissingDataError:
    """The error for a needed folder that does not exist, or that is a file (saying so)."""
    if Path(path).exists():
        return MissingDataError(f"{path}: expected the {what} here, found a file; {hint}")
    return MissingDataError(f"{path}: {what} not found; {hint}")
