"""Plausibility checks of measured data and of stitched results (issue 16).

Data that satisfy the NPZ contract can still be physically wrong: positions in metres read as
pixels, intensities read as amplitudes, a reconstruction with hot pixels or holes. Each check
here names the file (or ``<arrays>``), the quantity, what was expected and what was found.

Which checks refuse and which warn:

- ``DataError`` (certain mistakes): a scan whose positions all lie within one object pixel
  (``check_scan``); float patterns that lie on the integer lattice of photon counts while
  ``data_kind`` is ``"auto"`` (``resolve_data_kind``).
- ``logging`` warnings (suspicious, not provably wrong): neighbouring positions farther apart
  than a pattern's width, positions outside the ground-truth object, float patterns whose
  dynamic range looks like intensities, stitched amplitudes above the model's range, uncovered
  holes inside the scanned region (``check_reconstruction``).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError, cKDTree

from ptycho_api.errors import DataError
from ptycho_api.stitching import stitch_geometry

if TYPE_CHECKING:
    from ptycho_api.rawdata import RawData

__all__ = [
    "DATA_KINDS",
    "MIN_SCAN_EXTENT_PX",
    "INTENSITY_RANGE_RATIO",
    "AMPLITUDE_TOLERANCE",
    "check_scan",
    "check_raw",
    "classify_patterns",
    "resolve_data_kind",
    "check_reconstruction",
    "scanned_region",
    "amplitude_limit",
]

logger = logging.getLogger(__name__)

DATA_KINDS = ("auto", "counts", "amplitudes", "intensities")
"""How pattern values are read: ``counts`` and ``intensities`` are square-rooted, ``amplitudes``
kept, ``auto`` decides from the dtype (integers are counts) and the values (below)."""

MIN_SCAN_EXTENT_PX = 1.0
"""Smallest scan extent (the larger of the x and y spans of the positions) in object pixels, for
M >= 2 positions. Ptychography recovers the object from *overlapping but shifted* illuminations;
positions that all lie within one pixel illuminate the same pixels, so the scan carries no
overlap information at all. Positions in metres read as pixels (1e-6 m -> 1e-6 pixels) land
here, far below the threshold."""

INTENSITY_RANGE_RATIO = 200.0
"""Warn when the 99.9th percentile over the mean of the non-zero pattern values exceeds this.
Measured on ``simulation.simulate_dataset`` (N 64 and 128, ``lines``/``points``/``grf``
objects, 1e3-1e9 photons, with and without Poisson noise): amplitudes reach at most 133
(noiseless, N 128), their squares (intensities) at least 276 for the default probe, so 200
leaves a factor of 1.5 on either side. A defocused (wide, smooth) probe compresses both (5-10),
so this fallback cannot catch every case: it only warns, and ``data_kind`` states the truth."""

_LATTICE_RANGE = 10.0
"""Values up to this multiple of the smallest non-zero value are tested against the lattice."""
_LATTICE_TOLERANCE = 1e-3
"""Absolute tolerance of a lattice value. Float32 rounding (relative 6e-8 per value, two values
per ratio, squared for the amplitude test) moves a tested value <= 400 (a squared ratio <= 10^2
times the largest multiplier 4) by under 400 * 2.4e-7 = 1e-4; the square root of a non-square
integer below 1600 is at least sqrt(n^2 + 1) - n >= 1 / 81 = 0.012 from an integer."""
_LATTICE_FRACTION = 0.99
"""Share of the tested pixels that must sit on the lattice (1 % slack for corrected pixels)."""
_LATTICE_MIN_PIXELS = 100
"""Fewer tested pixels than this decide nothing (too few to tell a lattice from chance)."""
_SAMPLE_VALUES = 2**20
"""At most this many pattern values (whole patterns, evenly spaced) are examined."""

AMPLITUDE_TOLERANCE = 1e-3
"""Slack above a bounded amplitude head's maximum. Stitching averages patches with non-negative
weights, so a stitched amplitude can exceed the largest patch amplitude only by rounding
(float32: ~1e-7); 1e-3 leaves room for that and nothing else."""

_BOUNDED_ACTIVATIONS = {"sigmoid": 1.0}
"""Amplitude activations with an upper bound, and the bound (sigmoid: (0, 1))."""


def check_scan(
    xcoords: np.ndarray,
    ycoords: np.ndarray,
    N: int,
    *,
    source: str = "<arrays>",
    object_shape: tuple[int, int] | None = None,
) -> None:
    """Check ``(M,)`` positions in object pixels against the physics of a scan; see module doc.

    Raises ``DataError`` for an extent below ``MIN_SCAN_EXTENT_PX``; warns when the median
    nearest-neighbour step exceeds the pattern width ``N`` (no two neighbouring illuminations
    overlap) or positions fall outside ``object_shape`` ``(H, W)``.
    """
    x = np.asarray(xcoords, dtype=np.float64)
    y = np.asarray(ycoords, dtype=np.float64)
    if len(x) < 2:
        return
    extent = max(float(np.ptp(x)), float(np.ptp(y)))
    if extent < MIN_SCAN_EXTENT_PX:
        raise DataError(
            f"{source}: scan extent (larger span of 'xcoords', 'ycoords'): expected at least "
            f"{MIN_SCAN_EXTENT_PX:g} object pixel for {len(x)} positions (positions in pixels); "
            f"found {extent:.3g} pixels. Positions in metres? Divide them by the object pixel "
            "size (ptycho convert --positions-unit m does)"
        )
    # The probe lives on the N x N pattern grid, so illuminations more than N pixels apart
    # cannot overlap: the overlap constraint, on which ptychography rests, has nothing to use.
    points = np.column_stack([x, y])
    distances, _ = cKDTree(points).query(points, k=2)
    step = float(np.median(distances[:, 1]))
    if step > N:
        logger.warning(
            "%s: median distance to the nearest scan position: expected at most the pattern "
            "width %d pixels (overlapping illuminations); found %.4g pixels. Positions in the "
            "wrong unit (e.g. nanometres as pixels)?",
            source,
            N,
            step,
        )
    if object_shape is not None:
        height, width = object_shape
        outside = int(np.count_nonzero((x < 0) | (x > width) | (y < 0) | (y > height)))
        if outside:
            logger.warning(
                "%s: scan positions: expected inside the %d x %d ground-truth object "
                "('objectGuess'); found %d of %d outside (x in [%.4g, %.4g], y in [%.4g, %.4g])",
                source,
                height,
                width,
                outside,
                len(x),
                x.min(),
                x.max(),
                y.min(),
                y.max(),
            )


def check_raw(raw: RawData) -> RawData:
    """``check_scan`` on a ``RawData``'s positions (and its ``objectGuess`` shape); -> ``raw``."""
    shape = None if raw.objectGuess is None else raw.objectGuess.shape
    check_scan(raw.xcoords, raw.ycoords, raw.N, source=raw.source, object_shape=shape)
    return raw


