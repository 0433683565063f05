"""``RawData``: a validated ptychographic scan and the NPZ data contract (physics.md B 2, decision 7).

Every way in (``from_file``, ``from_coords_without_pc``, the constructor) goes through the same
validation, and every violation raises ``DataError`` naming the source (file path or
``<arrays>``), the key, what was expected and what was found.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import stat
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from ptycho_api.atomic import atomic_path
from ptycho_api.errors import ConfigError, DataError
from ptycho_api.grouping import group_raw_data
from ptycho_api.plausibility import resolve_data_kind

__all__ = [
    "RawData",
    "DIFFRACTION_KEYS",
    "REQUIRED_KEYS",
    "MAX_LOAD_BYTES",
    "MAX_LOAD_BYTES_ENV",
    "MIN_PATTERN_SIZE",
    "MAX_COORDINATE",
    "NPZ_COMPRESS_LEVEL",
    "contract_keys",
    "load_budget",
    "address_space_limit",
    "memory_limit_note",
    "open_npz",
    "read_members",
]

logger = logging.getLogger(__name__)

DIFFRACTION_KEYS = ("diff3d", "diffraction")
"""Accepted names of the pattern array, in order of preference."""
REQUIRED_KEYS = ("probeGuess", "xcoords", "ycoords")
"""Keys a file must hold besides one of ``DIFFRACTION_KEYS``."""

MAX_LOAD_BYTES = 8 * 2**30
"""Default most bytes (8 GiB) of arrays one NPZ may declare, summed over the keys read; checked
from the .npy headers before any array is read. A 100,000-pattern scan of 128 x 128 float32
patterns is 6.6 GB, and the pipeline then holds about three copies (the file's arrays, float32
amplitudes, the grouped container), so 8 GiB of arrays already asks for ~24 GiB of memory.
Override per call (``from_file(max_bytes=)``) or with ``$PTYCHO_MAX_LOAD_BYTES``."""
MAX_LOAD_BYTES_ENV = "PTYCHO_MAX_LOAD_BYTES"
"""Environment variable overriding ``MAX_LOAD_BYTES`` (bytes; ``2e10`` is accepted)."""
MIN_PATTERN_SIZE = 4
"""Smallest pattern side N in pixels: the smallest even side whose DC pixel (N/2, N/2) has a
pixel on each side, i.e. that samples any spatial frequency at all. The network itself needs
N in ``config.SUPPORTED_N`` (64, 128, 256), checked when a model is built; the data contract
stays usable for simulation, grouping and stitching at smaller N (the tests use 16)."""
MAX_COORDINATE = 1e6
"""Largest |scan position| in object pixels. An object array 1e6 pixels wide (complex64) would
take 8 TB, and a stitching canvas spanning positions of +-1e6 pixels (24 bytes per pixel: a
complex128 sum and a float64 weight) 96 TB; float32 positions (the container's dtype) resolve
only 1/16 pixel there. A larger value is a unit mistake (e.g. nanometres given as pixels)."""
NPZ_COMPRESS_LEVEL = 1
"""zlib level of ``to_file(compress=True)``: on simulated scans level 1 writes about 5 times
faster than numpy's ``savez_compressed`` (level 6) for about 5 % more bytes (measured on the
patterns and ``Y`` of the published grid test scan: level 6 took 30 s for 164 MB, level 1 6 s
for 173 MB)."""

_ARRAYS = "<arrays>"
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def _shape(array: np.ndarray) -> str:
    return f"shape {tuple(array.shape)} {array.dtype}"


class _Check:
    """Validation helpers that raise ``DataError`` messages of one form for one source."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, expected: str, found: str) -> DataError:
        return DataError(f"{self.source}: key '{key}': expected {expected}; found {found}")

    def numeric(self, key: str, value: Any, *, complex_ok: bool) -> np.ndarray:
        array = np.asarray(value)
        kinds = "iufc" if complex_ok else "iuf"
        if array.dtype.kind not in kinds:
            what = "real or complex numbers" if complex_ok else "real numbers"
            raise self.fail(key, what, f"dtype {array.dtype}")
        return array

    def finite(self, key: str, array: np.ndarray) -> None:
        if array.dtype.kind not in "fc":
            return
        rows = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
        # Chunked so that a large pattern stack is never copied as one boolean array.
        step = max(1, 2**22 // max(1, rows.shape[1]))
        for lo in range(0, len(rows), step):
            bad = ~np.isfinite(rows[lo : lo + step])
            if bad.any():
                row, col = np.argwhere(bad)[0]
                flat = (lo + row) * rows.shape[1] + col
                index = tuple(int(i) for i in np.unravel_index(flat, array.shape))
                raise self.fail(key, "finite values", f"{array[index]} at index {index}")

    def vector(self, key: str, value: Any, length: int) -> np.ndarray:
        array = self.numeric(key, value, complex_ok=False)
        if array.ndim != 1:
            raise self.fail(key, "a 1-D array (M,)", _shape(array))
        if len(array) != length:
            raise self.fail(
                key, f"length M = {length} (one value per pattern)", f"length {len(array)}"
            )
        self.finite(key, array)
        return array

    def position(self, key: str, value: Any, length: int) -> np.ndarray:
        """A finite ``(M,)`` vector of positions within +-``MAX_COORDINATE`` pixels, as float64."""
        array = self.vector(key, value, length).astype(np.float64)
        beyond = np.flatnonzero(np.abs(array) > MAX_COORDINATE)
        if len(beyond):
            raise self.fail(
                key,
                f"positions within +-{MAX_COORDINATE:g} object pixels",
                f"{array[beyond[0]]:g} at index {int(beyond[0])}",
            )
        return array


class RawData:
    """A validated scan: patterns, positions, probe and optional ground truth (B 2).

    Attributes: ``diff3d`` ``(M, N, N)`` float32 amplitudes (sqrt of counts); ``xcoords``,
    ``ycoords``, ``xcoords_start``, ``ycoords_start`` ``(M,)`` float64 pixels (column, row of
    the object array); ``probeGuess`` ``(N, N)`` complex64; ``scan_index`` ``(M,)`` int64;
    ``objectGuess`` ``(H, W)`` complex64 or None; ``Y`` ``(M, N, N)`` complex64 per-position
    ground-truth patches or None; ``groups`` ``(B, C)`` int64 fixed groups (pattern indices, e.g.
    of a grid scan; grouping then draws whole groups instead of neighbours) or None;
    ``metadata`` dict or None; ``source`` the file or ``<arrays>``.

    Decision 7: integer patterns are photon counts and are square-rooted (logged at INFO);
    a ``(modes, N, N)`` probe keeps mode 0 (warning when modes > 1). ``data_kind`` states what
    the patterns hold: ``"counts"`` or ``"intensities"`` (square-rooted), ``"amplitudes"`` (kept)
    or ``"auto"`` (default: ``plausibility.resolve_data_kind`` decides; float patterns that lie
    on the photon-count lattice raise ``DataError`` asking for an explicit kind).
    """

    def __init__(
        self,
        xcoords: np.ndarray,
        ycoords: np.ndarray,
        xcoords_start: np.ndarray | None,
        ycoords_start: np.ndarray | None,
        diff3d: np.ndarray,
        probeGuess: np.ndarray,
        scan_index: np.ndarray | None,
        objectGuess: np.ndarray | None = None,
        Y: np.ndarray | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        groups: np.ndarray | None = None,
        source: str | os.PathLike[str] = _ARRAYS,
        diffraction_key: str = "diff3d",
        data_kind: str = "auto",
    ) -> None:
        check = _Check(str(source))
        self.source = str(source)
        self.diff3d = self._patterns(check, diffraction_key, diff3d, data_kind)
        n_patterns, N = self.diff3d.shape[0], self.diff3d.shape[1]
        self.xcoords = check.position("xcoords", xcoords, n_patterns)
        self.ycoords = check.position("ycoords", ycoords, n_patterns)
        start_x = self.xcoords if xcoords_start is None else xcoords_start
        start_y = self.ycoords if ycoords_start is None else ycoords_start
        self.xcoords_start = check.position("xcoords_start", start_x, n_patterns)
        self.ycoords_start = check.position("ycoords_start", start_y, n_patterns)
        self.scan_index = self._scan_index(check, scan_index, n_patterns)
        self.probeGuess = self._probe(check, probeGuess, N)
        self.objectGuess = None if objectGuess is None else self._object(check, objectGuess)
        self.Y = None if Y is None else self._ground_truth(check, Y, n_patterns, N)
        self.groups = None if groups is None else self._groups(check, groups, n_patterns)
        self.metadata = metadata

    # -- validation -------------------------------------------------------------------------

    @staticmethod
    def _patterns(check: _Check, key: str, value: Any, data_kind: str = "auto") -> np.ndarray:
        array = check.numeric(key, value, complex_ok=False)
        if array.ndim == 4 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 3:
            raise check.fail(
                key, "a 3-D array (M, N, N) of patterns (or (M, N, N, 1))", _shape(array)
            )
        if array.shape[1] != array.shape[2]:
            raise check.fail(
                key, "square patterns (N x N)", f"{array.shape[1]} x {array.shape[2]} patterns"
            )
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise check.fail(key, "at least one non-empty pattern", _shape(array))
        if array.shape[1] < MIN_PATTERN_SIZE:
            raise check.fail(
                key,
                f"patterns of at least {MIN_PATTERN_SIZE} x {MIN_PATTERN_SIZE} pixels",
                f"{array.shape[1]} x {array.shape[2]} patterns",
            )
        check.finite(key, array)
        minimum = array.min()
        if minimum < 0:
            index = [int(i) for i in np.unravel_index(int(np.argmin(array)), array.shape)]
            raise check.fail(
                key,
                "non-negative amplitudes or counts",
                f"value {minimum} at pattern {index[0]}, pixel {tuple(index[1:])}",
            )
        if not array.any():
            # Nothing was measured: training would fit zeros and normalisation divides by zero.
            raise check.fail(
                key, "some non-zero amplitudes or counts", f"{array.shape[0]} all-zero patterns"
            )
        kind = resolve_data_kind(array, data_kind, source=check.source, key=key)
        if kind != "amplitudes":
            logger.info(
                "%s: '%s' holds %s (%s); converting to amplitudes sqrt(%s)",
                check.source,
                key,
                "integer photon counts" if array.dtype.kind in "iu" else kind,
                array.dtype,
                kind,
            )
            return np.sqrt(array.astype(np.float64)).astype(np.float32)
        return array.astype(np.float32, copy=False)

    @staticmethod
    def _scan_index(check: _Check, value: Any, length: int) -> np.ndarray:
        if value is None:
            return np.zeros(length, dtype=np.int64)
        array = check.vector("scan_index", value, length)
        if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
            raise check.fail(
                "scan_index", "integer scan ids", f"non-integer values ({array.dtype})"
            )
        return array.astype(np.int64)

    @staticmethod
    def _probe(check: _Check, value: Any, N: int) -> np.ndarray:
        array = check.numeric("probeGuess", value, complex_ok=True)
        if array.ndim == 3 and array.shape[-1] == 1 and array.shape[0] == array.shape[1] > 1:
            array = array[..., 0]  # the legacy (N, N, 1) layout of params.cfg['probe']
        elif array.ndim == 3:
            if array.shape[0] == 0:
                raise check.fail("probeGuess", "at least one (N, N) probe mode", _shape(array))
            if array.shape[0] > 1:
                logger.warning(
                    "%s: probeGuess has %d modes; using mode 0 only",
                    check.source,
                    array.shape[0],
                )
            array = array[0]
        if array.ndim != 2:
            raise check.fail(
                "probeGuess", "an (N, N) or (modes, N, N) complex probe", _shape(array)
            )
        if array.shape != (N, N):
            raise check.fail(
                "probeGuess",
                f"the pattern size ({N}, {N})",
                f"probe of size {array.shape[0]} x {array.shape[1]}",
            )
        check.finite("probeGuess", array)
        if not array.any():
            # A zero probe illuminates nothing: every predicted pattern would be zero.
            raise check.fail("probeGuess", "a probe with non-zero values", "an all-zero probe")
        return array.astype(np.complex64)

    @staticmethod
    def _object(check: _Check, value: Any) -> np.ndarray:
        array = check.numeric("objectGuess", value, complex_ok=True)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 2 or 0 in array.shape:
            raise check.fail("objectGuess", "a non-empty 2-D (H, W) complex object", _shape(array))
        check.finite("objectGuess", array)
        return array.astype(np.complex64)

    @staticmethod
    def _ground_truth(check: _Check, value: Any, length: int, N: int) -> np.ndarray:
        array = check.numeric("Y", value, complex_ok=True)
        if array.ndim == 4 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.shape != (length, N, N):
            raise check.fail("Y", f"per-position patches ({length}, {N}, {N}[, 1])", _shape(array))
        check.finite("Y", array)
        return array.astype(np.complex64, copy=False)

    @staticmethod
    def _groups(check: _Check, value: Any, length: int) -> np.ndarray:
        array = check.numeric("groups", value, complex_ok=False)
        if array.ndim != 2 or 0 in array.shape:
            raise check.fail("groups", "a 2-D (B, C) array of pattern indices", _shape(array))
        if array.dtype.kind not in "iu":
            raise check.fail("groups", "integer pattern indices", f"dtype {array.dtype}")
        if array.min() < 0 or array.max() >= length:
            raise check.fail(
                "groups",
                f"pattern indices in [0, {length - 1}]",
                f"values in [{array.min()}, {array.max()}]",
            )
        return array.astype(np.int64)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_coords_without_pc(
        cls,
        xcoords: np.ndarray,
        ycoords: np.ndarray,
        diff3d: np.ndarray,
        probeGuess: np.ndarray,
        scan_index: np.ndarray | None,
        objectGuess: np.ndarray | None = None,
    ) -> RawData:
        """Build from arrays whose nominal ("start") positions equal the actual ones (Ptychodus' call)."""
        return cls(xcoords, ycoords, None, None, diff3d, probeGuess, scan_index, objectGuess)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None = None,
        data_kind: str = "auto",
    ) -> RawData:
        """Read and validate an NPZ file of the B 2 contract; any violation raises ``DataError``.

        Reads ``diff3d`` (or ``diffraction``), ``probeGuess``, ``xcoords``, ``ycoords`` and the
        optional ``xcoords_start``, ``ycoords_start``, ``scan_index``, ``objectGuess``, ``Y``
        (``ground_truth_patches`` when ``Y`` is absent), ``groups`` and ``_metadata`` (a JSON string; an
        object array is ignored with a warning because nothing is ever unpickled). Other keys
        (e.g. Ptychodus' ``bad_pixels``) are ignored. Only a regular file is opened, and every
        array's .npy header is checked against its zip member and, summed, against
        ``load_budget(max_bytes)`` bytes before any array is read. ``data_kind``: what the
        patterns hold (``counts``, ``amplitudes``, ``intensities`` or ``auto``; see the class).
        """
        path = Path(path)
        with open_npz(path) as npz:
            keys = set(npz.files)
            diffraction_key = contract_keys(path, keys)
            truth_key = "Y" if "Y" in keys else "ground_truth_patches"
            wanted = [
                *("xcoords", "ycoords", "xcoords_start", "ycoords_start"),
                *(diffraction_key, "probeGuess", "scan_index", "objectGuess", truth_key, "groups"),
            ]
            if "_metadata" in keys:
                if _declared(npz, path, "_metadata").dtype.hasobject:
                    logger.warning(
                        "%s: '_metadata' is a pickled object array; ignored (never unpickled)",
                        path,
                    )
                else:
                    wanted.append("_metadata")
            arrays = read_members(npz, path, [k for k in wanted if k in keys], max_bytes=max_bytes)
        return cls(
            arrays["xcoords"],
            arrays["ycoords"],
            arrays.get("xcoords_start"),
            arrays.get("ycoords_start"),
            arrays[diffraction_key],
            arrays["probeGuess"],
            arrays.get("scan_index"),
            arrays.get("objectGuess"),
            arrays.get(truth_key),
            metadata=_read_metadata(arrays.get("_metadata"), path),
            groups=arrays.get("groups"),
            source=path,
            diffraction_key=diffraction_key,
            data_kind=data_kind,
        )

    def to_file(
        self,
        path: str | os.PathLike[str],
        compress: bool = True,
        *,
        extra: dict[str, np.ndarray] | None = None,
    ) -> Path:
        """Write the contract keys (and ``_metadata`` as a JSON string) to an NPZ, atomically.

        ``extra``: further arrays to store under their own keys (e.g. ``bad_pixels``), which
        ``from_file`` ignores; a contract key or an object array there is refused. Members are
        deflated at ``NPZ_COMPRESS_LEVEL`` (stored with ``compress=False``), never pickled.
        """
        arrays: dict[str, np.ndarray] = {
            "diff3d": self.diff3d,
            "probeGuess": self.probeGuess,
            "xcoords": self.xcoords,
            "ycoords": self.ycoords,
            "xcoords_start": self.xcoords_start,
            "ycoords_start": self.ycoords_start,
            "scan_index": self.scan_index,
        }
        if self.objectGuess is not None:
            arrays["objectGuess"] = self.objectGuess
        if self.Y is not None:
            arrays["Y"] = self.Y
        if self.groups is not None:
            arrays["groups"] = self.groups
        if self.metadata is not None:
            arrays["_metadata"] = np.array(json.dumps(self.metadata))
        clash = sorted(set(extra or {}) & set(arrays))
        if clash:
            raise DataError(
                f"{path}: extra arrays: expected keys the scan does not use; found {clash}"
            )
        pickled = sorted(k for k, v in (extra or {}).items() if np.asarray(v).dtype.hasobject)
        if pickled:
            raise DataError(
                f"{path}: extra arrays {pickled}: expected numeric or string arrays (written "
                "without pickling); found Python objects"
            )
        arrays.update(extra or {})
        path = Path(path)
        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with (
            atomic_path(path) as tmp,
            zipfile.ZipFile(
                tmp, "w", method, allowZip64=True, compresslevel=NPZ_COMPRESS_LEVEL
            ) as archive,
        ):
            for name, value in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)
        return path

    # -- conveniences -------------------------------------------------------------------------

    @property
    def N(self) -> int:
        """Pattern (and probe) side in pixels."""
        return int(self.diff3d.shape[1])

    def __len__(self) -> int:
        return int(self.diff3d.shape[0])

    def __repr__(self) -> str:
        return (
            f"RawData(source={self.source!r}, M={len(self)}, N={self.N}, "
            f"objectGuess={'yes' if self.objectGuess is not None else 'no'}, "
            f"Y={'yes' if self.Y is not None else 'no'})"
        )

    def generate_grouped_data(
        self,
        N: int,
        K: int = 4,
        nsamples: int | None = None,
        gridsize: int | None = None,
        seed: int | None = None,
        sequential_sampling: bool = False,
        enable_oversampling: bool = False,
        neighbor_pool_size: int | None = None,
    ) -> dict[str, Any]:
        """Group scan points into ``nsamples`` groups of gridsize^2 neighbours (B 4); see ``grouping``."""
        return group_raw_data(
            self,
            N,
            K=K,
            nsamples=nsamples,
            gridsize=gridsize,
            seed=seed,
            sequential_sampling=sequential_sampling,
            enable_oversampling=enable_oversampling,
            neighbor_pool_size=neighbor_pool_size,
        )


