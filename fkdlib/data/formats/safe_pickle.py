"""A restricted unpickler for the data pickles of face-recognition benchmarks.

insightface's verification files (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``) are pickles,
and unpickling a file runs whatever callables it names: a crafted file can execute code. This
unpickler resolves only the globals such files need and refuses every other one *before*
anything is called, raising :class:`~fkdlib.errors.UnsafePickleError`.

What genuine files reference (checked against insightface's packing scripts and with
``pickletools`` on pickles made by Python 2 and 3, numpy 1 and 2):

* Python containers and scalars (list, tuple, bytes, str, bool, int, float, None) need no
  global at all; Python 3 pickles of ``bytes`` at protocols 0-2 call ``_codecs.encode(text,
  "latin1")``, admitted for the latin-1 codec only.
* Images packed with ``cv2.imencode`` are 1-D ``uint8`` numpy arrays and ``issame`` may be a
  numpy array or hold numpy bools: ``numpy.core.multiarray._reconstruct`` with ``numpy.ndarray``
  and ``numpy.dtype`` (protocols 2-4), ``numpy.core.numeric._frombuffer`` (protocol 5) and
  ``numpy.core.multiarray.scalar``, under both ``numpy.core`` (numpy 1) and ``numpy._core``
  (numpy 2) names. Each is wrapped so that only plain numeric dtypes (bool, integers, floats)
  are built: an object dtype, which would let the array hold arbitrary objects, is refused.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from ...errors import DataFormatError, UnsafePickleError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
    from numpy.core.multiarray import scalar as _np_scalar

_NUMERIC_DTYPE_KINDS = frozenset("biuf")
_LATIN1_NAMES = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"})


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` in a pickle: usable only as ``_reconstruct``'s argument."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayClass()


def _numeric_dtype(dtype: Any) -> np.dtype:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_DTYPE_KINDS:
        raise UnsafePickleError(
            f"refused numpy dtype {dtype!r}: only bool, integer and float arrays are allowed"
        )
    return dtype


def _safe_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if isinstance(spec, bytes):  # Python 2 pickles read with encoding="bytes"
        spec = spec.decode("ascii")
    if not isinstance(spec, str):
        raise UnsafePickleError(f"refused numpy dtype built from {type(spec).__name__}")
    return _numeric_dtype(np.dtype(spec, bool(align), bool(copy)))


def _safe_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"refused array subtype {subtype!r}: only numpy.ndarray")
    return _np_reconstruct(np.ndarray, shape, dtype_code)


def _safe_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    dtype = _numeric_dtype(dtype)
    return np.frombuffer(bytes(buffer), dtype=dtype).reshape(shape, order=order)


def _safe_scalar(dtype: Any, data: Any = None) -> Any:
    return _np_scalar(_numeric_dtype(dtype), data)


def _latin1_encode(text: Any, encoding: Any = "utf-8", errors: str = "strict") -> bytes:
    if not isinstance(text, str) or str(encoding).lower() not in _LATIN1_NAMES:
        raise UnsafePickleError(
            f"refused _codecs.encode with encoding {encoding!r}: only latin-1 text "
            "(how Python 3 pickles bytes) is allowed"
        )
    return text.encode("latin-1", errors)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _safe_dtype,
}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _safe_reconstruct
    _ALLOWED_GLOBALS[(f"{_core}.multiarray", "scalar")] = _safe_scalar
    _ALLOWED_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _safe_frombuffer

ALLOWED_GLOBALS: frozenset[str] = frozenset(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
"""Dotted names of the globals a data pickle may reference."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` (each in a checked form)."""

    def __init__(self, file: io.BufferedIOBase, source: str, encoding: str = "ASCII") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refused to load global '{module}.{name}'; a data pickle may "
                f"only reference {', '.join(sorted(ALLOWED_GLOBALS))}. Nothing in the file "
                "was executed. The file is not a genuine dataset file or was tampered with: "
                "obtain it again from its original source"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"{self.source}: refused a persistent id ({pid!r}); data pickles do not use them"
        )


def restricted_loads(data: bytes, source: str) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    Python 2 pickles whose ``str`` objects hold binary data (encoded images) fail to decode as
    ASCII text; they are read again with ``encoding="bytes"``, the way insightface's
    ``load_bin`` does. Retrying is safe because the restricted unpickler runs nothing.

    Args:
        data: the pickle bytes.
        source: the file name, used in error messages.

    Raises:
        UnsafePickleError: the pickle references a global outside the allow-list or builds a
            refused numpy type.
        DataFormatError: the bytes are not a complete, valid pickle.
    """
    for encoding in ("ASCII", "bytes"):
        try:
            return _load(data, source, encoding)
        except UnicodeDecodeError:
            continue
    raise DataFormatError(f"{source}: the pickle holds text that is neither ASCII nor bytes")


def _load(data: bytes, source: str, encoding: str) -> Any:
    unpickler = RestrictedUnpickler(io.BytesIO(data), source, encoding)
    try:
        return unpickler.load()
    except UnsafePickleError as error:
        if str(error).startswith(source):
            raise
        raise UnsafePickleError(f"{source}: {error}; nothing in the file was executed") from None
    except UnicodeDecodeError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
            AttributeError, KeyError, OverflowError, MemoryError) as error:
        raise DataFormatError(
            f"{source}: expected a complete pickle, but it cannot be read "
            f"({type(error).__name__}: {error}); the file is truncated or corrupt: download it "
            "again"
        ) from None
