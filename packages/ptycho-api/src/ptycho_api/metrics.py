"""Reconstruction quality metrics (physics.md B 12, decision 14).

Conventions follow the original so numbers compare with published ones: 2-pixel border trim,
amplitude mean-matched to the ground truth, phase plane (or mean) removed, SSIM of the phase on
``(phi + pi) / 2 pi`` with data range 1, a simplified 5-level MS-SSIM, and FRC50. PSNR is
reported twice: ``psnr255`` (peak 255, OpenCV's default, as the original) and ``psnr`` (peak =
the ground truth's data range).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d
from skimage.metrics import structural_similarity

from ptycho_api.errors import DataError
from ptycho_api.physics import _bilinear_sample
from ptycho_api.stitching import stitch_geometry

__all__ = [
    "eval_reconstruction",
    "align_for_evaluation",
    "has_phase_structure",
    "match_amplitude",
    "remove_phase_plane",
    "psnr",
    "ssim",
    "ms_ssim",
    "frc_curve",
    "frc_crossing",
    "MS_SSIM_WEIGHTS",
]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Per-level exponents of the simplified MS-SSIM (B 12)."""

_DBL_EPSILON = float(np.finfo(np.float64).eps)

PHASE_FLAT_RAD = 1e-3
"""A ground truth whose phase varies by less than this (radians, after removing its plane) has
no phase structure: any flat reconstructed phase would score as perfect against it."""


def _as_image(array: np.ndarray, name: str) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)`` or ``(1, H, W, 1)`` -> ``(H, W)``."""
    image = np.asarray(array)
    if image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 1:
        image = image[0, ..., 0]
    elif image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise DataError(
            f"{name}: expected an (H, W), (H, W, 1) or (1, H, W, 1) image; found shape {array.shape}"
        )
    return image


def match_amplitude(amplitude: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rescale ``amplitude`` so its mean equals ``reference``'s: ``(H, W)`` -> ``(H, W)`` float64."""
    amplitude = np.asarray(amplitude, dtype=np.float64)
    mean = amplitude.mean()
    return amplitude * (np.mean(reference) / mean) if mean != 0 else amplitude


def remove_phase_plane(phase: np.ndarray, method: str = "plane") -> np.ndarray:
    """Phase alignment of B 12: ``(H, W)`` radians -> ``(H, W)`` float64.

    ``plane``: subtract the least-squares fit ``a x + b y + c``; ``mean``: subtract the mean.
    No unwrapping.
    """
    phase = np.asarray(phase, dtype=np.float64)
    if method == "mean":
        return phase - phase.mean()
    if method != "plane":
        raise ValueError(f"phase_align_method: expected 'plane' or 'mean'; found {method!r}")
    rows, cols = np.indices(phase.shape, dtype=np.float64)
    design = np.column_stack([cols.ravel(), rows.ravel(), np.ones(phase.size)])
    coef, *_ = np.linalg.lstsq(design, phase.ravel(), rcond=None)
    return phase - (design @ coef).reshape(phase.shape)


def psnr(prediction: np.ndarray, reference: np.ndarray, peak: float) -> float:
    """Peak signal-to-noise ratio in dB: ``20 log10(peak / (sqrt(MSE) + eps))`` (OpenCV's formula)."""
    mse = np.mean((np.asarray(prediction, np.float64) - np.asarray(reference, np.float64)) ** 2)
    return 20.0 * math.log10(peak / (math.sqrt(mse) + _DBL_EPSILON))


def ssim(prediction: np.ndarray, reference: np.ndarray, data_range: float) -> float:
    """scikit-image SSIM of two ``(H, W)`` images (7x7 uniform window), a float in [-1, 1]."""
    return float(
        structural_similarity(
            np.asarray(reference, np.float64),
            np.asarray(prediction, np.float64),
            data_range=data_range,
        )
    )


def ms_ssim(
    prediction: np.ndarray, reference: np.ndarray, data_range: float | None = None
) -> float:
    """Simplified MS-SSIM of B 12: product over levels of ``ssim_l ** w_l``, a float.

    Up to 5 levels; level l+1 decimates both images by ``[::2, ::2]``; stops before an image
    smaller than 7 px. A negative level SSIM is clamped to 1e-4, a NaN one counts as 0.
    ``data_range`` defaults to the larger of the two images' ranges, as the original computes it.
    """
    a = np.asarray(prediction, np.float64)
    b = np.asarray(reference, np.float64)
    if data_range is None:
        data_range = max(float(np.ptp(a)), float(np.ptp(b))) or 1.0
    result = 1.0
    for weight in MS_SSIM_WEIGHTS:
        if min(a.shape) < 7:
            break
        value = ssim(a, b, data_range)
        value = 0.0 if math.isnan(value) else max(value, 1e-4)
        result *= value**weight
        a, b = a[::2, ::2], b[::2, ::2]
    return result