def contract_keys(path: str | os.PathLike[str], keys: Iterable[str], *, noun: str = "key") -> str:
    """The pattern key among ``keys`` (``diff3d`` or ``diffraction``), or ``DataError`` naming every
    missing required ``noun`` (key of an NPZ, dataset of an HDF5 file) and what was found."""
    keys = set(keys)
    diffraction_key = next((k for k in DIFFRACTION_KEYS if k in keys), None)
    missing = [k for k in REQUIRED_KEYS if k not in keys]
    if diffraction_key is None:
        missing.insert(0, " or ".join(DIFFRACTION_KEYS))
    if missing:
        raise DataError(
            f"{path}: missing required {noun}(s) {', '.join(repr(m) for m in missing)}: "
            f"expected {list(DIFFRACTION_KEYS)[:1] + list(REQUIRED_KEYS)}; "
            f"found {noun}s {sorted(keys)}"
        )
    return diffraction_key


def load_budget(max_bytes: int | None = None) -> int:
    """Most bytes of arrays to read from one NPZ: ``max_bytes``, ``$PTYCHO_MAX_LOAD_BYTES`` or ``MAX_LOAD_BYTES``."""
    if max_bytes is not None:
        return int(max_bytes)
    text = os.environ.get(MAX_LOAD_BYTES_ENV)
    if text is None:
        return MAX_LOAD_BYTES
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        value = 0
    if value <= 0:
        raise ConfigError(
            f"environment variable {MAX_LOAD_BYTES_ENV}: expected a positive number of bytes; "
            f"found {text!r}"
        )
    return value


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype declared by the .npy header at ``fp``; reads the header only."""
    version = np.lib.format.read_magic(fp)
    reader = _NPY_HEADER_READERS.get(version)
    if reader is None:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    shape, _, dtype = reader(fp)
    return shape, dtype


@contextlib.contextmanager
def open_npz(path: str | os.PathLike[str]) -> Iterator[np.lib.npyio.NpzFile]:
    """Open ``path`` as an NPZ archive of named arrays (closed on exit); else raise ``DataError``.

    Nothing but a regular file is opened: a FIFO would block and a device never end. Arrays are
    not read; a single .npy file is described from its header, not loaded.
    """
    path = Path(path)
    npy = None
    try:
        mode = path.stat().st_mode
        if stat.S_ISREG(mode):
            with open(path, "rb") as fh:
                head = fh.read(len(np.lib.format.MAGIC_PREFIX))
                if head == np.lib.format.MAGIC_PREFIX:
                    fh.seek(0)
                    npy = _npy_header(fh)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot read the file: expected a readable NPZ file; "
            f"found {exc.strerror or exc}"
        ) from exc
    except ValueError as exc:  # a .npy file with a damaged header
        raise DataError(
            f"{path}: expected an NPZ archive; found a damaged .npy file ({exc})"
        ) from exc
    if not stat.S_ISREG(mode):
        raise DataError(
            f"{path}: cannot read the file: expected a regular NPZ file; found {_file_kind(mode)}"
        )
    if npy is not None:
        raise DataError(
            f"{path}: expected an NPZ archive of named arrays; found a single .npy array "
            f"(shape {npy[0]} {npy[1]})"
        )
    if not head.startswith(b"PK"):
        # numpy's own message talks about pickles for any unknown format; show the bytes.
        raise DataError(
            f"{path}: expected an NPZ archive (numpy.savez, a zip file); found a file that is "
            f"not one (starts with {head[:8]!r})"
        )
    try:
        npz = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot read the file: expected a readable NPZ file; "
            f"found {exc.strerror or exc}"
        ) from exc
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path}: expected an NPZ archive (numpy.savez, a zip file); "
            f"found a damaged or truncated zip archive ({exc})"
        ) from exc
    with npz:
        yield npz


_MAX_EXPANSION = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: 1032}
"""Most bytes one stored byte can yield, per zip compression method (deflate's limit is 1032:1);
other methods (bzip2, lzma) are left to the load budget."""


class _Declared(NamedTuple):
    """What a member's .npy header declares."""

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int
    """``prod(shape) * itemsize``: what reading the array allocates."""


def _declared(npz: np.lib.npyio.NpzFile, path: Path, key: str) -> _Declared:
    """Read ``key``'s .npy header (not its data) and check it against the zip member's size."""
    name = f"{key}.npy" if f"{key}.npy" in npz.zip.namelist() else key
    info = npz.zip.getinfo(name)
    expandable = _MAX_EXPANSION.get(info.compress_type)
    if expandable is not None and info.file_size > expandable * info.compress_size + 1024:
        # The central directory's size can be edited at will; the compressed bytes bound what
        # the member can really hold (deflate expands at most ~1,032-fold).
        raise DataError(
            f"{path}: key '{key}': expected an archive member of at most "
            f"{expandable * info.compress_size + 1024:,} bytes from its {info.compress_size:,} "
            f"stored bytes; found {info.file_size:,} declared (a damaged or forged zip entry)"
        )
    try:
        with npz.zip.open(info) as fp:
            shape, dtype = _npy_header(fp)
            data_bytes = info.file_size - fp.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path}: key '{key}': expected a .npy array; found an unreadable member ({exc})"
        ) from exc
    if any(n < 0 for n in shape):
        raise DataError(f"{path}: key '{key}': expected a shape of sizes >= 0; found {shape}")
    nbytes = math.prod(shape) * dtype.itemsize
    # Object arrays are pickles whose size says nothing; they are refused unread by the caller.
    if not dtype.hasobject and nbytes > data_bytes:
        # The header may claim any shape: numpy would allocate it all before finding the data
        # short, so a few bytes could ask for terabytes.
        raise DataError(
            f"{path}: key '{key}': expected the {nbytes:,} bytes its header declares "
            f"(shape {shape} {dtype}); found {data_bytes:,} bytes in the archive member"
        )
    return _Declared(shape, dtype, nbytes)


