"""Stitching of object patches into one image by scan position (physics.md B 9, decision 13)."""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np

from ptycho_api.physics import _result_dtype

__all__ = [
    "StitchGeometry",
    "StitchCanvas",
    "stitch_geometry",
    "reassemble_position",
    "STITCH_DENOMINATOR_EPS",
]

logger = logging.getLogger(__name__)

STITCH_DENOMINATOR_EPS = 1e-9
"""Added to the stitched weight of all-ones patches before dividing (B 9)."""


class StitchGeometry(NamedTuple):
    """Where patches land on the stitching canvas."""

    offsets: np.ndarray
    """``(B, 2)`` float64 ``[d_x, d_y]``: global offsets minus their mean, pixels."""
    center: np.ndarray
    """``(2,)`` float64 ``[x, y]``: mean of the global offsets (object pixels)."""
    pad: int
    """``ceil(max |d|)`` rounded up to an even number."""
    size: int
    """Canvas side ``S = M + 2 * pad``."""


def _offsets_2d(global_offsets: np.ndarray) -> np.ndarray:
    offsets = np.asarray(global_offsets, dtype=np.float64)
    if offsets.ndim == 4 and offsets.shape[1:] == (1, 2, 1):
        return offsets.reshape(-1, 2)
    if offsets.ndim == 2 and offsets.shape[1] == 2:
        return offsets
    raise ValueError(f"global_offsets must be (B, 1, 2, 1) or (B, 2) [x, y]; found {offsets.shape}")


def stitch_geometry(global_offsets: np.ndarray, M: int = 20) -> StitchGeometry:
    """Canvas geometry of B 9 for offsets ``(B, 1, 2, 1)`` or ``(B, 2)`` ``[x, y]`` pixels.

    Patch b's scan point lands at canvas pixel ``(pad + M/2 + d_y, pad + M/2 + d_x)``, i.e.
    canvas pixel ``(u, v)`` shows object pixel ``(u - pad - M/2 + center_y, v - pad - M/2 + center_x)``.
    """
    offsets = _offsets_2d(global_offsets)
    if len(offsets) == 0:
        raise ValueError("global_offsets is empty: nothing to stitch")
    center = offsets.mean(axis=0)
    d = offsets - center
    pad = math.ceil(float(np.max(np.abs(d))))
    pad += pad % 2
    return StitchGeometry(d, center, pad, M + 2 * pad)


