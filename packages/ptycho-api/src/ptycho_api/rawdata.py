"""``RawData``: a validated ptychographic scan and the NPZ data contract (physics.md B 2, decision 7).

Every way in (``from_file``, ``from_coords_without_pc``, the constructor) goes through the same
validation, and every violation raises ``DataError`` naming the source (file path or
``<arrays>``), the key, what was expected and what was found.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api.atomic import atomic_path
from ptycho_api.errors import DataError
from ptycho_api.grouping import group_raw_data

__all__ = ["RawData", "DIFFRACTION_KEYS", "REQUIRED_KEYS"]

logger = logging.getLogger(__name__)

DIFFRACTION_KEYS = ("diff3d", "diffraction")
"""Accepted names of the pattern array, in order of preference."""
REQUIRED_KEYS = ("probeGuess", "xcoords", "ycoords")
"""Keys a file must hold besides one of ``DIFFRACTION_KEYS``."""

_ARRAYS = "<arrays>"


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


class RawData:
    """A validated scan: patterns, positions, probe and optional ground truth (B 2).

    Attributes: ``diff3d`` ``(M, N, N)`` float32 amplitudes (sqrt of counts); ``xcoords``,
    ``ycoords``, ``xcoords_start``, ``ycoords_start`` ``(M,)`` float64 pixels (column, row of
    the object array); ``probeGuess`` ``(N, N)`` complex64; ``scan_index`` ``(M,)`` int64;
    ``objectGuess`` ``(H, W)`` complex64 or None; ``Y`` ``(M, N, N)`` complex64 per-position
    ground-truth patches or None; ``metadata`` dict or None; ``source`` the file or ``<arrays>``.

    Decision 7: integer patterns are photon counts and are square-rooted (logged at INFO);
    a ``(modes, N, N)`` probe keeps mode 0 (warning when modes > 1).
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
        source: str | os.PathLike[str] = _ARRAYS,
        diffraction_key: str = "diff3d",
    ) -> None:
        check = _Check(str(source))
        self.source = str(source)
        self.diff3d = self._patterns(check, diffraction_key, diff3d)
        n_patterns, N = self.diff3d.shape[0], self.diff3d.shape[1]
        self.xcoords = check.vector("xcoords", xcoords, n_patterns).astype(np.float64)
        self.ycoords = check.vector("ycoords", ycoords, n_patterns).astype(np.float64)
        start_x = self.xcoords if xcoords_start is None else xcoords_start
        start_y = self.ycoords if ycoords_start is None else ycoords_start
        self.xcoords_start = check.vector("xcoords_start", start_x, n_patterns).astype(np.float64)
        self.ycoords_start = check.vector("ycoords_start", start_y, n_patterns).astype(np.float64)
        self.scan_index = self._scan_index(check, scan_index, n_patterns)
        self.probeGuess = self._probe(check, probeGuess, N)
        self.objectGuess = None if objectGuess is None else self._object(check, objectGuess)
        self.Y = None if Y is None else self._ground_truth(check, Y, n_patterns, N)
        self.metadata = metadata

    # -- validation -------------------------------------------------------------------------

    @staticmethod
    def _patterns(check: _Check, key: str, value: Any) -> np.ndarray:
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
        check.finite(key, array)
        minimum = array.min()
        if minimum < 0:
            index = [int(i) for i in np.unravel_index(int(np.argmin(array)), array.shape)]
            raise check.fail(
                key,
                "non-negative amplitudes or counts",
                f"value {minimum} at pattern {index[0]}, pixel {tuple(index[1:])}",
            )
        if array.dtype.kind in "iu":
            logger.info(
                "%s: '%s' holds integer photon counts (%s); converting to amplitudes sqrt(counts)",
                check.source,
                key,
                array.dtype,
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
        return array.astype(np.complex64)

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
    def from_file(cls, path: str | os.PathLike[str]) -> RawData:
        """Read and validate an NPZ file of the B 2 contract; any violation raises ``DataError``.

        Reads ``diff3d`` (or ``diffraction``), ``probeGuess``, ``xcoords``, ``ycoords`` and the
        optional ``xcoords_start``, ``ycoords_start``, ``scan_index``, ``objectGuess``, ``Y``
        (``ground_truth_patches`` when ``Y`` is absent) and ``_metadata`` (a JSON string; an
        object array is ignored with a warning because nothing is ever unpickled). Other keys
        (e.g. Ptychodus' ``bad_pixels``) are ignored.
        """
        path = Path(path)
        try:
            npz = np.load(path, allow_pickle=False)
        except OSError as exc:
            raise DataError(
                f"{path}: cannot read the file: expected a readable NPZ file; "
                f"found {exc.strerror or exc}"
            ) from exc
        except (ValueError, EOFError, zipfile.BadZipFile) as exc:
            # numpy's own message talks about pickles for any unknown format; show the bytes.
            with open(path, "rb") as fh:
                head = fh.read(8)
            found = (
                f"a damaged or truncated zip archive ({exc})"
                if head.startswith(b"PK")
                else f"a file that is not one (starts with {head!r})"
            )
            raise DataError(
                f"{path}: expected an NPZ archive (numpy.savez, a zip file); found {found}"
            ) from exc
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path}: expected an NPZ archive of named arrays; found a single .npy array "
                f"({_shape(npz)})"
            )
        with npz:
            keys = set(npz.files)
            diffraction_key = next((k for k in DIFFRACTION_KEYS if k in keys), None)
            missing = [k for k in REQUIRED_KEYS if k not in keys]
            if diffraction_key is None:
                missing.insert(0, " or ".join(DIFFRACTION_KEYS))
            if missing:
                raise DataError(
                    f"{path}: missing required key(s) {', '.join(repr(m) for m in missing)}: "
                    f"expected {list(DIFFRACTION_KEYS)[:1] + list(REQUIRED_KEYS)}; "
                    f"found keys {sorted(keys)}"
                )

            def read(key: str) -> np.ndarray | None:
                if key not in keys:
                    return None
                try:
                    return npz[key]
                except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                    raise DataError(
                        f"{path}: key '{key}': expected a plain numeric array; "
                        f"found an unreadable member ({exc})"
                    ) from exc

            ground_truth = read("Y") if "Y" in keys else read("ground_truth_patches")
            return cls(
                read("xcoords"),
                read("ycoords"),
                read("xcoords_start"),
                read("ycoords_start"),
                read(diffraction_key),
                read("probeGuess"),
                read("scan_index"),
                read("objectGuess"),
                ground_truth,
                metadata=_read_metadata(npz, path),
                source=path,
                diffraction_key=diffraction_key,
            )

    def to_file(self, path: str | os.PathLike[str], compress: bool = True) -> Path:
        """Write the contract keys (and ``_metadata`` as a JSON string) to an NPZ, atomically."""
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
        if self.metadata is not None:
            arrays["_metadata"] = np.array(json.dumps(self.metadata))
        save = np.savez_compressed if compress else np.savez
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            # A file handle, not a name: numpy would append ".npz" to the temporary name.
            save(fh, **arrays)
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


def _read_metadata(npz: np.lib.npyio.NpzFile, path: Path) -> dict[str, Any] | None:
    if "_metadata" not in npz.files:
        return None
    try:
        raw = npz["_metadata"]
    except ValueError:
        logger.warning("%s: '_metadata' is a pickled object array; ignored (never unpickled)", path)
        return None
    try:
        data = json.loads(str(raw.item() if raw.ndim == 0 else raw))
    except (json.JSONDecodeError, ValueError):
        logger.warning("%s: '_metadata' is not a JSON string; ignored", path)
        return None
    return data if isinstance(data, dict) else None
