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

A pickle also sets the state of what it builds (the ``BUILD`` opcode calls ``__setstate__``),
and numpy's ``dtype.__setstate__`` believes whatever flags it is given: a crafted state can
mark a ``uint8`` dtype as holding object pointers, and numpy then reads raw bytes as pointers.
The C unpickler cannot be told to check a state first, so the file is read with Python's own
unpickler (``pickle._Unpickler``, slower but fast enough: a verification file holds a few
thousand objects) whose ``BUILD`` accepts only the states numpy itself writes for numeric
dtypes and arrays. Every dtype is built as a private copy, so no state ever reaches numpy's
shared dtype instances.
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
    # always a copy (whatever the pickle asks): its BUILD must not reach numpy's shared dtypes
    return _numeric_dtype(np.dtype(spec, bool(align), True))


def _safe_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if subtype is not _NDARRAY:
        raise UnsafePickleError(f"refused array subtype {subtype!r}: only numpy.ndarray")
    # numpy pickles an array as an empty placeholder whose BUILD fills it in; any other shape
    # would only serve to allocate memory the file does not hold
    if shape != (0,) or dtype_code not in (b"b", "b"):
        raise UnsafePickleError(
            f"refused numpy array placeholder of shape {shape!r} and type code {dtype_code!r}; "
            "numpy writes shape (0,) and type code 'b'"
        )
    return _np_reconstruct(np.ndarray, shape, dtype_code)


_BYTE_ORDERS = frozenset("<>|=")


def _check_dtype_state(dtype: np.dtype, state: Any) -> None:
    """Accept only the state numpy writes for a numeric dtype: (3, byte order, None, None,
    None, -1, -1, 0), i.e. no fields, no sub-array, no item size override and no flags."""
    if isinstance(state, tuple) and len(state) == 8 and isinstance(state[1], bytes):
        state = (state[0], state[1].decode("latin-1"), *state[2:])  # Python 2, read as bytes
    if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3
            and state[1] in _BYTE_ORDERS and state[2:] == (None, None, None, -1, -1, 0)):
        raise UnsafePickleError(
            f"refused the state {_brief(state)} for numpy dtype {dtype}: a numeric dtype's state "
            "is (3, byte order, None, None, None, -1, -1, 0); other flags or sizes would let "
            "numpy misread memory"
        )


def _check_array_state(state: Any) -> None:
    """Accept only (1, shape, numeric dtype, fortran order, raw bytes), as numpy writes it."""
    if isinstance(state, tuple) and len(state) == 4:  # numpy before 1.0 left out the version
        state = (1, *state)
    valid = (isinstance(state, tuple) and len(state) == 5 and state[0] == 1
             and isinstance(state[1], tuple)
             and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                     for n in state[1])
             and isinstance(state[2], np.dtype) and state[2].kind in _NUMERIC_DTYPE_KINDS
             and isinstance(state[3], (bool, int))
             # bytes, or a Python 2 str of ASCII bytes, which numpy reads as latin-1
             and type(state[4]) in (bytes, str))
    if not valid:
        raise UnsafePickleError(
            f"refused the numpy array state {_brief(state)}: expected (1, shape, a bool, "
            "integer or float dtype, fortran order, the raw bytes)"
        )


def _brief(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` (each in a checked form) and
    sets only numpy's own states on what it builds (module docstring)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: io.BufferedIOBase, source: str, encoding: str = "ASCII") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source

    def load_build(self) -> None:
        """``BUILD``: ``__setstate__`` on a numpy dtype or array, with the state checked."""
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, np.dtype):
            _check_dtype_state(target, state)
        elif type(target) is np.ndarray:
            _check_array_state(state)
        else:
            raise UnsafePickleError(
                f"refused to set the state of a {type(target).__name__}: data pickles set "
                "states only on numpy arrays and dtypes"
            )
        target.__setstate__(state)

    dispatch[pickle.BUILD[0]] = load_build

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
    try:
        return _load(data, source, "ASCII")
    except UnicodeDecodeError:
        return _load(data, source, "bytes")


def _load(data: bytes, source: str, encoding: str) -> Any:
    stream = io.BytesIO(data)
    unpickler = RestrictedUnpickler(stream, source, encoding)
    try:
        return unpickler.load()
    except UnsafePickleError as error:
        if str(error).startswith(source):
            raise
        raise UnsafePickleError(f"{source}: {error}; nothing in the file was executed") from None
    except UnicodeDecodeError as error:
        if encoding != "bytes":
            raise  # restricted_loads reads it again as bytes
        # even read as bytes, a text item (always UTF-8) does not decode: corrupt bytes
        raise DataFormatError(_why_unreadable(source, error, stream.tell(), len(data))) from None
    # Whatever else the untrusted bytes make the unpickler raise (a missing memo entry, a
    # stack underflow, a short read, a size beyond memory) means one thing: no valid pickle.
    except Exception as error:  # noqa: BLE001
        raise DataFormatError(_why_unreadable(source, error, stream.tell(), len(data))) from None


def _why_unreadable(source: str, error: Exception, position: int, size: int) -> str:
    """Why a pickle cannot be read, in words and with the byte where reading stopped (the
    unpickler's own message, e.g. "Memo value not found at index 5", means nothing to a
    reader)."""
    if size == 0:
        return f"{source}: expected a pickle, found an empty file; download it again"
    truncated = isinstance(error, EOFError) or position >= size or "truncated" in str(error)
    if truncated:
        return (f"{source}: expected a complete pickle, but the file ends in the middle of it "
                f"(after {size} bytes): it is truncated, e.g. by an interrupted download; "
                "download it again")
    return (f"{source}: expected a pickle, but the data is not valid near byte {position} of "
            f"{size}: the file is corrupt or not a dataset file; download it again")