def _sample(patterns: np.ndarray) -> np.ndarray:
    """The non-zero values of evenly spaced whole patterns, at most ``_SAMPLE_VALUES``, float64."""
    per_pattern = max(1, math.prod(patterns.shape[1:]))
    count = max(1, min(len(patterns), _SAMPLE_VALUES // per_pattern))
    picks = np.linspace(0, len(patterns) - 1, count).round().astype(np.int64)
    values = np.asarray(patterns[np.unique(picks)], dtype=np.float64).ravel()
    return values[values > 0]


def _on_lattice(q: np.ndarray) -> bool:
    """True when ``_LATTICE_FRACTION`` of ``q`` lie within ``_LATTICE_TOLERANCE`` of an integer."""
    near = np.abs(q - np.round(q)) <= _LATTICE_TOLERANCE
    return bool(near.mean() >= _LATTICE_FRACTION)


def classify_patterns(patterns: np.ndarray) -> tuple[str, str]:
    """Guess what float patterns hold: -> (kind, reason), kind one of ``"counts"`` (on the
    counts lattice: certain), ``"amplitudes"``, ``"intensity-like"`` (dynamic range only) or
    ``"unknown"``.

    Measured data come from photon counts k, so intensities are c k and amplitudes c sqrt(k)
    for one unknown scale c. Divided by the smallest non-zero value (k = 1, or a small k_min:
    multipliers 1-4 are tried), intensities sit on the integers and amplitudes' squares do,
    amplitudes themselves do not. Data on neither lattice (noiseless simulations, corrected
    data) fall back to the dynamic-range ratio ``INTENSITY_RANGE_RATIO``.
    """
    values = _sample(patterns)
    if len(values) == 0:
        return "unknown", "no non-zero values"
    q = values / values.min()
    small = q[q <= _LATTICE_RANGE]
    if len(small) >= _LATTICE_MIN_PIXELS:
        for k_min in (1, 2, 3, 4):
            scaled = small * k_min
            # Three distinct lattice values: amplitudes of counts that are all perfect squares
            # (1, 4, 9, ...) with nothing in between do not occur in Poisson data, whereas one
            # or two values (e.g. all ones) could be either.
            if _on_lattice(scaled) and len(np.unique(np.round(scaled))) >= 3:
                return "counts", (
                    f"{_LATTICE_FRACTION:.0%} of the values up to {_LATTICE_RANGE:g}x the "
                    f"smallest are integer multiples of 1/{k_min} of it, as photon counts are"
                )
            if _on_lattice(scaled * small):
                return "amplitudes", "their squares lie on the integer lattice of photon counts"
    ratio = float(np.percentile(values, 99.9) / values.mean())
    if ratio > INTENSITY_RANGE_RATIO:
        return "intensity-like", (
            f"99.9th percentile / mean of the non-zero values is {ratio:.4g} "
            f"(> {INTENSITY_RANGE_RATIO:g}; amplitudes stay below)"
        )
    return "unknown", f"99.9th percentile / mean of the non-zero values is {ratio:.4g}"


def resolve_data_kind(
    patterns: np.ndarray, data_kind: str = "auto", *, source: str = "<arrays>", key: str = "diff3d"
) -> str:
    """What ``(M, N, N)`` non-negative patterns hold: -> ``"counts" | "amplitudes" | "intensities"``.

    An explicit ``data_kind`` is returned as is. ``"auto"``: integer dtypes are counts; float
    patterns on the counts lattice raise ``DataError`` (say which with ``data_kind``); float
    patterns with an intensity-like dynamic range are kept as amplitudes with a warning;
    anything else is amplitudes (the contract's meaning of float patterns).
    """
    if data_kind not in DATA_KINDS:
        raise DataError(
            f"{source}: data kind: expected one of {', '.join(DATA_KINDS)}; found {data_kind!r}"
        )
    if data_kind != "auto":
        return data_kind
    if patterns.dtype.kind in "iu":
        return "counts"
    kind, reason = classify_patterns(patterns)
    if kind == "intensity-like":
        logger.warning(
            "%s: key '%s': expected float amplitudes (sqrt of counts); found values that look "
            "like intensities (%s). If they are, pass --data-kind intensities (data_kind="
            "'intensities'); --data-kind amplitudes silences this warning",
            source,
            key,
            reason,
        )
    elif kind == "counts":
        raise DataError(
            f"{source}: key '{key}': expected float amplitudes (sqrt of counts); found float "
            f"values that look like counts or intensities ({reason}). State the convention: "
            "--data-kind intensities (or counts) square-roots them, --data-kind amplitudes "
            "keeps them (data_kind= in Python)"
        )
    return "amplitudes"


def amplitude_limit(amp_activation: str | None) -> float | None:
    """Largest amplitude the model's amplitude head can output, or None when unbounded."""
    return _BOUNDED_ACTIVATIONS.get(str(amp_activation))


def scanned_region(global_offsets: np.ndarray, M: int, shape: tuple[int, int]) -> np.ndarray:
    """``(S, S)`` bool: stitching-canvas pixels inside the convex hull of the patch centres.

    ``global_offsets`` ``(B, 1, 2, 1)`` or ``(B, 2)`` ``[x, y]`` pixels, crop size ``M``, as
    ``stitching.reassemble_position`` places them. Fewer than three non-collinear centres span
    no area: all False.
    """
    geom = stitch_geometry(global_offsets, M)
    # A crop's first pixel lands at pad + d (x: column, y: row); its centre (M - 1) / 2 further.
    centres = np.unique(geom.offsets + geom.pad + (M - 1) / 2, axis=0)
    inside = np.zeros(shape, dtype=bool)
    if len(centres) < 3:
        return inside
    try:
        equations = ConvexHull(centres).equations
    except QhullError:  # collinear centres: a line scan spans no area
        return inside
    cols = np.arange(shape[1], dtype=np.float64)[None, :]
    step = max(1, 2**22 // max(1, shape[1]))  # rows per chunk: a few MB of booleans at a time
    for r0 in range(0, shape[0], step):
        rows = np.arange(r0, min(shape[0], r0 + step), dtype=np.float64)[:, None]
        block = np.ones((len(rows), shape[1]), dtype=bool)
        for a, b, c in equations:
            # Half-planes a x + b y + c <= 0; the slack keeps pixels on an edge inside.
            block &= a * cols + b * rows + c <= 1e-9
        inside[r0 : r0 + len(rows)] = block
    return inside


def check_reconstruction(
    image: np.ndarray,
    coverage: np.ndarray,
    global_offsets: np.ndarray,
    M: int,
    *,
    amplitude_max: float | None = None,
    source: str = "<reconstruction>",
) -> dict[str, float]:
    """Warn about a stitched ``(S, S)`` complex image: amplitudes above ``amplitude_max`` (plus
    ``AMPLITUDE_TOLERANCE``) and holes, i.e. pixels of the ``(S, S)`` bool ``coverage`` that no
    patch covered although they lie inside the scanned region (``scanned_region`` of
    ``global_offsets`` and ``M``) or are enclosed by covered pixels. Returns the measured
    ``max_amplitude``, ``hole_pixels`` and ``holes`` (connected regions)."""
    amplitude = np.abs(np.asarray(image))
    coverage = np.asarray(coverage, dtype=bool)
    found = {"max_amplitude": float(amplitude.max()) if amplitude.size else 0.0}
    if amplitude_max is not None and found["max_amplitude"] > amplitude_max + AMPLITUDE_TOLERANCE:
        hot = int(np.count_nonzero(amplitude > amplitude_max + AMPLITUDE_TOLERANCE))
        logger.warning(
            "%s: stitched amplitude: expected at most %g (the model's amplitude head); found "
            "%.4g at its maximum, %d pixel(s) above. Patches disagree or the data are not "
            "normalised as for training (wrong --data-kind or nphotons?)",
            source,
            amplitude_max,
            found["max_amplitude"],
            hot,
        )
    # A hole is a pixel no patch reconstructed (amplitude 0) although the scan went around it:
    # inside the hull of the positions, or enclosed by covered pixels. Any such pixel is shown
    # as object where there is none, so no count is tolerated; the margin outside is not a hole.
    region = scanned_region(global_offsets, M, coverage.shape)
    holes = (region | ndimage.binary_fill_holes(coverage)) & ~coverage
    count = int(ndimage.label(holes)[1])
    found["hole_pixels"] = float(np.count_nonzero(holes))
    found["holes"] = float(count)
    if count:
        inside = max(1, int(np.count_nonzero(region | coverage)))
        logger.warning(
            "%s: coverage inside the scanned region: expected no uncovered pixels; found %d "
            "hole(s), %d pixel(s) (%.2g%% of the region) with no patch. A larger -M (crop size) "
            "or a denser scan covers them",
            source,
            count,
            int(found["hole_pixels"]),
            100.0 * found["hole_pixels"] / inside,
        )
    return found
