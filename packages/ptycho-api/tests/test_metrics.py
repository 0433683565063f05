"""Metrics (B 12, decision 14) and the ground-truth alignment helper (B 9 step 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptycho_api import DataError, align_for_evaluation, eval_reconstruction, reassemble_position
from ptycho_api.metrics import frc_crossing, frc_curve, remove_phase_plane
from ptycho_api.objects import lines_object
from ptycho_api.physics import extract_patches

METRICS = ("mae", "mse", "psnr", "psnr255", "ssim", "ms_ssim", "frc50", "frc1over7")


def _object(size: int = 72, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amplitude = lines_object(size, rng) + 0.5
    phase = 0.5 * np.tanh(amplitude - amplitude.mean())
    return (amplitude * np.exp(1j * phase)).astype(np.complex128)


def _checkerboard(shape: tuple[int, int]) -> np.ndarray:
    """+-1 pattern: zero mean and orthogonal to 1, x and y on an even-sized grid."""
    rows, cols = np.indices(shape)
    return np.where((rows + cols) % 2 == 0, 1.0, -1.0)


def test_identical_images_are_perfect() -> None:
    gt = _object()
    m = eval_reconstruction(gt, gt)
    assert set(METRICS) <= set(m)
    for name in ("ssim", "ms_ssim"):
        # SSIM of identical images is 1 up to float64 rounding: 1e-12.
        assert abs(m[name][0] - 1) < 1e-12 and abs(m[name][1] - 1) < 1e-12, name
    n_rings = len(m["frc"][0])
    assert n_rings == (72 - 4) // 2  # square side after the 2 px trim, halved
    assert m["frc50"] == (float(n_rings), float(n_rings))  # never drops below 0.5: maximal
    assert m["mae"] == (0.0, 0.0) and m["mse"] == (0.0, 0.0)
    # OpenCV's formula with MSE 0: 20 log10(255 / DBL_EPSILON) = 361.2 dB.
    assert abs(m["psnr255"][0] - 20 * math.log10(255 / np.finfo(float).eps)) < 1e-9


def test_accepts_the_stitched_and_batched_layouts() -> None:
    gt = _object()
    a = eval_reconstruction(gt[None, :, :, None], gt[:, :, None])
    b = eval_reconstruction(gt, gt)
    assert a["ssim"] == b["ssim"]


def test_phase_ramp_is_removed_by_plane_alignment() -> None:
    gt = _object()
    rows, cols = np.indices(gt.shape)
    ramp = 0.01 * cols - 0.007 * rows + 0.3  # stays inside (-pi, pi] with the object phase
    tilted = gt * np.exp(1j * ramp)
    m = eval_reconstruction(tilted, gt)
    # Least-squares plane fits of two maps differing by an exact plane: 1e-12 rad.
    assert m["mae"][1] < 1e-12
    assert abs(m["ssim"][1] - 1) < 1e-12
    # Without plane removal ('mean') the ramp is visible.
    assert eval_reconstruction(tilted, gt, phase_align_method="mean")["mae"][1] > 0.05


def test_amplitude_is_mean_matched() -> None:
    gt = _object()
    m = eval_reconstruction(3.0 * gt, gt)
    # A global scale is removed exactly up to float64 rounding.
    assert m["mae"][0] < 1e-12


def test_known_noise_gives_the_expected_psnr() -> None:
    gt = _object()
    sigma = 0.05
    noise = sigma * _checkerboard(gt.shape)
    noisy = (np.abs(gt) + noise) * np.exp(1j * (np.angle(gt) + noise))
    m = eval_reconstruction(noisy, gt)
    # Zero-mean checkerboard: mean matching and plane removal leave it intact, MSE = sigma^2.
    truth = gt[2:-2, 2:-2]
    amp_range = np.ptp(np.abs(truth))
    phase_range = np.ptp(remove_phase_plane(np.angle(truth)))
    # Exact construction: agreement to 1e-9 dB (float64 rounding of MSE and log10).
    assert abs(m["psnr255"][0] - 20 * math.log10(255 / sigma)) < 1e-9
    assert abs(m["psnr255"][1] - 20 * math.log10(255 / sigma)) < 1e-9
    assert abs(m["psnr"][0] - 20 * math.log10(amp_range / sigma)) < 1e-9
    assert abs(m["psnr"][1] - 20 * math.log10(phase_range / sigma)) < 1e-9
    assert abs(m["mse"][0] - sigma**2) < 1e-12 and abs(m["mae"][0] - sigma) < 1e-12


def test_gaussian_noise_psnr_statistically() -> None:
    gt = _object(size=128)
    sigma = 0.02
    noise = np.random.default_rng(1).normal(0, sigma, gt.shape)
    m = eval_reconstruction((np.abs(gt) + noise) * np.exp(1j * np.angle(gt)), gt)
    # 124^2 samples: MSE has relative std sqrt(2/n) ~ 1.1 %, i.e. ~0.05 dB; 0.3 dB is > 5 sigma
    # (mean matching moves it far less).
    assert abs(m["psnr255"][0] - 20 * math.log10(255 / sigma)) < 0.3


def test_noise_lowers_ssim_and_frc() -> None:
    gt = _object()
    noisy = gt + 0.3 * np.random.default_rng(2).normal(size=gt.shape)
    clean = eval_reconstruction(gt, gt)
    m = eval_reconstruction(noisy, gt)
    assert m["ssim"][0] < clean["ssim"][0] and m["ms_ssim"][0] < clean["ms_ssim"][0]
    assert m["frc50"][0] < clean["frc50"][0]


def test_frc_crossing_interpolates() -> None:
    # Crossing of 0.5 between ring 1 (0.8) and ring 2 (0.4): 1 + 0.3 / 0.4; exact arithmetic.
    assert frc_crossing(np.array([1.0, 0.8, 0.4, 0.1]), 0.5) == 1.75
    assert frc_crossing(np.array([0.3, 0.2]), 0.5) == 0.0
    assert frc_crossing(np.ones(6), 0.5) == 6.0


def test_frc_curve_of_identical_images_is_one() -> None:
    image = np.random.default_rng(3).normal(size=(20, 26))  # non-square: centre-cropped
    curve = frc_curve(image, image)
    assert curve.shape == (10,)
    np.testing.assert_allclose(curve, 1.0, rtol=1e-12)


def test_shape_mismatch_and_bad_method() -> None:
    with pytest.raises(DataError, match="same shape"):
        eval_reconstruction(np.ones((30, 30)), np.ones((30, 32)))
    with pytest.raises(ValueError, match="phase_align_method"):
        eval_reconstruction(np.ones((30, 30)), np.ones((30, 30)), phase_align_method="tilt")


def test_align_for_evaluation_matches_stitched_ground_truth_patches() -> None:
    # Stitching exact patches of an object at integer positions reproduces the object, so after
    # alignment the two crops agree and the metrics are perfect.
    obj = _object(size=120, seed=4)
    N, M = 32, 20
    xs, ys = np.meshgrid(np.arange(40, 81, 8.0), np.arange(44, 77, 8.0))
    positions = np.column_stack([xs.ravel(), ys.ravel()])
    patches = extract_patches(obj, positions, N)[..., None]
    offsets = positions[:, None, :, None]  # (B, 1, 2, 1)
    stitched = reassemble_position(patches, offsets, M=M)
    recon, truth = align_for_evaluation(stitched, obj, offsets, M=M)
    assert recon.shape == truth.shape == (32 + M, 40 + M)  # scan extent + M
    # Integer geometry: exact copies divided by (weight + 1e-9): 1e-8 relative.
    np.testing.assert_allclose(recon, truth, rtol=1e-8)
    m = eval_reconstruction(recon, truth)
    assert abs(m["ssim"][0] - 1) < 1e-6 and abs(m["ssim"][1] - 1) < 1e-6


def test_align_for_evaluation_handles_a_fractional_mean() -> None:
    obj = _object(size=100, seed=5)
    positions = np.array([[40.0, 50.0], [47.0, 50.0], [43.0, 57.0]])  # mean (43.33, 52.33)
    patches = extract_patches(obj, positions, 32)[..., None]
    stitched = reassemble_position(patches, positions, M=20)
    recon, truth = align_for_evaluation(stitched, obj, positions, M=20)
    assert recon.shape == truth.shape
    # Sub-pixel resampling of the ground truth vs bilinear stitching of patches: both are
    # interpolations of one smooth object, so they agree closely but not exactly.
    assert eval_reconstruction(recon, truth)["ssim"][0] > 0.95
    with pytest.raises(DataError, match="stitched image of"):
        align_for_evaluation(stitched[1:], obj, positions, M=20)


def test_phase_structure_is_told_from_a_flat_or_tilted_phase() -> None:
    """Issue 16: a zero-phase truth scores any flat phase as perfect, so its phase is not scored.

    A pure tilt (removed by the plane fit before scoring) is no structure either; the demo's
    phase (``set_phi``, about 1 rad) is. Threshold ``PHASE_FLAT_RAD`` (1e-3 rad) sits between
    float32 round-off of a plane (< 1e-5 rad) and any phase a detector could measure.
    """
    from ptycho_api.metrics import PHASE_FLAT_RAD, has_phase_structure
    from ptycho_api.objects import make_object

    amplitude = lines_object(64, np.random.default_rng(0))
    rows, cols = np.mgrid[0:64, 0:64]
    assert not has_phase_structure(amplitude.astype(np.complex64))
    tilted = amplitude * np.exp(1j * (0.01 * rows - 0.02 * cols))
    assert not has_phase_structure(tilted.astype(np.complex64))
    demo = make_object("lines", 64, np.random.default_rng(0), set_phi=True)
    assert has_phase_structure(demo)
    bump = amplitude * np.exp(1j * 10 * PHASE_FLAT_RAD * (rows == 32))
    assert has_phase_structure(bump.astype(np.complex64))
