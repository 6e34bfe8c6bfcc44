"""Exception types shared across fkdlib.

Every error raised for bad input says what was expected, what was found and how to fix it.
The classes subclass the built-in exception a caller would naturally catch (``ValueError``,
``FileNotFoundError``) so that generic handlers keep working.
"""

from __future__ import annotations


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


class DataUnavailable(FkdError, KeyError):
    """The data does not provide what an analysis needs: an evaluation protocol (no IJB-like
    template list in a folder of ``.bin`` files), SynthFace's ground-truth attributes, or a
    training monitor's record. What needs it is reported as not assessed, not failed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
