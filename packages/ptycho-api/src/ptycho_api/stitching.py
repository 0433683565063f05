"""Stitching of object patches into one image by scan position (physics.md B 9, decision 13)."""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np

from ptycho_api.physics import _result_dtype, translate

__all__ = [
    "StitchGeometry",
    "StitchCanvas",
    "stitch_geometry",
    "reassemble_position",
    "reassemble_weighted",
    "illumination_window",
    "weighted_support",
    "stitch_support",
    "crop_margin",
    "STITCH_MODES",
    "STITCH_DENOMINATOR_EPS",
    "ILLUMINATION_FLOOR",
]

logger = logging.getLogger(__name__)

STITCH_DENOMINATOR_EPS = 1e-9
"""Added to the stitched weight of all-ones patches before dividing (B 9)."""
ILLUMINATION_FLOOR = 1e-3
"""Added to the normalised illumination window, so that a pixel some patch covers but the probe
barely lit is still the (plain) mean of its patches, never a division by ~0."""
STITCH_MODES = ("probe", "crop")
"""``probe``: every patch pixel weighted by the illumination its group received
(:func:`reassemble_weighted`); ``crop``: the original's uniform central ``M x M`` crop."""


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

    def add(self, patches: np.ndarray, start: int, weights: np.ndarray | None = None) -> None:
        """Accumulate patches ``(b, N, N, 1)`` or ``(b, N, N)`` placed by offsets ``[start, start + b)``.

        ``weights``: ``(b, M, M)`` or ``(1, M, M)`` non-negative float weights of the central crops
        (default 1: the uniform mean of B 9).
        """
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
        w = np.ones((1, M, M)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape not in ((1, M, M), (b, M, M)):
            raise ValueError(f"weights must be (1, {M}, {M}) or ({b}, {M}, {M}); found {w.shape}")
        values = _shift_window(crop.astype(self._numerator.dtype) * w, frac)
        ones = _shift_window(np.broadcast_to(w, (b, M, M)), frac)
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


def weighted_support(N: int, M: int) -> int:
    """Crop side K of probe-weighted stitching: the network's object box N/2 (at least M, K - M even)."""
    if not 0 < M <= N:
        raise ValueError(f"crop size M must be in [1, N={N}]; found {M}")
    K = max(N // 2, M)
    return K + (K - M) % 2 if K < N else K - (K - M) % 2


def stitch_support(stitch: str, N: int, M: int) -> int:
    """Side of the central box of each N x N patch that ``stitch`` (``STITCH_MODES``) puts on the canvas."""
    if stitch not in STITCH_MODES:
        raise ValueError(f"stitch: expected one of {list(STITCH_MODES)}; found {stitch!r}")
    return weighted_support(N, M) if stitch == "probe" else M


def illumination_window(probe: np.ndarray, local_offsets: np.ndarray, size: int) -> np.ndarray:
    """Stitching weights of each group's patch: ``(B, size, size)`` float64, from 1e-3 to 1 + 1e-3.

    ``probe`` ``(N, N)`` complex; ``local_offsets`` ``(B, 1, 2, C)`` [x, y] pixels. The probe
    intensity |P|^2 at each member's place in the group's patch (translated by ``-o_c``, where
    the overlap canvas puts member c), summed over the members, divided by its maximum; its
    central ``size x size`` crop plus ``ILLUMINATION_FLOOR``.
    """
    intensity = np.abs(np.asarray(probe, dtype=np.complex128)) ** 2
    offsets = np.asarray(local_offsets, dtype=np.float64)
    if intensity.ndim != 2 or intensity.shape[0] != intensity.shape[1]:
        raise ValueError(f"probe must be (N, N); found {intensity.shape}")
    if offsets.ndim != 4 or offsets.shape[1:3] != (1, 2):
        raise ValueError(f"local_offsets must be (B, 1, 2, C); found {offsets.shape}")
    N = intensity.shape[0]
    if not 0 < size <= N:
        raise ValueError(f"window size must be in [1, N={N}]; found {size}")
    n_groups = offsets.shape[0]
    lit = np.zeros((n_groups, N, N))
    stack = np.broadcast_to(intensity, (n_groups, N, N))
    for c in range(offsets.shape[-1]):
        member = offsets[:, 0, :, c]
        lit += stack if not member.any() else translate(stack, -member)
    peak = lit.max(axis=(1, 2), keepdims=True)
    lit = np.divide(lit, peak, out=np.zeros_like(lit), where=peak > 0)
    lo = N // 2 - size // 2
    return lit[:, lo : lo + size, lo : lo + size] + ILLUMINATION_FLOOR


def reassemble_weighted(
    patches: np.ndarray,
    global_offsets: np.ndarray,
    probe: np.ndarray,
    local_offsets: np.ndarray,
    M: int = 20,
    chunk_size: int = 1024,
) -> np.ndarray:
    """Probe-weighted stitching: ``(B, N, N, 1)`` -> ``(S, S, 1)`` (``(B, N, N)`` -> ``(S, S)``).

    Each canvas pixel is the mean of every patch that holds it, each weighted by the
    illumination its group received there (:func:`illumination_window`) - the overlap
    projection of iterative ptychography, sum(|P|^2 O) / sum(|P|^2) - over the central
    ``weighted_support(N, M)`` box of every patch (the network's object box), not only its
    central M x M crop. The canvas is the one ``reassemble_position(patches, global_offsets,
    M)`` returns (size and pixel grid), so evaluation and plots are unchanged.
    """
    patches = np.asarray(patches)
    offsets = np.asarray(local_offsets)
    if offsets.shape[:1] != patches.shape[:1]:
        raise ValueError(
            f"{patches.shape[0]} patches but local offsets for {offsets.shape[0]} groups"
        )
    N = patches.shape[1]
    K = weighted_support(N, M)
    geom = checked_geometry(patches.shape, global_offsets, K)
    squeeze_channel = patches.ndim == 3
    canvas = StitchCanvas(geom, K, complex_values=np.iscomplexobj(patches))
    for start in range(0, patches.shape[0], chunk_size):
        stop = start + chunk_size
        window = illumination_window(probe, offsets[start:stop], K)
        canvas.add(patches[start:stop], start, window)
    image = crop_margin(canvas.image(_result_dtype(patches.dtype)), K, M)
    return image[..., 0] if squeeze_channel else image


def crop_margin(image: np.ndarray, K: int, M: int) -> np.ndarray:
    """A canvas stitched with crop K, cut to the canvas of crop M (same pixel grid): ``(S_K, S_K, ...)`` -> ``(S_M, S_M, ...)``."""
    d = (K - M) // 2
    return image[d : image.shape[0] - d, d : image.shape[1] - d]


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
