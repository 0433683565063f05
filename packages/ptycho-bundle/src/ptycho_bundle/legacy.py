"""Reading the legacy ``.dill`` members: a restricted unpickler for plain data, and the opt-in trusted path.

The restricted unpickler resolves no global by importing it. Plain containers and numbers need no
globals at all; the few it knows map to local, validating stand-ins:

- ``set``, ``frozenset``, ``complex``, ``bytearray`` (``builtins`` and dill's ``_load_type``);
- ``_codecs.encode`` for latin-1 text only (protocol 0-2 pickles of ``bytes``);
- numpy scalars (``numpy._core.multiarray.scalar``) and numpy arrays in the form dill writes them
  (``dill._dill._create_array``), both rebuilt here from the raw bytes with a validated numeric
  dtype. ``numpy.dtype`` yields an inert description, so a pickle never reaches numpy's own
  ``__setstate__`` code (crafted dtype or array states can corrupt memory there).

Everything else, including arrays pickled by the standard library, raises ``BundleError``.
"""

from __future__ import annotations

import io
import logging
import math
import pickle
from typing import Any

import numpy as np

from ptycho_api.errors import BundleError

__all__ = ["restricted_loads", "trusted_loads", "legacy_backend"]

logger = logging.getLogger(__name__)

_NUMERIC_KINDS = "biufc"


class _Refused(pickle.UnpicklingError):
    """A stand-in was called with arguments outside what plain data needs."""


class _DTypeSpec:
    """Inert stand-in for ``numpy.dtype(spec, align, copy)``; becomes a real numeric dtype only on use."""

    def __init__(self, spec: object, align: object = False, copy: object = True) -> None:
        if not isinstance(spec, str) or len(spec) > 8:
            raise _Refused(f"numpy dtype {spec!r}")
        self.spec = spec
        self.byteorder = "="

    def __setstate__(self, state: object) -> None:
        """Accept only the byte order of a plain (non-structured) dtype state."""
        if (
            not isinstance(state, tuple)
            or len(state) < 5
            or state[1] not in ("<", ">", "|", "=")
            or any(part is not None for part in state[2:5])
        ):
            raise _Refused("numpy dtype state of a structured or unusual dtype")
        self.byteorder = state[1]

    def resolve(self) -> np.dtype:
        """The real dtype, if numeric."""
        try:
            dtype = np.dtype(self.spec)
        except TypeError:
            raise _Refused(f"numpy dtype {self.spec!r}") from None
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype:
            raise _Refused(f"numpy dtype {self.spec!r} is not numeric")
        return dtype.newbyteorder(self.byteorder) if self.byteorder != "|" else dtype


_NDARRAY = object()
"""Stands in for ``numpy.ndarray``: a pickle may name it as ``_reconstruct``'s subtype, never call it."""


def _reconstruct(*args: object) -> None:
    """Stand-in for numpy's ``_reconstruct``: dill passes it to ``_create_array``; called directly it refuses."""
    raise _Refused(
        "numpy array pickled by the standard library (only arrays written by dill are read)"
    )


def _canonical(flat: np.ndarray) -> np.ndarray:
    """Booleans from raw bytes made canonical (any non-zero byte is True)."""
    return flat != 0 if flat.dtype.kind == "b" else flat


def _scalar(dtype: object, data: object) -> np.generic:
    """numpy scalar of a numeric dtype from its raw bytes."""
    if not isinstance(dtype, _DTypeSpec) or not isinstance(data, bytes):
        raise _Refused("numpy scalar with unexpected arguments")
    real = dtype.resolve()
    if len(data) != real.itemsize:
        raise _Refused("numpy scalar with the wrong number of bytes")
    return _canonical(np.frombuffer(data, dtype=real, count=1))[0]


