"""Numpy reference of the in-model forward model (physics.md B 7.6, B 7.7, B 6.4; decision 1).

Object patches of one group are merged into one overlap canvas per group (never across groups),
re-extracted at each member's offset, illuminated by the probe and propagated to the far field.
Both backends must reproduce ``forward_model`` to float32 rounding (spec/parity.md).

Shapes are channels-last: object patches ``(B, N, N, K)``, offsets ``(B, 1, 2, C)`` with
``[:, 0, 0, :]`` = x and ``[:, 0, 1, :]`` = y (pixels, ``m - r`` as produced by grouping),
canvases ``(B, P, P, 1)``. C = gridsize^2; K = C when ``object_big`` else 1.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.ndimage import correlate1d

from ptycho_api.physics import _result_dtype, far_field, gaussian_taps, padded_size, translate
from ptycho_api.probe import probe_support_mask

__all__ = [
    "CANVAS_BORDER_WEIGHT",
    "CANVAS_DENOMINATOR_EPS",
    "ForwardResult",
    "center_mask",
    "canvas_weight",
    "overlap_canvas",
    "trim_canvas",
    "extract_from_canvas",
    "smooth_field",
    "illuminate",
    "forward_model",
]

CANVAS_BORDER_WEIGHT = 0.001
"""Weight of a patch's border ring (outside its centre box) in the overlap canvas (decision 1).

Where a member's centre box covers a pixel, the border rings of the others barely count; where
only border rings cover it, they are averaged. The original divided the *unweighted* sum by the
centre-mask sum + 0.001 instead, which multiplies border-only pixels by 1000 (B 7.6): a probe
reaching beyond the centre box then needs the border branch to predict values 1000 times too
small, and a flat object became the easier optimum (docs/quality.md)."""
CANVAS_DENOMINATOR_EPS = 1e-9
"""Added to the canvas weight before dividing, so pixels no patch covers come out 0."""


class ForwardResult(NamedTuple):
    """Outputs of ``forward_model`` (B 7.1)."""

    trimmed_obj: np.ndarray
    """``(B, N, N, 1)`` complex: central N x N crop of each group's canvas (the object estimate)."""
    pred_amp_scaled: np.ndarray
    """``(B, N, N, C)`` real: ``s * |FFT(probe * patch)| / N`` (sqrt of counts)."""
    pred_intensity: np.ndarray
    """``(B, N, N, C)`` real: ``pred_amp_scaled ** 2`` (counts)."""


