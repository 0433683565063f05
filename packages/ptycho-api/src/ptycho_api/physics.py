"""Numpy reference physics primitives (physics.md B 1.1, B 4, B 6.1, B 6.4, Part A decisions 9, 11, 12).

These functions are the oracle both deep-learning backends are tested against, so they favour
clarity over speed and compute internally in float64, returning the input's precision
(float32 / complex64 in, float32 / complex64 out; float64 / complex128 stay float64 / complex128).

Conventions (B 1): pixel units of the object grid; ``x`` is the column index, ``y`` the row
index; offsets and positions are ``[x, y]`` pairs; images are batched along axis 0 with the two
spatial axes next (``(B, H, W)`` or channels-last ``(B, H, W, C)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "translate",
    "extract_patches",
    "far_field",
    "gaussian_taps",
    "padded_size",
    "poisson_nll",
    "mae",
    "weighted_loss",
    "NLL_LOG_FLOOR",
]

NLL_LOG_FLOOR = 1e-12
"""Added to the predicted intensity inside the log of the Poisson NLL (decision 9)."""


def _taps(start: np.ndarray, n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear-interpolation taps along one axis for sample positions ``start[b] + k``.

    Returns indices ``(2, B, n_out)`` int64 (clipped into ``[0, n_in - 1]``) and weights
    ``(2, B, n_out)`` float64. A tap outside ``[0, n_in - 1]`` gets weight 0: this is the
    per-corner zero fill of B 1.1 (a corner outside the image contributes nothing, the others
    keep their bilinear weights).
    """
    pos = np.asarray(start, dtype=np.float64)[:, None] + np.arange(n_out, dtype=np.float64)
    lower = np.floor(pos)
    frac = pos - lower
    idx = np.stack([lower, lower + 1.0]).astype(np.int64)
    weights = np.stack([1.0 - frac, frac])
    weights = np.where((idx >= 0) & (idx < n_in), weights, 0.0)
    return np.clip(idx, 0, n_in - 1), weights


def _bilinear_sample(
    images: np.ndarray,
    source: np.ndarray,
    row_start: np.ndarray,
    col_start: np.ndarray,
    out_hw: tuple[int, int],
) -> np.ndarray:
    """Sample ``images[source[b]]`` on the grid ``(row_start[b] + i, col_start[b] + j)``.

    ``images`` is ``(B0, H, W, ...)``; the result is ``(len(source), h, w, ...)`` in float64 /
    complex128. Bilinear weights come from the floor corner; corners outside the image
    contribute zero (B 1.1). Because the sampling grid of one image is a shifted regular grid,
    the four corners of every output pixel are the four combinations of one row tap and one
    column tap, which is what the two loops below enumerate.
    """
    height, width = images.shape[1:3]
    h, w = out_hw
    rows, row_w = _taps(row_start, h, height)
    cols, col_w = _taps(col_start, w, width)
    trailing = (1,) * (images.ndim - 3)
    src = np.asarray(source)[:, None, None]
    out: np.ndarray | float = 0.0
    # Whole-pixel starts (grid scans) give the far taps weight 0: skipping them sums the same
    # terms less three exact zeros, so for finite images the result is bit-identical, at a
    # quarter of the cost.
    taps_y = (0,) if not row_w[1].any() else (0, 1)
    taps_x = (0,) if not col_w[1].any() else (0, 1)
    for ty in taps_y:
        for tx in taps_x:
            weight = row_w[ty][:, :, None] * col_w[tx][:, None, :]
            values = images[src, rows[ty][:, :, None], cols[tx][:, None, :]]
            out = out + weight.reshape(weight.shape + trailing) * values
    return np.asarray(out)


def _result_dtype(dtype: np.dtype) -> np.dtype:
    """Precision-preserving output dtype: float32/complex64 stay single, everything else double."""
    if dtype in (np.float32, np.complex64):
        return dtype
    return (
        np.dtype(np.complex128)
        if np.issubdtype(dtype, np.complexfloating)
        else np.dtype(np.float64)
    )