def frc_curve(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Fourier ring correlation ``(side // 2,)`` float64 of two ``(H, W)`` real images.

    Non-square images are centre-cropped to a square of side ``min(H, W)``. Ring r holds the
    pixels of the fftshifted spectra whose distance to the centre rounds to r;
    ``FRC(r) = |sum F1 F2*| / sqrt(sum |F1|^2 sum |F2|^2)`` over the ring (0 for an empty spectrum).
    """
    a, b = (np.asarray(x, np.float64) for x in (prediction, reference))
    side = min(a.shape)
    crops = []
    for image in (a, b):
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        crops.append(image[top : top + side, left : left + side])
    f1, f2 = (np.fft.fftshift(np.fft.fft2(c)) for c in crops)
    offsets = np.arange(side) - side // 2
    ring = np.rint(np.hypot(offsets[:, None], offsets[None, :])).astype(np.int64).ravel()
    n_rings = side // 2
    keep = ring < n_rings

    def ring_sum(values: np.ndarray) -> np.ndarray:
        flat = values.ravel()[keep]
        return np.bincount(ring[keep], flat.real, n_rings) + 1j * np.bincount(
            ring[keep], flat.imag, n_rings
        )

    cross = np.abs(ring_sum(f1 * np.conj(f2)))
    power = np.sqrt(ring_sum(np.abs(f1) ** 2).real * ring_sum(np.abs(f2) ** 2).real)
    return np.divide(cross, power, out=np.zeros(n_rings), where=power > 0)


def frc_crossing(curve: np.ndarray, threshold: float = 0.5) -> float:
    """First ring where ``curve`` drops below ``threshold``, linearly interpolated; ``len(curve)`` if never."""
    curve = np.asarray(curve, dtype=np.float64)
    below = np.flatnonzero(curve < threshold)
    if len(below) == 0:
        return float(len(curve))
    i = int(below[0])
    if i == 0:
        return 0.0
    return (i - 1) + (curve[i - 1] - threshold) / (curve[i - 1] - curve[i])


def eval_reconstruction(
    stitched: np.ndarray,
    ground_truth: np.ndarray,
    *,
    phase_align_method: str = "plane",
    frc_sigma: float = 0.0,
    ms_ssim_sigma: float = 1.0,
    trim: int = 2,
) -> dict[str, Any]:
    """Compare a reconstruction with ground truth (B 12): complex ``(H, W)`` images -> metrics dict.

    Inputs may be ``(H, W)``, ``(H, W, 1)`` or ``(1, H, W, 1)``, complex (real = zero phase), of
    the same shape (see ``align_for_evaluation``). Both lose ``trim`` pixels at every border;
    the amplitude prediction is mean-matched; both phases get their own plane (or mean) removed.
    Returns ``{name: (amplitude, phase)}`` floats for ``mae``, ``mse``, ``psnr`` (peak = gt
    range), ``psnr255`` (peak 255), ``ssim``, ``ms_ssim``, ``frc50``, ``frc1over7`` (rings), plus
    ``frc``: the two FRC curves as lists.
    """
    pred = _as_image(stitched, "stitched")
    truth = _as_image(ground_truth, "ground_truth")
    if pred.shape != truth.shape:
        raise DataError(
            f"eval_reconstruction: expected stitched and ground_truth of the same shape; found "
            f"{pred.shape} and {truth.shape} (crop the ground truth with align_for_evaluation)"
        )
    if trim:
        pred, truth = pred[trim:-trim, trim:-trim], truth[trim:-trim, trim:-trim]
    if min(pred.shape) < 1:
        raise DataError(
            f"eval_reconstruction: image too small after trimming {trim} px: {pred.shape}"
        )
    amp_true = np.abs(truth).astype(np.float64)
    amp_pred = match_amplitude(np.abs(pred), amp_true)
    phase_true = remove_phase_plane(np.angle(truth), phase_align_method)
    phase_pred = remove_phase_plane(np.angle(pred), phase_align_method)

    amp_range = float(np.ptp(amp_true)) or 1.0
    phase_range = float(np.ptp(phase_true)) or 1.0
    # SSIM of the phase on (phi + pi) / 2 pi with data range 1 (B 12).
    phase_unit_true = (phase_true + np.pi) / (2 * np.pi)
    phase_unit_pred = (phase_pred + np.pi) / (2 * np.pi)
    smooth_true = gaussian_filter(amp_true, ms_ssim_sigma) if ms_ssim_sigma > 0 else amp_true
    smooth_pred = gaussian_filter(amp_pred, ms_ssim_sigma) if ms_ssim_sigma > 0 else amp_pred

    curves = []
    for p, t in ((amp_pred, amp_true), (phase_pred, phase_true)):
        curve = frc_curve(p, t)
        curves.append(gaussian_filter1d(curve, frc_sigma) if frc_sigma > 0 else curve)

    def pair(amplitude: float, phase: float) -> tuple[float, float]:
        return float(amplitude), float(phase)

    return {
        "mae": pair(np.mean(np.abs(amp_pred - amp_true)), np.mean(np.abs(phase_pred - phase_true))),
        "mse": pair(np.mean((amp_pred - amp_true) ** 2), np.mean((phase_pred - phase_true) ** 2)),
        "psnr": pair(
            psnr(amp_pred, amp_true, amp_range), psnr(phase_pred, phase_true, phase_range)
        ),
        "psnr255": pair(psnr(amp_pred, amp_true, 255.0), psnr(phase_pred, phase_true, 255.0)),
        "ssim": pair(
            ssim(amp_pred, amp_true, amp_range), ssim(phase_unit_pred, phase_unit_true, 1.0)
        ),
        "ms_ssim": pair(
            ms_ssim(smooth_pred, smooth_true),
            ms_ssim(phase_unit_pred, phase_unit_true),
        ),
        "frc50": pair(frc_crossing(curves[0], 0.5), frc_crossing(curves[1], 0.5)),
        "frc1over7": pair(frc_crossing(curves[0], 1 / 7), frc_crossing(curves[1], 1 / 7)),
        "frc": (curves[0].tolist(), curves[1].tolist()),
    }


def has_phase_structure(ground_truth: np.ndarray, method: str = "plane") -> bool:
    """Whether a complex ``(H, W)`` ground truth has phase to score (range > ``PHASE_FLAT_RAD``)."""
    phase = remove_phase_plane(np.angle(_as_image(ground_truth, "ground_truth")), method)
    return bool(np.ptp(phase) > PHASE_FLAT_RAD)


def align_for_evaluation(
    stitched: np.ndarray, ground_truth: np.ndarray, global_offsets: np.ndarray, M: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a stitched image and the full ground-truth object to the scanned region (B 9 step 4).

    ``stitched`` ``(S, S[, 1])`` from ``reassemble_position(..., global_offsets, M)``;
    ``ground_truth`` the ``(H, W)`` object; ``global_offsets`` ``(B, 1, 2, 1)`` or ``(B, 2)``
    pixels. Returns ``(stitched_crop, ground_truth_crop)``, both ``(h, w)`` and on the same
    pixel grid: the bounding box of the scan positions +- M/2. The ground truth is sampled on
    the canvas grid (bilinear, so a non-integer mean position is handled; zero outside).
    """
    image = _as_image(stitched, "stitched")
    obj = _as_image(ground_truth, "ground_truth")
    geom = stitch_geometry(global_offsets, M)
    if image.shape != (geom.size, geom.size):
        raise DataError(
            f"align_for_evaluation: expected a stitched image of {geom.size} x {geom.size} for "
            f"these offsets and M={M}; found {image.shape}"
        )
    # Canvas pixel (u, v) shows object pixel (u - pad - M/2 + center_y, v - pad - M/2 + center_x).
    origin = -geom.pad - M / 2 + geom.center
    truth_on_canvas = _bilinear_sample(
        obj[None], np.zeros(1, dtype=np.int64), origin[1:2], origin[0:1], (geom.size, geom.size)
    )[0]
    low = np.floor(geom.pad + geom.offsets.min(axis=0)).astype(int)
    high = np.ceil(geom.pad + geom.offsets.max(axis=0)).astype(int) + M
    rows = slice(max(low[1], 0), min(high[1], geom.size))
    cols = slice(max(low[0], 0), min(high[0], geom.size))
    return image[rows, cols], truth_on_canvas[rows, cols].astype(obj.dtype)