def apply_stitch_options(
    patches: np.ndarray,
    global_offsets: np.ndarray,
    *,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    coord_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The reconstruction options of B 9: -> (patches ``(B, N, N, 1)``, offsets ``(B, 1, 2, 1)`` f64).

    ``transpose`` swaps the two spatial axes of every patch; ``flip_x`` / ``flip_y`` negate x / y
    of the global offsets, which are then multiplied by ``coord_scale``. Inputs are not modified.
    """
    if transpose:
        patches = np.ascontiguousarray(np.swapaxes(patches, 1, 2))
    offsets = np.array(global_offsets, dtype=np.float64, copy=True)
    if flip_x:
        offsets[:, :, 0, :] *= -1.0
    if flip_y:
        offsets[:, :, 1, :] *= -1.0
    offsets *= coord_scale
    return patches, offsets


def checked_geometry(
    patch_shape: tuple[int, ...], global_offsets: np.ndarray, M: int
) -> StitchGeometry:
    """Check patches of shape ``(B, N, N, 1)`` or ``(B, N, N)`` against offsets and M: -> geometry.

    Shared by the reference and both backends' stitching, so every one refuses the same input
    with the same message.
    """
    shape = tuple(patch_shape)
    if not (len(shape) == 3 or (len(shape) == 4 and shape[-1] == 1)):
        raise ValueError(f"patches must be (B, N, N, 1) or (B, N, N); found {shape}")
    n_patches, N = shape[0], shape[1]
    if not 0 < M <= N:
        raise ValueError(f"crop size M must be in [1, N={N}]; found {M}")
    geom = stitch_geometry(global_offsets, M)
    if len(geom.offsets) != n_patches:
        raise ValueError(f"{n_patches} patches but {len(geom.offsets)} global offsets")
    return geom


def reassemble_position(
    patches: np.ndarray, global_offsets: np.ndarray, M: int = 20, chunk_size: int = 1024
) -> np.ndarray:
    """Stitch patches by scan position (B 9): ``(B, N, N, 1)`` -> ``(S, S, 1)`` (``(B, N, N)`` -> ``(S, S)``).

    ``global_offsets`` ``(B, 1, 2, 1)`` or ``(B, 2)`` float ``[x, y]`` pixels (group centres).
    Each patch's central ``M x M`` crop (rows/cols ``N/2 - M/2 ... N/2 + M/2 - 1``) is zero-padded
    to ``S x S`` and translated by ``d_b`` (offset minus mean offset; bilinear, per-corner zero fill,
    B 1.1); the sum is divided by the same sum for all-ones crops plus 1e-9. Uniform weights.
    Real or complex input; the output keeps single precision for complex64/float32 input.

    Memory: a crop translated by ``d = a + f`` (integer ``a``, fraction ``f`` in [0, 1)) is non-zero
    only on an ``(M+1) x (M+1)`` window at ``pad + a``, where it equals the interpolation of the
    crop with weights ``(1-f, f)`` along each axis. So each patch is accumulated through that
    window - the same numbers as translating the full padded canvas - and patches are processed
    ``chunk_size`` at a time; no patch is ever held at canvas size.
    """
    patches = np.asarray(patches)
    geom = checked_geometry(patches.shape, global_offsets, M)
    squeeze_channel = patches.ndim == 3
    canvas = StitchCanvas(geom, M, complex_values=np.iscomplexobj(patches))
    for start in range(0, patches.shape[0], chunk_size):
        canvas.add(patches[start : start + chunk_size], start)
    image = canvas.image(_result_dtype(patches.dtype))
    return image[..., 0] if squeeze_channel else image


class StitchCanvas:
    """Running sums of B 9 stitching, filled a chunk of patches at a time (streaming inference).

    ``geometry`` comes from *all* the scan's global offsets (``stitch_geometry``), so the canvas
    is fixed before the first patch arrives; ``add`` accumulates patches ``[start, start + b)``
    and ``image`` divides. Memory: two ``(S+1)^2`` float64 planes (numerator complex128 for
    complex patches), whatever the number of patches.
    """

    def __init__(self, geometry: StitchGeometry, M: int, *, complex_values: bool = True) -> None:
        self.geometry = geometry
        self.M = M
        # One spare row and column: the last window row/col can sit at index S when d == +pad,
        # where its weight f is exactly zero; the spare keeps the indexing uniform.
        self._side = geometry.size + 1
        cells = self._side * self._side
        self._numerator = np.zeros(cells, dtype=np.complex128 if complex_values else np.float64)
        self._weights = np.zeros(cells, dtype=np.float64)
        self.count = 0

    def add(self, patches: np.ndarray, start: int) -> None:
        """Accumulate patches ``(b, N, N, 1)`` or ``(b, N, N)`` placed by offsets ``[start, start + b)``."""
        patches = np.asarray(patches)
        if patches.ndim == 4:
            patches = patches[..., 0]
        b, N = patches.shape[0], patches.shape[1]
        if not 0 < self.M <= N:
            raise ValueError(f"crop size M must be in [1, N={N}]; found {self.M}")
        d = self.geometry.offsets[start : start + b]
        if len(d) != b:
            raise ValueError(
                f"patches [{start}, {start + b}): expected offsets for them; the canvas has "
                f"{len(self.geometry.offsets)}"
            )
        M, side = self.M, self._side
        lo = N // 2 - M // 2
        crop = patches[:, lo : lo + M, lo : lo + M]
        whole = np.floor(d)
        frac = d - whole
        index = _window_index(whole.astype(np.int64) + self.geometry.pad, M + 1, side)
        values = _shift_window(crop.astype(self._numerator.dtype), frac)
        ones = _shift_window(np.ones((b, M, M)), frac)
        if np.iscomplexobj(self._numerator):
            self._numerator += np.bincount(index, values.real.ravel(), side * side)
            self._numerator += 1j * np.bincount(index, values.imag.ravel(), side * side)
        else:
            self._numerator += np.bincount(index, values.ravel(), side * side)
        self._weights += np.bincount(index, ones.ravel(), side * side)
        self.count += b

    def image(self, dtype: np.dtype | type = np.complex64) -> np.ndarray:
        """The stitched ``(S, S, 1)`` image in ``dtype``: sum / (sum of all-ones crops + 1e-9)."""
        size = self.geometry.size
        image = self._numerator / (self._weights + STITCH_DENOMINATOR_EPS)
        image = image.reshape(self._side, self._side)[:size, :size]
        logger.debug("stitched %d patches onto a %d x %d canvas", self.count, size, size)
        return image.astype(dtype, copy=False)[..., None]


def _shift_window(crops: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Sub-pixel shift of ``(b, M, M)`` crops by ``frac`` ``(b, 2)`` [x, y] in [0, 1) -> ``(b, M+1, M+1)``.

    Output index j takes ``(1 - f) * crop[j] + f * crop[j - 1]`` along each axis (missing
    neighbours are zero): bilinear sampling at ``j - f`` with per-corner zero fill.
    """
    fx = frac[:, 0][:, None, None]
    fy = frac[:, 1][:, None, None]
    rows = (1 - fy) * np.pad(crops, ((0, 0), (0, 1), (0, 0))) + fy * np.pad(
        crops, ((0, 0), (1, 0), (0, 0))
    )
    return (1 - fx) * np.pad(rows, ((0, 0), (0, 0), (0, 1))) + fx * np.pad(
        rows, ((0, 0), (0, 0), (1, 0))
    )


def _window_index(origin: np.ndarray, width: int, side: int) -> np.ndarray:
    """Flat canvas indices ``(b * width * width,)`` of windows whose top-left is ``origin`` [x, y]."""
    k = np.arange(width)
    rows = origin[:, 1][:, None, None] + k[None, :, None]
    cols = origin[:, 0][:, None, None] + k[None, None, :]
    return (rows * side + cols).ravel()