def translate(images: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Shift each image by its own sub-pixel offset: ``(B, H, W[, C])`` -> same shape and dtype.

    ``offsets`` is ``(B, 2)`` float ``[d_x, d_y]`` in pixels. The output is the bilinear sample
    of the input at ``(y - d_y, x - d_x)`` (B 1.1): positive ``d_x`` moves content to larger
    column indices, positive ``d_y`` to larger row indices; corners outside the image contribute
    zero. Channels (and the real and imaginary parts of complex images) share the offset.
    Example: a delta at (row 8, col 8) shifted by ``[2, -3]`` lands at (row 5, col 10).
    """
    images = np.asarray(images)
    offsets = np.asarray(offsets, dtype=np.float64)
    if images.ndim < 3:
        raise ValueError(f"translate: images must be (B, H, W[, C]); found shape {images.shape}")
    if offsets.shape != (images.shape[0], 2):
        raise ValueError(
            f"translate: offsets must be (B, 2) = ({images.shape[0]}, 2); found {offsets.shape}"
        )
    out = _bilinear_sample(
        images, np.arange(images.shape[0]), -offsets[:, 1], -offsets[:, 0], images.shape[1:3]
    )
    return out.astype(_result_dtype(images.dtype), copy=False)


def extract_patches(
    obj: np.ndarray, positions: np.ndarray, N: int, chunk_size: int = 1024
) -> np.ndarray:
    """Cut ``N x N`` patches centred on scan positions: obj ``(H, W)`` -> ``(P, N, N)``.

    ``positions`` is ``(P, 2)`` float ``[x, y]`` in object pixels. Patch pixel ``(i, j)`` is the
    bilinear sample of the object at ``(y - N/2 + i, x - N/2 + j)``, so the scan point sits at
    patch index ``(N/2, N/2)`` (B 1); outside the object the value is zero. This equals
    B 4's ``get_image_patches`` (zero-pad by N/2, translate by ``-r``, keep the top-left N x N)
    centred on the member's own point ``r``, as decision 3 requires for every gridsize.
    Output dtype follows the object (complex64 stays complex64).
    """
    obj = np.asarray(obj)
    positions = np.asarray(positions, dtype=np.float64)
    if obj.ndim != 2:
        raise ValueError(f"extract_patches: obj must be (H, W); found shape {obj.shape}")
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"extract_patches: positions must be (P, 2); found {positions.shape}")
    half = N // 2
    out = np.empty((len(positions), N, N), dtype=_result_dtype(obj.dtype))
    # Chunked so that the float64 working copy stays small for many positions.
    for lo in range(0, len(positions), chunk_size):
        pos = positions[lo : lo + chunk_size]
        out[lo : lo + len(pos)] = _bilinear_sample(
            obj[None],
            np.zeros(len(pos), dtype=np.int64),
            pos[:, 1] - half,
            pos[:, 0] - half,
            (N, N),
        )
    return out


def far_field(field: np.ndarray, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """Far-field amplitude of a complex exit wave (B 6.1): ``(..., N, N)`` complex -> same shape, real.

    ``A = sqrt(fftshift(|FFT2(field)|^2 / (h * w)))`` over ``axes``: unnormalised FFT without a
    pre-shift, divided by the pixel count (so Parseval holds: ``sum A^2 == sum |field|^2``), DC
    term moved to ``(h/2, w/2)``. Units: amplitude per pixel of the input's units.
    complex64 -> float32, complex128 -> float64. For NHWC batches pass ``axes=(1, 2)``.
    """
    field = np.asarray(field)
    spectrum = np.fft.fft2(field.astype(np.complex128, copy=False), axes=axes)
    h, w = (field.shape[a] for a in axes)
    amplitude = np.sqrt(np.fft.fftshift(np.abs(spectrum) ** 2 / (h * w), axes=axes))
    out_dtype = np.float32 if field.dtype in (np.complex64, np.float32) else np.float64
    return amplitude.astype(out_dtype, copy=False)


def gaussian_taps(sigma: float, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """The 3 taps of B 6.4's separable smoothing kernel: ``(3,)`` array of ``dtype`` (default float32).

    ``softmax(-x^2 / (2 sigma^2))`` for x in {-1, 0, 1} pixels (a Gaussian of width ``sigma`` px
    sampled at the centre pixel and its two neighbours, normalised to sum 1), computed in float64
    and then cast. The numpy reference smooths with the float64 taps; both backends multiply
    their float32 fields by the float32 taps. Raises ``ValueError`` unless ``sigma > 0``.
    """
    if not sigma > 0:
        raise ValueError(f"gaussian_taps: sigma must be > 0 pixels; found {sigma}")
    x = np.array([-1.0, 0.0, 1.0])
    taps = np.exp(-(x * x) / (2.0 * float(sigma) ** 2))
    return (taps / taps.sum()).astype(dtype)


def padded_size(N: int, gridsize: int, offset: int = 4, max_position_jitter: int = 10) -> int:
    """Side in pixels of the per-group overlap canvas (B 3.1): ``N + (gridsize-1)*offset + jitter``."""
    return N + (gridsize - 1) * offset + max_position_jitter


def poisson_nll(pred_amp_scaled: np.ndarray, target_amp_scaled: np.ndarray) -> float:
    """Poisson negative log-likelihood of decision 9, a float (counts).

    Both inputs are amplitudes already multiplied by the intensity scale ``s`` (``s * A_pred`` and
    ``s * X``), any equal shape. ``I_pred = pred**2``, ``I_obs = target**2`` and the result is
    ``mean(I_pred - I_obs * log(I_pred + 1e-12))`` over all elements, without the log-factorial
    term. Computed in float64.
    """
    pred = np.asarray(pred_amp_scaled, dtype=np.float64)
    target = np.asarray(target_amp_scaled, dtype=np.float64)
    i_pred = pred**2
    return float(np.mean(i_pred - target**2 * np.log(i_pred + NLL_LOG_FLOOR)))


def mae(pred_amp_scaled: np.ndarray, target_amp_scaled: np.ndarray) -> float:
    """Mean absolute error of scaled amplitudes (decision 9), a float: ``mean |s*A_pred - s*X|``."""
    pred = np.asarray(pred_amp_scaled, dtype=np.float64)
    target = np.asarray(target_amp_scaled, dtype=np.float64)
    return float(np.mean(np.abs(pred - target)))


def weighted_loss(nll: Any, mae_value: Any, nll_weight: float, mae_weight: float) -> Any:
    """``nll_weight * nll + mae_weight * mae`` with zero-weight terms left out (decision 9).

    Works on numpy scalars and on framework tensors alike (only ``*`` and ``+`` are used), so
    both backends combine their loss terms here; with both weights zero it returns ``0.0 * nll``.
    """
    loss = None
    if nll_weight:
        loss = nll_weight * nll
    if mae_weight:
        loss = mae_weight * mae_value if loss is None else loss + mae_weight * mae_value
    return 0.0 * nll if loss is None else loss