def center_mask(N: int) -> np.ndarray:
    """Centre-box mask ``(N, N)`` float32: 1 on rows and columns ``[N/4, 3N/4)``, 0 elsewhere."""
    mask = np.zeros((N, N), dtype=np.float32)
    mask[N // 4 : 3 * N // 4, N // 4 : 3 * N // 4] = 1.0
    return mask


def canvas_weight(N: int) -> np.ndarray:
    """Per-pixel patch weight in the overlap canvas ``(N, N)`` float32: 1 in the centre box,
    ``CANVAS_BORDER_WEIGHT`` outside it (decision 1)."""
    mask = center_mask(N)
    return (mask + np.float32(CANVAS_BORDER_WEIGHT) * (1.0 - mask)).astype(np.float32)


def _split_offsets(local_offsets: np.ndarray) -> np.ndarray:
    """``(B, 1, 2, C)`` offsets -> ``(C, B, 2)`` float64 ``[x, y]`` per channel."""
    offsets = np.asarray(local_offsets, dtype=np.float64)
    if offsets.ndim != 4 or offsets.shape[1:3] != (1, 2):
        raise ValueError(f"offsets must be (B, 1, 2, C); found shape {offsets.shape}")
    return np.transpose(offsets[:, 0], (2, 0, 1))


def _pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad ``(B, N, N)`` images symmetrically to ``(B, size, size)``."""
    pad = (size - images.shape[1]) // 2
    return np.pad(images, ((0, 0), (pad, pad), (pad, pad)))


def overlap_canvas(
    patches: np.ndarray, local_offsets: np.ndarray, padded: int, object_big: bool = True
) -> np.ndarray:
    """One overlap canvas per group (B 7.6, decision 1): ``(B, N, N, K)`` -> ``(B, P, P, 1)``.

    ``object_big``: a weighted average of the members, numerator = sum over members c of
    ``T_{-o_c}[zero-pad(w O_c)]``, denominator = sum of ``T_{-o_c}[zero-pad(w)]`` + 1e-9, with
    ``w = canvas_weight(N)`` (1 in the centre box, 0.001 in the border ring). A lone patch comes
    back unchanged; pixels no patch covers are 0. Offsets are used as given (grouping makes them
    sum to zero in each group), so a group's canvas never depends on any other group. Not
    ``object_big``: the single channel is zero-padded to P x P. Output dtype follows ``patches``.
    """
    patches = np.asarray(patches)
    offsets = _split_offsets(local_offsets)
    n_batch, N, _, n_patch_channels = patches.shape
    if (padded - N) % 2 or padded < N:
        raise ValueError(f"overlap_canvas: padded size {padded} must be >= N={N} with even margin")
    if not object_big:
        if n_patch_channels != 1:
            raise ValueError(f"object_big=False needs 1 patch channel; found {n_patch_channels}")
        return _pad_to(patches[..., 0], padded)[..., None]
    if n_patch_channels != offsets.shape[0]:
        raise ValueError(
            f"object_big=True needs one patch per offset: {n_patch_channels} patch channels, "
            f"{offsets.shape[0]} offsets"
        )
    weight = np.broadcast_to(canvas_weight(N).astype(np.float64), (n_batch, N, N))
    numerator = np.zeros((n_batch, padded, padded), dtype=np.complex128)
    denominator = np.zeros((n_batch, padded, padded), dtype=np.float64)
    for c, offset in enumerate(offsets):
        # Reassembly moves each patch by -o_c = r_c - m: from the group centre to its own point.
        weighted = patches[..., c].astype(np.complex128) * weight
        numerator += translate(_pad_to(weighted, padded), -offset)
        denominator += translate(_pad_to(weight, padded), -offset)
    canvas = numerator / (denominator + CANVAS_DENOMINATOR_EPS)
    if not np.iscomplexobj(patches):
        canvas = canvas.real
    return canvas.astype(_result_dtype(patches.dtype), copy=False)[..., None]


def trim_canvas(canvas: np.ndarray, N: int) -> np.ndarray:
    """Central ``N x N`` crop of each canvas: ``(B, P, P, 1)`` -> ``(B, N, N, 1)``."""
    p = (canvas.shape[1] - N) // 2
    return canvas[:, p : p + N, p : p + N]


def extract_from_canvas(canvas: np.ndarray, local_offsets: np.ndarray, N: int) -> np.ndarray:
    """Re-extract each member's patch: canvas ``(B, P, P, 1)`` -> ``(B, N, N, C)``.

    Copy c of the canvas is translated by ``+o_c`` (back from the member's point to the group
    centre) and its central N x N crop kept (B 7.6, ExtractPatchesPositionLayer with no jitter).
    """
    offsets = _split_offsets(local_offsets)
    p = (canvas.shape[1] - N) // 2
    members = [translate(canvas[..., 0], offset)[:, p : p + N, p : p + N] for offset in offsets]
    return np.stack(members, axis=-1)


def smooth_field(field: np.ndarray, sigma: float) -> np.ndarray:
    """3x3 separable Gaussian smoothing of B 6.4: ``(B, N, N, C)`` -> same shape and dtype.

    Taps ``gaussian_taps(sigma)`` in float64, reflect padding (edge pixel not repeated), applied
    to real and imaginary parts alike (the filter is linear and real).
    """
    taps = gaussian_taps(sigma, np.float64)
    out = correlate1d(field.astype(np.complex128), taps, axis=1, mode="mirror")
    out = correlate1d(out, taps, axis=2, mode="mirror")
    return out.astype(field.dtype, copy=False)


def illuminate(
    patches: np.ndarray,
    probe: np.ndarray,
    probe_mask: bool = False,
    gaussian_smoothing_sigma: float = 0.0,
) -> np.ndarray:
    """Exit waves ``probe * patch`` (B 7.7): ``(B, N, N, C)`` x ``(N, N)`` -> ``(B, N, N, C)`` complex.

    Optional smoothing (B 6.4) when sigma > 0, then, if ``probe_mask``, multiplication by the
    circular support mask of B 6.3. Output dtype is complex64 unless an input is double.
    """
    probe = np.asarray(probe)
    psi = patches * probe[None, :, :, None]
    if gaussian_smoothing_sigma > 0:
        psi = smooth_field(psi, gaussian_smoothing_sigma)
    if probe_mask:
        psi = psi * probe_support_mask(probe.shape[0])[None, :, :, None]
    return psi


def forward_model(
    object_patches: np.ndarray,
    local_offsets: np.ndarray,
    probe: np.ndarray,
    intensity_scale: float,
    *,
    object_big: bool = True,
    probe_big: bool = True,
    probe_mask: bool = False,
    gaussian_smoothing_sigma: float = 0.0,
    padded: int | None = None,
) -> ForwardResult:
    """Object patches + offsets + probe -> predicted diffraction amplitude (B 7.6, B 7.7).

    ``object_patches`` ``(B, N, N, K)`` complex; ``local_offsets`` ``(B, 1, 2, C)`` pixels
    (``m - r``); ``probe`` ``(N, N)`` complex, the *model* probe (already ``normalize_probe``-d);
    ``intensity_scale`` s (sqrt of counts per normalised amplitude unit). ``probe_big=False``
    zeroes the patches outside the centre box first (the decoder then predicts no border ring).
    ``padded`` defaults to ``padded_size(N, gridsize)`` (74 for N=64, gridsize 1).
    Steps: per-group canvas, centre trim, re-extraction, illumination, ``far_field``, times s.
    """
    object_patches = np.asarray(object_patches)
    n_channels = np.asarray(local_offsets).shape[-1]
    N = object_patches.shape[1]
    if padded is None:
        padded = padded_size(N, math.isqrt(n_channels))
    if not probe_big:
        object_patches = object_patches * center_mask(N)[None, :, :, None]
    canvas = overlap_canvas(object_patches, local_offsets, padded, object_big=object_big)
    patches = extract_from_canvas(canvas, local_offsets, N)
    psi = illuminate(patches, probe, probe_mask, gaussian_smoothing_sigma)
    pred_amp_scaled = far_field(psi, axes=(1, 2)) * np.asarray(
        intensity_scale, dtype=_real_dtype(psi)
    )
    return ForwardResult(trim_canvas(canvas, N), pred_amp_scaled, pred_amp_scaled**2)


def _real_dtype(array: np.ndarray) -> np.dtype:
    return (
        np.dtype(np.float32) if array.dtype in (np.complex64, np.float32) else np.dtype(np.float64)
    )
