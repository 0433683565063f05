"""The reference forward model: per-group overlap canvas, extraction, illumination (B 7.6, B 7.7)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_api.forward import (
    CANVAS_BORDER_WEIGHT,
    canvas_weight,
    extract_from_canvas,
    forward_model,
    illuminate,
    overlap_canvas,
    smooth_field,
    trim_canvas,
)
from ptycho_api.physics import extract_patches, far_field, translate
from ptycho_api.probe import default_probe, normalize_probe, probe_support_mask


def _random_patches(shape: tuple[int, ...], seed: int, dtype: type = np.complex128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.5, shape) * np.exp(1j * rng.uniform(-1, 1, shape))).astype(dtype)


def test_single_centred_patch_comes_back_unchanged() -> None:
    # Decision 1: the canvas is a weighted average, so a lone patch - centre box and border ring
    # alike - comes back as it went in (the original scaled the ring by 1000, B 7.6).
    N = 64
    patch = _random_patches((1, N, N, 1), seed=0)
    zero = np.zeros((1, 1, 2, 1))
    canvas = overlap_canvas(patch, zero, 74)
    assert canvas.shape == (1, 74, 74, 1) and canvas.dtype == np.complex128
    for result in (trim_canvas(canvas, N), extract_from_canvas(canvas, zero, N)):
        assert result.shape == (1, N, N, 1)
        # Exact zero offsets: only the 1e-9 denominator term changes values (relative 1e-6 at
        # the border weight 0.001); float64.
        np.testing.assert_allclose(result, patch, rtol=2e-6)
    # Outside the patch nothing covers the canvas: exactly 0.
    assert np.all(canvas[0, :5, :, 0] == 0)


def test_canvas_weights_are_one_in_the_centre_box_and_small_outside() -> None:
    w = canvas_weight(64)
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w[16:48, 16:48], 1.0)
    assert w[0, 0] == np.float32(CANVAS_BORDER_WEIGHT) and w[15, 30] == np.float32(0.001)


def test_canvas_of_a_group_reassembles_the_object_around_the_group_centre() -> None:
    # Sign convention (B 16 item 3): members cut from one object at r_c, offsets m - r_c, integer.
    # Full patches (centre box and border ring) all cut from the same object: every weighted
    # average of them is the object itself, wherever at least one patch covers the pixel.
    rng = np.random.default_rng(1)
    N, P = 16, 28
    obj = rng.uniform(0.5, 1.5, (60, 60)).astype(np.complex128)
    positions = np.array([[30.0, 30.0], [34.0, 30.0], [30.0, 26.0], [34.0, 26.0]])
    m = positions.mean(axis=0)
    patches = np.moveaxis(extract_patches(obj, positions, N), 0, -1)[None]
    offsets = (m - positions).T[None, None]  # (1, 1, 2, 4): row 0 = x, row 1 = y
    canvas = overlap_canvas(patches, offsets, P)[0, ..., 0]
    ones = np.pad(np.ones((N, N)), (P - N) // 2)[None]
    covered = sum(translate(ones, (r - m)[None])[0] for r in positions) > 0.5
    expected = extract_patches(obj, m[None], P)[0]  # the object around m, on the canvas grid
    # Integer offsets: exact interpolation; the 1e-9 term is below 1e-5 of the smallest weight.
    np.testing.assert_allclose(canvas[covered], expected[covered], rtol=1e-5)
    np.testing.assert_array_equal(canvas[~covered], 0)
    assert covered.sum() > N * N  # the group covers more than one patch


def test_centre_boxes_dominate_border_rings() -> None:
    # Two members 8 px apart: where one's centre box meets the other's border ring, the ring's
    # value counts 0.001 as much (decision 1), so a wrong ring barely disturbs the canvas.
    N, P = 16, 30
    good = np.ones((N, N), np.complex128)
    bad = np.full((N, N), 50.0 + 0j)
    bad[N // 4 : 3 * N // 4, N // 4 : 3 * N // 4] = 1.0  # right centre, wrong border ring
    patches = np.stack([good, bad], axis=-1)[None]
    offsets = np.array([[[[4.0, -4.0], [0.0, 0.0]]]])  # members at m - 4 and m + 4 in x
    canvas = overlap_canvas(patches, offsets, P)[0, ..., 0]
    # Pixel 2 px right of member 0's point: its centre box and member 1's border ring overlap.
    row, col = P // 2, P // 2 - 4 + 2 + 4
    expected = (1.0 + CANVAS_BORDER_WEIGHT * 50.0) / (1.0 + CANVAS_BORDER_WEIGHT)
    assert canvas[row, col - 4] == pytest.approx(expected, rel=1e-6)


def test_groups_never_share_a_canvas() -> None:
    # Decision 1: a group's outputs do not depend on the other groups of the batch.
    N = 64
    patches = _random_patches((5, N, N, 4), seed=2, dtype=np.complex64)
    offsets = np.random.default_rng(3).uniform(-3, 3, (5, 1, 2, 4)).astype(np.float32)
    offsets -= offsets.mean(axis=3, keepdims=True)
    probe = normalize_probe(default_probe(N))
    batch = forward_model(patches, offsets, probe, 988.2)
    for b in range(5):
        alone = forward_model(patches[b : b + 1], offsets[b : b + 1], probe, 988.2)
        for got, want in zip(batch, alone, strict=True):
            # Same float64 arithmetic per group, then float32 rounding: identical bits expected.
            np.testing.assert_array_equal(got[b : b + 1], want)


def test_forward_model_gridsize1_equals_the_manual_chain() -> None:
    N, s = 64, 988.2118
    patch = _random_patches((2, N, N, 1), seed=4)
    probe = normalize_probe(default_probe(N)).astype(np.complex128)
    result = forward_model(patch, np.zeros((2, 1, 2, 1)), probe, s)
    # A lone patch is its own canvas (decision 1): plain s * |FFT(P O)| / N.
    spectrum = np.fft.fft2(probe[None, :, :, None] * patch, axes=(1, 2))
    manual = s * np.fft.fftshift(np.abs(spectrum), axes=(1, 2)) / N
    assert result.pred_amp_scaled.shape == (2, N, N, 1)
    # float64; the canvas's 1e-9 denominator term is at most 1e-6 relative (border weight 1e-3).
    np.testing.assert_allclose(result.pred_amp_scaled, manual, rtol=0, atol=2e-6 * manual.max())
    np.testing.assert_allclose(result.pred_intensity, manual**2, rtol=4e-6)


def test_ground_truth_patches_reproduce_the_simulated_data_through_the_canvas() -> None:
    # Independent reference: a probe wider than the centre box (the defocused probe) and full
    # ground-truth patches of a group; the forward model must give the diffraction of each
    # member computed directly from the object (no canvas), for gridsize 1 and 2.
    from ptycho_api.probe import defocused_probe

    N, s = 64, 10.0
    rng = np.random.default_rng(8)
    obj = rng.uniform(0.5, 1.5, (160, 160)) * np.exp(1j * rng.uniform(-1, 1, (160, 160)))
    probe = normalize_probe(defocused_probe(N)).astype(np.complex128)
    # Integer offsets m - r, so that translation is exact and only the canvas is tested.
    groups = (
        np.array([[80.0, 80.0]]),
        np.array([[77.0, 78.0], [83.0, 78.0], [80.0, 84.0], [80.0, 80.0]]),
    )
    for positions in groups:
        m = positions.mean(axis=0)
        patches = np.moveaxis(extract_patches(obj, positions, N), 0, -1)[None]
        offsets = (m - positions).T[None, None]
        result = forward_model(patches, offsets, probe, s)
        direct = s * far_field(extract_patches(obj, positions, N) * probe)
        got = np.moveaxis(result.pred_amp_scaled[0], -1, 0)
        # float64 with exact shifts; the 1e-9 denominator term is below 1e-6 of the smallest
        # weight, so 1e-6 of the peak. The original canvas (border ring x 1000) fails this.
        np.testing.assert_allclose(got, direct, rtol=0, atol=1e-6 * direct.max())


def test_forward_model_single_precision_outputs() -> None:
    N = 64
    patches = _random_patches((2, N, N, 4), seed=5, dtype=np.complex64)
    result = forward_model(
        patches, np.zeros((2, 1, 2, 4), np.float32), normalize_probe(default_probe(N)), 10.0
    )
    assert result.trimmed_obj.shape == (2, N, N, 1) and result.trimmed_obj.dtype == np.complex64
    assert result.pred_amp_scaled.shape == (2, N, N, 4)
    assert result.pred_amp_scaled.dtype == np.float32 and result.pred_intensity.dtype == np.float32


def test_object_big_false_pads_the_single_patch() -> None:
    N, s = 64, 3.0
    patch = _random_patches((1, N, N, 1), seed=6)
    probe = _random_patches((N, N), seed=7)
    offsets = np.zeros((1, 1, 2, 1))
    canvas = overlap_canvas(patch, offsets, 74, object_big=False)
    np.testing.assert_array_equal(trim_canvas(canvas, N), patch)
    result = forward_model(patch, offsets, probe, s, object_big=False)
    # No canvas normalisation: plain s * far_field(P * O); float64, 1e-12 relative.
    expected = s * far_field(probe[None, :, :, None] * patch, axes=(1, 2))
    np.testing.assert_allclose(result.pred_amp_scaled, expected, rtol=1e-12)


def test_probe_big_false_ignores_the_border_ring() -> None:
    N = 64
    patch = _random_patches((1, N, N, 1), seed=8)
    altered = patch.copy()
    altered[:, :4] = 100.0  # rows outside the centre box
    probe = normalize_probe(default_probe(N))
    zero = np.zeros((1, 1, 2, 1))
    a = forward_model(patch, zero, probe, 5.0, probe_big=False)
    b = forward_model(altered, zero, probe, 5.0, probe_big=False)
    np.testing.assert_array_equal(a.pred_amp_scaled, b.pred_amp_scaled)
    c = forward_model(altered, zero, probe, 5.0, probe_big=True)
    assert not np.array_equal(a.pred_amp_scaled, c.pred_amp_scaled)


def test_probe_mask_zeroes_outside_the_support() -> None:
    N = 32
    patches = np.ones((1, N, N, 2), dtype=np.complex64)
    probe = np.ones((N, N), dtype=np.complex64)
    psi = illuminate(patches, probe, probe_mask=True)
    support = probe_support_mask(N).astype(bool)
    assert np.all(psi[0, ~support] == 0) and np.all(psi[0, support] == 1)


def test_smoothing_taps_and_constant_preservation() -> None:
    sigma = 0.8
    field = np.zeros((1, 9, 9, 1), dtype=np.complex128)
    field[0, 4, 4, 0] = 1.0
    out = smooth_field(field, sigma)
    x = np.array([-1.0, 0.0, 1.0])
    taps = np.exp(-(x**2) / (2 * sigma**2))
    taps /= taps.sum()
    # B 6.4: separable 3x3 softmax taps; float64, 1e-14 absolute.
    np.testing.assert_allclose(out[0, 3:6, 3:6, 0], np.outer(taps, taps), atol=1e-14)
    constant = np.full((1, 6, 6, 1), 2 - 1j)
    np.testing.assert_allclose(smooth_field(constant, sigma), constant, atol=1e-14)


def test_overlap_canvas_rejects_mismatched_channels() -> None:
    with pytest.raises(ValueError, match="one patch per offset"):
        overlap_canvas(np.ones((1, 8, 8, 2)), np.zeros((1, 1, 2, 4)), 12)
    with pytest.raises(ValueError, match="1 patch channel"):
        overlap_canvas(np.ones((1, 8, 8, 4)), np.zeros((1, 1, 2, 4)), 12, object_big=False)
