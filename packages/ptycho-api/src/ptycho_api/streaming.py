"""Streaming inference: read a scan's patterns a chunk at a time and stitch them as they come.

A scan of a million 64 x 64 patterns is 16 GB of float32; ``RawData.from_file`` would hold all
of it (and refuses beyond ``load_budget``). Here only the small arrays (positions, probe, object)
are read whole; the patterns are read ``chunk`` at a time, twice:

1. a statistics pass: every chunk is validated (finite, non-negative; the same messages as
   ``RawData`` with the pattern's index in the file), the energy ``sum X^2`` of every pattern is
   kept (8 bytes per pattern) for the normalisation factor of B 5.1, and evenly spaced whole
   patterns are kept for ``plausibility.resolve_data_kind``;
2. a prediction pass: each chunk is normalised, predicted by the backend and accumulated on a
   ``stitching.StitchCanvas`` whose geometry comes from all positions.

Host memory is then the framework, the model, one chunk and the canvas, whatever the scan's
length. The numbers are those of the in-memory path at gridsize 1 (one group per position, in
file order, local offsets 0): the same float32 amplitudes, the same float64 energies and their
``np.mean``, the same cast order. Inputs: an NPZ of the data contract (stored or deflated
members, C order) or an HDF5 file with the same dataset names.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm.auto import tqdm

from ptycho_api.atomic import atomic_path
from ptycho_api.errors import DataError
from ptycho_api.normalization import _pattern_energies
from ptycho_api.plausibility import _SAMPLE_VALUES, resolve_data_kind
from ptycho_api.rawdata import (
    _NPY_HEADER_READERS,
    MIN_PATTERN_SIZE,
    RawData,
    _Check,
    _declared,
    contract_keys,
    load_budget,
    open_npz,
    read_members,
)
from ptycho_api.stitching import (
    STITCH_MODES,
    StitchCanvas,
    crop_margin,
    illumination_window,
    stitch_geometry,
    weighted_support,
)

__all__ = [
    "CHUNK_BYTES",
    "StreamUnsupported",
    "ScanStream",
    "ScanStatistics",
    "StreamedReconstruction",
    "open_scan",
    "is_hdf5",
    "scan_statistics",
    "reconstruct_stream",
    "write_npz_streamed",
]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 16 * 2**20
"""Default bytes of float32 amplitudes per chunk (1,024 patterns of 64 x 64): each read and
predict call is long against its fixed cost, and the chunk's working copies (stored values,
amplitudes, scaled input, complex64 patches and the framework's own) stay near 100 MB."""

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class StreamUnsupported(DataError):
    """The file is valid but cannot be read a chunk at a time (the caller may load it whole)."""


def is_hdf5(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts with the HDF5 signature (superblock at offset 0)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(_HDF5_MAGIC)) == _HDF5_MAGIC
    except OSError:
        return False


@dataclass
class ScanStream:
    """A scan whose small arrays are in memory and whose patterns are read in chunks.

    ``xcoords`` / ``ycoords`` ``(M,)`` float64 object pixels; ``probeGuess`` ``(N, N)`` complex64;
    ``objectGuess`` ``(H, W)`` complex64 or None; ``dtype`` of the stored patterns;
    ``read(lo, hi)`` -> ``(hi - lo, N, N)`` patterns as stored (not yet validated).
    """

    source: str
    key: str
    n_patterns: int
    N: int
    dtype: np.dtype
    xcoords: np.ndarray
    ycoords: np.ndarray
    probeGuess: np.ndarray
    objectGuess: np.ndarray | None
    read: Callable[[int, int], np.ndarray]

    def chunks(self, chunk: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, patterns)`` of ``chunk`` patterns at a time, in file order."""
        for lo in range(0, self.n_patterns, chunk):
            yield lo, self.read(lo, min(lo + chunk, self.n_patterns))


def _pattern_shape(check: _Check, key: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Check a declared pattern stack ``(M, N, N[, 1])`` of real numbers: -> N."""
    found = f"shape {shape} {dtype}"
    if dtype.kind not in "iuf":
        raise check.fail(key, "real numbers", f"dtype {dtype}")
    if len(shape) == 4 and shape[-1] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise check.fail(key, "a 3-D array (M, N, N) of patterns (or (M, N, N, 1))", found)
    if shape[1] != shape[2]:
        raise check.fail(key, "square patterns (N x N)", f"{shape[1]} x {shape[2]} patterns")
    if shape[0] == 0 or shape[1] == 0:
        raise check.fail(key, "at least one non-empty pattern", found)
    if shape[1] < MIN_PATTERN_SIZE:
        raise check.fail(
            key,
            f"patterns of at least {MIN_PATTERN_SIZE} x {MIN_PATTERN_SIZE} pixels",
            f"{shape[1]} x {shape[2]} patterns",
        )
    return int(shape[1])