def read_members(
    npz: np.lib.npyio.NpzFile,
    path: str | os.PathLike[str],
    keys: Iterable[str],
    *,
    max_bytes: int | None = None,
) -> dict[str, np.ndarray]:
    """Read the arrays ``keys`` of an open NPZ, after checking every header; else ``DataError``.

    Each header must match its zip member, no array may hold Python objects, and their sizes
    summed must fit ``load_budget(max_bytes)`` bytes, all before any array is allocated.
    """
    path = Path(path)
    keys = list(keys)
    declared = {key: _declared(npz, path, key) for key in keys}
    for key, header in declared.items():
        if header.dtype.hasobject:
            raise DataError(
                f"{path}: key '{key}': expected a plain numeric array; found dtype object "
                "(pickled Python objects, never loaded)"
            )
    budget = load_budget(max_bytes)
    total = sum(header.nbytes for header in declared.values())
    if total > budget:
        key, header = max(declared.items(), key=lambda item: item[1].nbytes)
        raise DataError(
            f"{path}: key '{key}': expected arrays of at most {budget:,} bytes in all "
            f"(${MAX_LOAD_BYTES_ENV} raises the limit); found {total:,} bytes declared, "
            f"{header.nbytes:,} of them for shape {header.shape} {header.dtype}"
        )
    arrays = {}
    for key in keys:
        try:
            arrays[key] = npz[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(
                f"{path}: key '{key}': expected a plain numeric array; "
                f"found an unreadable member ({exc})"
            ) from exc
        except MemoryError:
            arrays.clear()
            raise DataError(
                f"{path}: key '{key}': expected an array that fits in this process's memory; "
                f"found {declared[key].nbytes:,} bytes (shape {declared[key].shape} "
                f"{declared[key].dtype}) that could not be allocated{memory_limit_note()}"
            ) from None
    return arrays


def address_space_limit() -> int | None:
    """The soft ``RLIMIT_AS`` of this process in bytes, or None when unlimited or unknown."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


def memory_limit_note() -> str:
    """``" (address space limited to X GiB)"`` when an ``RLIMIT_AS`` applies, else ``""``."""
    limit = address_space_limit()
    return "" if limit is None else f" (address space limited to {limit / 2**30:.3g} GiB)"


def _read_metadata(raw: np.ndarray | None, path: Path) -> dict[str, Any] | None:
    """The ``_metadata`` JSON object, or None (absent, or not a JSON object: warned)."""
    if raw is None:
        return None
    try:
        data = json.loads(str(raw.item() if raw.ndim == 0 else raw))
    except (json.JSONDecodeError, ValueError):
        logger.warning("%s: '_metadata' is not a JSON string; ignored", path)
        return None
    return data if isinstance(data, dict) else None