def _create_array(f: object, args: object, state: object, npdict: object = None) -> np.ndarray:
    """dill's ``_create_array`` for plain numeric arrays, rebuilt from the raw bytes in ``state``."""
    if f is not _reconstruct or npdict is not None:
        raise _Refused("dill array with unexpected arguments")
    if not isinstance(args, tuple) or len(args) != 3 or args[0] is not _NDARRAY:
        raise _Refused("dill array of an ndarray subclass")
    if not isinstance(state, tuple) or len(state) != 5:
        raise _Refused("dill array state")
    _, shape, dtype, fortran, data = state
    if (
        not isinstance(shape, tuple)
        or len(shape) > 32
        or not all(type(n) is int and n >= 0 for n in shape)
        or not isinstance(dtype, _DTypeSpec)
        or not isinstance(fortran, bool)
        or not isinstance(data, bytes)
    ):
        raise _Refused("dill array state")
    real = dtype.resolve()
    if math.prod(shape) * real.itemsize != len(data):
        raise _Refused("dill array with the wrong number of bytes")
    flat = _canonical(np.frombuffer(data, dtype=real))
    return flat.reshape(shape, order="F" if fortran else "C").copy(order="K")


_PLAIN_TYPES = {t.__name__: t for t in (set, frozenset, complex, bytearray)}


def _load_type(name: object) -> type:
    """dill's ``_load_type`` restricted to the plain container and number types."""
    if not isinstance(name, str) or name not in _PLAIN_TYPES:
        raise _Refused(f"dill type {name!r} is not plain data")
    return _PLAIN_TYPES[name]


def _encode(text: object, encoding: object = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol 0-2 pickles use it for bytes: latin-1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode with unexpected arguments")
    return text.encode("latin-1")


_NUMPY_CORE = ("numpy._core.multiarray", "numpy.core.multiarray")
_ALLOWED: dict[tuple[str, str], object] = {
    **{(mod, name): t for mod in ("builtins", "__builtin__") for name, t in _PLAIN_TYPES.items()},
    **{(mod, "scalar"): _scalar for mod in _NUMPY_CORE},
    **{(mod, "_reconstruct"): _reconstruct for mod in _NUMPY_CORE},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTypeSpec,
    ("dill._dill", "_create_array"): _create_array,
    ("dill._dill", "_load_type"): _load_type,
    ("_codecs", "encode"): _encode,
}


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle referenced a global outside the plain-data whitelist."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only whitelisted plain-data globals and never imports a module."""

    def find_class(self, module: str, name: str) -> Any:
        """Return the whitelisted stand-in for ``module.name`` or raise ``_ForbiddenGlobal``."""
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(module, name) from None


# What a malformed pickle stream (or one that misuses a stand-in) can raise.
_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RecursionError,
    MemoryError,
)


def restricted_loads(data: bytes, where: str) -> Any:
    """Unpickle plain data (dict, list, str, numbers, numeric numpy arrays/scalars) or raise ``BundleError``."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except _ForbiddenGlobal as exc:
        raise BundleError(
            f"{where}: this legacy archive contains executable pickles (it references {exc.qualname}); "
            "opening it could run arbitrary code, so it was not unpickled. If you created this archive "
            "yourself, pass trust=True (load_bundle(..., trust=True)) to read it with dill, which "
            "executes the code it contains; otherwise re-export the model with a current version."
        ) from None
    except _Refused as exc:
        raise BundleError(
            f"{where}: not plain data: {exc}; if you created this archive yourself, trust=True "
            "reads it with dill (which runs any code it contains)"
        ) from None
    except _PICKLE_ERRORS as exc:
        raise BundleError(f"{where}: not a readable pickle ({type(exc).__name__}: {exc})") from None


def trusted_loads(data: bytes, where: str) -> Any:
    """Unpickle with ``dill`` (EXECUTES CODE in the pickle): only for archives the user created."""
    import dill

    logger.warning(
        "%s: trust=True: unpickling with dill; this runs any code the archive contains", where
    )
    try:
        return dill.loads(data)
    except Exception as exc:  # trusted pickles may raise anything, e.g. a missing framework module
        raise BundleError(
            f"{where}: trusted unpickling failed ({type(exc).__name__}: {exc})"
        ) from exc


def legacy_backend(manifest: dict[str, Any]) -> str:
    """Backend of a legacy ``manifest.dill``: its ``backend`` key, else ``pytorch`` for version ``2.0-pytorch``, else ``tensorflow``."""
    backend = manifest.get("backend")
    if isinstance(backend, str) and backend:
        return backend
    return "pytorch" if str(manifest.get("version", "")).endswith("pytorch") else "tensorflow"