def _small_arrays(check: _Check, arrays: dict[str, Any], n: int, N: int) -> dict[str, Any]:
    """Validate positions, probe and object exactly as ``RawData`` does."""
    return {
        "xcoords": check.position("xcoords", arrays["xcoords"], n),
        "ycoords": check.position("ycoords", arrays["ycoords"], n),
        "probeGuess": RawData._probe(check, arrays["probeGuess"], N),
        "objectGuess": (
            None
            if arrays.get("objectGuess") is None
            else RawData._object(check, arrays["objectGuess"])
        ),
    }


@contextlib.contextmanager
def _npz_stream(path: Path, max_bytes: int | None) -> Iterator[ScanStream]:
    with open_npz(path) as npz:
        keys = set(npz.files)
        key = contract_keys(path, keys)
        check = _Check(str(path))
        declared = _declared(npz, path, key)
        N = _pattern_shape(check, key, declared.shape, declared.dtype)
        n = int(declared.shape[0])
        small = [k for k in ("xcoords", "ycoords", "probeGuess", "objectGuess") if k in keys]
        arrays = _small_arrays(check, read_members(npz, path, small, max_bytes=max_bytes), n, N)
        name = f"{key}.npy" if f"{key}.npy" in npz.zip.namelist() else key
        member = npz.zip.open(name)
        try:
            version = np.lib.format.read_magic(member)
            _, fortran_order, _ = _NPY_HEADER_READERS[version](member)
            if fortran_order:
                raise StreamUnsupported(
                    f"{path}: key '{key}': expected patterns stored in C order to read them a "
                    "chunk at a time; found Fortran order"
                )
            rows = _NpyRows(member, member.tell(), N, declared.dtype, path, key)
            yield ScanStream(str(path), key, n, N, declared.dtype, read=rows, **arrays)
        finally:
            member.close()


class _NpyRows:
    """Patterns ``[lo, hi)`` of an open .npy zip member; sequential reads never seek."""

    def __init__(
        self, member: IO[bytes], data_start: int, N: int, dtype: np.dtype, path: Path, key: str
    ) -> None:
        self.member, self.data_start, self.N, self.dtype = member, data_start, N, dtype
        self.path, self.key = path, key
        self.pattern_bytes = N * N * dtype.itemsize
        self.position = data_start

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        want = self.data_start + lo * self.pattern_bytes
        if self.position != want:
            self.member.seek(want)  # zipfile re-reads from the start only to go backwards
        size = (hi - lo) * self.pattern_bytes
        try:
            data = self.member.read(size)
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(
                f"{self.path}: key '{self.key}': expected readable patterns {lo}-{hi - 1}; "
                f"found a damaged archive member ({exc})"
            ) from exc
        if len(data) != size:
            raise DataError(
                f"{self.path}: key '{self.key}': expected {size:,} bytes for patterns "
                f"{lo}-{hi - 1}; found {len(data):,} (a truncated archive)"
            )
        self.position = want + size
        return np.frombuffer(data, dtype=self.dtype).reshape(hi - lo, self.N, self.N)


