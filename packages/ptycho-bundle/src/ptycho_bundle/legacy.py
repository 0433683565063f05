"""Reading the legacy ``.dill`` members: a restricted unpickler for plain data, and the opt-in trusted path.

The restricted unpickler resolves no global by importing it. Plain containers and numbers need no
globals at all; the few it knows map to local, validating stand-ins:

- ``set``, ``frozenset``, ``complex``, ``bytearray`` (``builtins`` and dill's ``_load_type``);
  a bytearray only from bytes in the stream, never from a size;
- ``_codecs.encode`` for latin-1 text only (protocol 0-2 pickles of ``bytes``);
- numpy scalars (``numpy._core.multiarray.scalar``) and numpy arrays in the form dill writes them
  (``dill._dill._create_array``), both rebuilt here from the raw bytes with a validated numeric
  dtype. ``numpy.dtype`` yields an inert description, so a pickle never reaches numpy's own
  ``__setstate__`` code (crafted dtype or array states can corrupt memory there).

Everything else, including arrays pickled by the standard library, raises ``BundleError``.

Unpickling is also bounded (``BundleLimits.max_pickle_*``): the opcodes are counted and simulated
before anything is built (a few hundred bytes can otherwise describe a structure that shares
references 2**60 times, or a memo that allocates gigabytes), stand-ins charge what they allocate,
and the result is checked for cycles, depth and its size with shared references counted as copies,
so that no later ``repr``, comparison or JSON dump of it can run away.
"""

from __future__ import annotations

import io
import logging
import math
import pickle
import pickletools
from typing import Any

import numpy as np

from ptycho_api.errors import BundleError
from ptycho_bundle.display import summary
from ptycho_bundle.limits import DEFAULT_LIMITS, BundleLimits

__all__ = ["restricted_loads", "trusted_loads", "legacy_backend"]

logger = logging.getLogger(__name__)

_NUMERIC_KINDS = "biufc"


class _Refused(pickle.UnpicklingError):
    """A stand-in was called with arguments outside what plain data needs."""


class _OverBudget(pickle.UnpicklingError):
    """The pickle exceeds one of the ``BundleLimits.max_pickle_*`` limits."""


class _DTypeSpec:
    """Inert stand-in for ``numpy.dtype(spec, align, copy)``; becomes a real numeric dtype only on use."""

    def __init__(self, spec: object, align: object = False, copy: object = True) -> None:
        if not isinstance(spec, str) or len(spec) > 8:
            raise _Refused(f"numpy dtype {summary(spec)}")
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


def _array_from_state(args: object, state: object) -> tuple[np.dtype, tuple[int, ...], bool, bytes]:
    """Validated ``(dtype, shape, fortran, raw bytes)`` of a dill array's ``args`` and ``state``."""
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
    return real, shape, fortran, data


_CONTAINER_TYPES = {"set": set, "frozenset": frozenset, "complex": complex}