@contextlib.contextmanager
def _hdf5_stream(path: Path, max_bytes: int | None) -> Iterator[ScanStream]:
    from ptycho_api.hdf5 import _check_stored, _dataset, require_h5py

    h5py = require_h5py(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(
            f"{path}: expected a readable HDF5 file; found an unreadable or damaged one ({exc})"
        ) from exc
    with h5:
        datasets = [k for k in h5 if isinstance(h5[k], h5py.Dataset)]
        key = contract_keys(path, datasets, noun="dataset")
        check = _Check(str(path))
        node = _dataset(h5, path, key, h5py)
        N = _pattern_shape(check, key, tuple(node.shape), node.dtype)
        n = int(node.shape[0])
        _check_stored(node, path, key, math.prod(node.shape) * node.dtype.itemsize)
        names = [k for k in ("xcoords", "ycoords", "probeGuess", "objectGuess") if k in h5]
        small = {k: _dataset(h5, path, k, h5py) for k in names}
        total = sum(math.prod(v.shape) * v.dtype.itemsize for v in small.values())
        budget = load_budget(max_bytes)
        if total > budget:
            raise DataError(
                f"{path}: positions, probe and object: expected at most {budget:,} bytes in "
                f"all; found {total:,} bytes declared"
            )
        arrays = _small_arrays(check, {k: v[()] for k, v in small.items()}, n, N)

        def read(lo: int, hi: int) -> np.ndarray:
            try:
                return np.asarray(node[lo:hi]).reshape(hi - lo, N, N)
            except OSError as exc:
                raise DataError(
                    f"{path}: dataset '{key}': expected readable patterns {lo}-{hi - 1}; "
                    f"found a damaged dataset ({exc})"
                ) from exc

        yield ScanStream(str(path), key, n, N, node.dtype, read=read, **arrays)


@contextlib.contextmanager
def open_scan(
    path: str | os.PathLike[str], *, max_bytes: int | None = None
) -> Iterator[ScanStream]:
    """Open an NPZ or HDF5 scan for chunked reading; positions, probe and object are read now.

    The small arrays are validated as ``RawData`` validates them and must fit
    ``load_budget(max_bytes)``; the pattern stack is only described (shape, dtype), never
    loaded. Raises ``DataError`` for any violation, ``StreamUnsupported`` for a Fortran-order
    NPZ member.
    """
    path = Path(path)
    opener = _hdf5_stream if is_hdf5(path) else _npz_stream
    with opener(path, max_bytes) as stream:
        yield stream


@dataclass
class ScanStatistics:
    """What the statistics pass found: ``kind`` of the stored values and ``alpha`` of B 5.1."""

    kind: str
    alpha: float


def _amplitudes(patterns: np.ndarray, kind: str) -> np.ndarray:
    """Stored values -> float32 amplitudes, as ``RawData`` converts them."""
    if kind != "amplitudes":
        return np.sqrt(patterns.astype(np.float64)).astype(np.float32)
    return patterns.astype(np.float32, copy=False)


def _energies(amplitudes: np.ndarray) -> np.ndarray:
    """``sum X^2`` per pattern of ``(b, N, N)`` float32: ``normalization``'s own sums, float64."""
    return _pattern_energies(amplitudes[..., None])[:, 0]


def _check_chunk(check: _Check, key: str, lo: int, patterns: np.ndarray) -> None:
    """Finite and non-negative, with the failing value's index in the whole stack."""
    if patterns.dtype.kind == "f":
        bad = ~np.isfinite(patterns)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            found = f"{patterns[index]} at index {(lo + index[0], *index[1:])}"
            raise check.fail(key, "finite values", found)
    minimum = patterns.min()
    if minimum < 0:
        index = [int(i) for i in np.unravel_index(int(np.argmin(patterns)), patterns.shape)]
        raise check.fail(
            key,
            "non-negative amplitudes or counts",
            f"value {minimum} at pattern {lo + index[0]}, pixel {tuple(index[1:])}",
        )


def _progress(total: int, label: str, enabled: bool) -> Any:
    return tqdm(
        total=total,
        desc=label,
        unit="pattern",
        unit_scale=True,
        disable=None if enabled else True,
        leave=False,
    )


def scan_statistics(
    stream: ScanStream, *, data_kind: str = "auto", chunk: int | None = None, progress: bool = True
) -> ScanStatistics:
    """Pass 1: validate every pattern, decide what they hold, and the normalisation factor alpha.

    alpha = sqrt((N/2)^2 / mean sum X^2) over all patterns (B 5.1). ``resolve_data_kind`` sees
    the same evenly spaced whole patterns that it would pick from the full stack.
    """
    chunk = chunk or default_chunk(stream.N)
    check = _Check(stream.source)
    n, N = stream.n_patterns, stream.N
    count = max(1, min(n, _SAMPLE_VALUES // (N * N)))
    picks = np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))
    sample = np.empty((len(picks), N, N), dtype=stream.dtype)
    known = None
    if data_kind != "auto" or stream.dtype.kind in "iu":
        # Decided by the argument or the dtype alone, before any value is read.
        empty = np.empty((0, N, N), dtype=stream.dtype)
        known = resolve_data_kind(empty, data_kind, source=stream.source, key=stream.key)
    # "auto" on float values either keeps them as amplitudes or refuses them (counts lattice).
    reading = known or "amplitudes"
    energies = np.empty(n, dtype=np.float64)
    non_zero = False
    with _progress(n, "checking patterns", progress) as bar:
        for lo, patterns in stream.chunks(chunk):
            hi = lo + len(patterns)
            _check_chunk(check, stream.key, lo, patterns)
            non_zero = non_zero or bool(patterns.any())
            here = (picks >= lo) & (picks < hi)
            sample[here] = patterns[picks[here] - lo]
            energies[lo:hi] = _energies(_amplitudes(patterns, reading))
            bar.update(len(patterns))
    if not non_zero:
        raise check.fail(stream.key, "some non-zero amplitudes or counts", f"{n} all-zero patterns")
    kind = known or resolve_data_kind(sample, data_kind, source=stream.source, key=stream.key)
    mean_energy = float(np.mean(energies))  # > 0: some value is non-zero (checked above)
    return ScanStatistics(kind, math.sqrt((N / 2) ** 2 / mean_energy))


def default_chunk(N: int) -> int:
    """Patterns per chunk: ``CHUNK_BYTES`` of float32 ``N x N`` patterns (at least one)."""
    return max(1, CHUNK_BYTES // (4 * N * N))


@dataclass
class StreamedReconstruction:
    """A streamed reconstruction: ``canvas`` ``(S, S, 1)`` complex64, ``global_offsets``
    ``(M, 1, 2, 1)`` float64 [x, y] pixels, and the prediction pass's throughput."""

    canvas: np.ndarray
    global_offsets: np.ndarray
    kind: str
    patterns: int
    seconds: float

    @property
    def patterns_per_s(self) -> float:
        """Patterns predicted and stitched per second in the prediction pass."""
        return self.patterns / self.seconds if self.seconds > 0 else float("inf")


def reconstruct_stream(
    backend: Any,
    model: Any,
    stream: ScanStream,
    scale: float,
    *,
    M: int = 20,
    stitch: str = "probe",
    batch_size: int = 64,
    chunk: int | None = None,
    data_kind: str = "auto",
    progress: bool = True,
) -> StreamedReconstruction:
    """Reconstruct a whole scan with a gridsize-1 model, ``chunk`` patterns at a time.

    ``scale``: the archive's intensity scale s (model input is s * X). Each position is one
    group with local offset 0 and global offset its position, as ``as_container`` groups a test
    scan at gridsize 1; the patches are stitched by ``StitchCanvas``: ``stitch`` ``"probe"``
    weights them by the probe's intensity over the network's object box (as
    ``stitching.reassemble_weighted``), ``"crop"`` takes the plain mean of central M x M crops
    (B 9). Either way the canvas is the one of crop ``M``.
    """
    if stitch not in STITCH_MODES:
        raise ValueError(f"stitch: expected one of {list(STITCH_MODES)}; found {stitch!r}")
    chunk = chunk or default_chunk(stream.N)
    stats = scan_statistics(stream, data_kind=data_kind, chunk=chunk, progress=progress)
    offsets = np.stack([stream.xcoords, stream.ycoords], axis=1)[:, None, :, None]
    K, window = M, None
    if stitch == "probe":
        K = weighted_support(stream.N, M)
        window = illumination_window(stream.probeGuess, np.zeros((1, 1, 2, 1)), K)
    canvas = StitchCanvas(stitch_geometry(offsets, K), K, complex_values=True)
    start = time.perf_counter()
    with _progress(stream.n_patterns, "reconstructing", progress) as bar:
        for lo, patterns in stream.chunks(chunk):
            amplitudes = _amplitudes(patterns, stats.kind)
            X = np.empty(amplitudes.shape + (1,), dtype=np.float32)
            X[..., 0] = amplitudes.astype(np.float64) * stats.alpha
            x_scaled = (X * np.float32(scale)).astype(np.float32, copy=False)
            local = np.zeros((len(X), 1, 2, 1), dtype=np.float32)
            patches = backend.predict(model, x_scaled, local, batch_size=batch_size)
            canvas.add(patches, lo, window)
            bar.update(len(X))
    seconds = time.perf_counter() - start
    result = StreamedReconstruction(
        crop_margin(canvas.image(np.complex64), K, M),
        offsets,
        stats.kind,
        stream.n_patterns,
        seconds,
    )
    logger.info(
        "%s: %d patterns predicted and stitched in %.1f s (%.0f patterns/s)",
        stream.source,
        result.patterns,
        seconds,
        result.patterns_per_s,
    )
    return result


def write_npz_streamed(
    path: str | os.PathLike[str],
    arrays: dict[str, np.ndarray],
    key: str,
    shape: tuple[int, ...],
    dtype: np.dtype | type,
    chunks: Iterator[np.ndarray],
) -> Path:
    """Write an NPZ whose array ``key`` of ``shape``/``dtype`` arrives in row chunks; atomic.

    ``arrays`` are written whole. The chunks must hold exactly ``shape[0]`` rows in all; the
    member is stored (not deflated), so it can later be read a chunk at a time at full speed.
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    expected = math.prod(shape[1:])
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(value), allow_pickle=False)
        rows = 0
        with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_2_0(fh, header)
            for part in chunks:
                part = np.ascontiguousarray(part, dtype=dtype)
                if part.size != len(part) * expected or part.shape[1:] != tuple(shape[1:]):
                    raise ValueError(
                        f"{key}: chunk of shape {part.shape}; expected (b, *{shape[1:]})"
                    )
                fh.write(part.tobytes())
                rows += len(part)
        if rows != shape[0]:
            raise ValueError(f"{key}: {rows} rows written; the header declares {shape[0]}")
    return path