def _encode(text: object, encoding: object = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol 0-2 pickles use it for bytes: latin-1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode with unexpected arguments")
    return text.encode("latin-1")  # as long as the text already in the stream: nothing to charge


_NUMPY_CORE = ("numpy._core.multiarray", "numpy.core.multiarray")
_BUILTINS = ("builtins", "__builtin__")
_ALLOWED: dict[tuple[str, str], object] = {
    **{(mod, name): t for mod in _BUILTINS for name, t in _CONTAINER_TYPES.items()},
    **{(mod, "scalar"): _scalar for mod in _NUMPY_CORE},
    **{(mod, "_reconstruct"): _reconstruct for mod in _NUMPY_CORE},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTypeSpec,
    ("_codecs", "encode"): _encode,
}
"""Stand-ins that allocate no more than the stream holds; the unpickler adds those that charge its budget."""


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle referenced a global outside the plain-data whitelist."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only whitelisted plain-data globals, never imports, and keeps to a byte budget."""

    def __init__(self, data: bytes, limits: BundleLimits) -> None:
        super().__init__(io.BytesIO(data))
        self._limit = limits.max_pickle_bytes
        self._allocated = len(data)  # the stream counts too (restricted_loads checked it fits)
        budgeted = {
            **{(mod, "bytearray"): self._bytearray for mod in _BUILTINS},
            ("dill._dill", "_load_type"): self._load_type,
            ("dill._dill", "_create_array"): self._create_array,
        }
        self._allowed = {**_ALLOWED, **budgeted}

    def find_class(self, module: str, name: str) -> Any:
        """Return the whitelisted stand-in for ``module.name`` or raise ``_ForbiddenGlobal``."""
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(module, name) from None

    def _charge(self, nbytes: int, what: str) -> None:
        self._allocated += nbytes
        if self._allocated > self._limit:
            raise _OverBudget(
                f"{what} takes the pickle's memory to {self._allocated:,} bytes, over the limit "
                f"max_pickle_bytes={self._limit:,}"
            )

    def _bytearray(self, source: object = b"", encoding: object = None) -> bytearray:
        """``bytearray`` from bytes in the pickle (or latin-1 text, protocols 0-2); never from a size."""
        if isinstance(source, bytes) and encoding is None:
            data = source
        elif isinstance(source, str) and encoding in ("latin1", "latin-1"):
            data = source.encode("latin-1")
        else:
            # bytearray(3 * 2**30) is a 3 GiB allocation described by a few bytes.
            raise _Refused("bytearray from something other than bytes (e.g. from a size)")
        self._charge(len(data), "a bytearray")
        return bytearray(data)

    def _load_type(self, name: object) -> object:
        """dill's ``_load_type`` restricted to the plain container and number types."""
        if name == "bytearray":
            return self._bytearray
        if not isinstance(name, str) or name not in _CONTAINER_TYPES:
            raise _Refused(f"dill type {summary(name)} is not plain data")
        return _CONTAINER_TYPES[name]

    def _create_array(
        self, f: object, args: object, state: object, npdict: object = None
    ) -> np.ndarray:
        """dill's ``_create_array`` for plain numeric arrays, rebuilt from the raw bytes in ``state``."""
        if f is not _reconstruct or npdict is not None:
            raise _Refused("dill array with unexpected arguments")
        real, shape, fortran, data = _array_from_state(args, state)
        self._charge(len(data), f"a {real} array of shape {shape}")
        flat = _canonical(np.frombuffer(data, dtype=real))
        return flat.reshape(shape, order="F" if fortran else "C").copy(order="K")


# Opcodes that add to the container below their arguments and leave it on the stack.
_KEEPS_CONTAINER = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})
_MEMO_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})


def _check_stream(data: bytes, limits: BundleLimits) -> None:
    """Simulate the pickle's stack without building anything: count opcodes, memo slots and expanded objects.

    Each stack entry is a cell ``[objects it stands for]``; a memo get or ``DUP`` re-pushes a cell
    and counts its objects again, so a structure that shares references is counted as its copy.
    This runs before the real unpickler, which would otherwise hash such a structure (a shared
    tuple as a dict key) or size its memo by an index taken from the stream before any check.
    """
    stack: list[list[int] | None] = []  # None marks a MARK
    memo: dict[int, list[int]] = {}
    objects = 0

    def pop() -> list[int]:
        cell = stack.pop()
        if cell is None:
            raise pickle.UnpicklingError("a mark where an object was expected")
        return cell

    for count, (op, arg, _) in enumerate(pickletools.genops(data), 1):
        if count > limits.max_pickle_ops:
            raise _OverBudget(
                f"more than {limits.max_pickle_ops:,} pickle operations "
                f"(limit max_pickle_ops={limits.max_pickle_ops:,})"
            )
        name = op.name
        if name in _MEMO_PUT:
            index = len(memo) if name == "MEMOIZE" else arg
            if not isinstance(index, int) or index > limits.max_pickle_ops:
                # The real unpickler sizes its memo by the index: 2**32 would take 32 GiB.
                raise _OverBudget(
                    f"memo index {summary(index)} beyond what {limits.max_pickle_ops:,} "
                    f"operations can store (limit max_pickle_ops={limits.max_pickle_ops:,})"
                )
            cell = pop()
            memo[index] = cell
            stack.append(cell)
            continue
        if name in _MEMO_GET or name == "DUP":
            cell = stack[-1] if name == "DUP" else memo.get(arg)
            if cell is None:
                raise pickle.UnpicklingError(f"{name} of nothing stored")
            objects += cell[0]
            stack.append(cell)
        elif pickletools.markobject in op.stack_before:
            items = []
            while (cell := stack.pop()) is not None:
                items.append(cell)
            items += [pop() for _ in range(op.stack_before.index(pickletools.markobject))]
            objects += _push(stack, name, op.stack_after, items)
        else:
            items = [pop() for _ in op.stack_before]
            objects += _push(stack, name, op.stack_after, items)
        if objects > limits.max_pickle_nodes:
            raise _OverBudget(
                f"more than {limits.max_pickle_nodes:,} objects with shared references counted "
                f"as copies (limit max_pickle_nodes={limits.max_pickle_nodes:,})"
            )


def _push(
    stack: list[list[int] | None], name: str, after: list[Any], items: list[list[int]]
) -> int:
    """Push what opcode ``name`` leaves after popping ``items`` (top first); returns the objects it created."""
    if name in _KEEPS_CONTAINER:
        container = items[-1]  # popped last: it sat below its new contents
        container[0] += sum(cell[0] for cell in items[:-1])
        stack.append(container)
        return 0
    if not after:
        return 0
    if after == [pickletools.markobject]:
        stack.append(None)
        return 0
    stack.append([1 + sum(cell[0] for cell in items)])
    return 1


_PLAIN_LEAVES = (str, bytes, bytearray, int, float, complex, type(None), np.generic, np.ndarray)
_PLAIN_CONTAINERS = (dict, list, tuple, set, frozenset)


def _children(value: Any) -> list[Any]:
    if type(value) is dict:
        return [*value.keys(), *value.values()]
    return list(value)


def _check_tree(root: Any, limits: BundleLimits) -> None:
    """Refuse a result that is not plain data, refers to itself, nests too deeply or expands too far.

    Iterative (a 50,000-deep list must not exhaust the interpreter's stack) and linear in the
    distinct objects: each container's expanded size is computed once and reused.
    """
    done: dict[int, int] = {}  # id -> expanded size of a finished container
    path: set[int] = set()  # ids of the containers being walked
    stack: list[list[Any]] = []  # [container, children, next child, expanded size]

    def enter(value: Any) -> int | None:
        """Expanded size of a leaf or finished container; ``None`` after pushing a new one."""
        if type(value) not in _PLAIN_CONTAINERS:
            if not isinstance(value, _PLAIN_LEAVES):
                raise _Refused(f"a {type(value).__name__} object is not plain data")
            return 1
        key = id(value)
        if key in done:
            return done[key]
        if key in path:
            raise _OverBudget("a container that contains itself (a recursive structure)")
        if len(stack) >= limits.max_pickle_depth:
            raise _OverBudget(
                f"containers nested more than {limits.max_pickle_depth} deep "
                f"(limit max_pickle_depth={limits.max_pickle_depth})"
            )
        path.add(key)
        stack.append([value, _children(value), 0, 1])
        return None

    enter(root)
    while stack:
        frame = stack[-1]
        value, children, index, size = frame
        if index < len(children):
            frame[2] += 1
            child = enter(children[index])
            if child is None:
                continue
            frame[3] += child
        else:
            stack.pop()
            path.discard(id(value))
            done[id(value)] = size
            if stack:
                stack[-1][3] += size
        if stack and stack[-1][3] > limits.max_pickle_nodes:
            raise _OverBudget(
                f"more than {limits.max_pickle_nodes:,} objects with shared references counted "
                f"as copies (limit max_pickle_nodes={limits.max_pickle_nodes:,})"
            )


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


def restricted_loads(data: bytes, where: str, limits: BundleLimits = DEFAULT_LIMITS) -> Any:
    """Unpickle plain data (dict, list, str, numbers, numeric numpy arrays/scalars) within ``limits`` or raise ``BundleError``."""
    try:
        if len(data) > limits.max_pickle_bytes:
            raise _OverBudget(
                f"{len(data):,} bytes, over the limit max_pickle_bytes={limits.max_pickle_bytes:,}"
            )
        _check_stream(data, limits)
        value = _RestrictedUnpickler(data, limits).load()
        _check_tree(value, limits)
        return value
    except _ForbiddenGlobal as exc:
        raise BundleError(
            f"{where}: this legacy archive contains executable pickles (it references {summary(exc.qualname)}); "
            "opening it could run arbitrary code, so it was not unpickled. If you created this archive "
            "yourself, pass trust=True (load_bundle(..., trust=True)) to read it with dill, which "
            "executes the code it contains; otherwise re-export the model with a current version."
        ) from None
    except _OverBudget as exc:
        raise BundleError(f"{where}: legacy pickle refused: {exc}") from None
    except _Refused as exc:
        raise BundleError(
            f"{where}: not plain data: {exc}; if you created this archive yourself, trust=True "
            "reads it with dill (which runs any code it contains)"
        ) from None
    except _PICKLE_ERRORS as exc:
        raise BundleError(
            f"{where}: not a readable pickle ({type(exc).__name__}: {summary(str(exc))})"
        ) from None


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
            f"{where}: trusted unpickling failed ({type(exc).__name__}: {summary(str(exc))})"
        ) from exc


def legacy_backend(manifest: dict[str, Any]) -> str:
    """Backend of a legacy ``manifest.dill``: its ``backend`` key, else ``pytorch`` for version ``2.0-pytorch``, else ``tensorflow``."""
    backend = manifest.get("backend")
    if isinstance(backend, str) and backend:
        return backend
    version = manifest.get("version")
    return "pytorch" if isinstance(version, str) and version.endswith("pytorch") else "tensorflow"
