"""Reference physics primitives: translation, patch extraction, far field, losses (B 1.1, B 6.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from ptycho_api.physics import (
    extract_patches,
    far_field,
    gaussian_taps,
    mae,
    padded_size,
    poisson_nll,
    translate,
)


def _bilinear_by_hand(image: np.ndarray, y: float, x: float) -> float:
    """Independent bilinear sample with per-corner zero fill (B 1.1), one pixel at a time."""
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - y0, x - x0
    total = 0.0
    for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            if 0 <= yy < image.shape[0] and 0 <= xx < image.shape[1]:
                total += wy * wx * image[yy, xx]
    return total


def test_translate_golden_delta() -> None:
    # B 15: a delta at (row 8, col 8) shifted by [2, -3] lands at (row 5, col 10). Integer
    # shifts have weights exactly 0 and 1, so the comparison is exact.
    image = np.zeros((1, 16, 16), dtype=np.float32)
    image[0, 8, 8] = 1.0
    out = translate(image, np.array([[2.0, -3.0]]))
    expected = np.zeros_like(image)
    expected[0, 5, 10] = 1.0
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_translate_integer_offset_equals_roll_away_from_borders(dtype: type) -> None:
    rng = np.random.default_rng(1)
    images = rng.normal(size=(4, 24, 20, 2))
    if np.issubdtype(dtype, np.complexfloating):
        images = images + 1j * rng.normal(size=images.shape)
    images = images.astype(dtype)
    offsets = np.array([[3, -2], [-4, 5], [0, 0], [2, 2]], dtype=np.float64)
    out = translate(images, offsets)
    assert out.dtype == dtype and out.shape == images.shape
    for b, (dx, dy) in enumerate(offsets.astype(int)):
        rolled = np.roll(images[b], shift=(dy, dx), axis=(0, 1))
        # Rows/columns that np.roll wrapped around are zero-filled by translate instead.
        inner = (slice(5, -5), slice(5, -5))
        # Exact: integer shifts multiply by 1.0 and add 0.0, which round-trips every value.
        np.testing.assert_array_equal(out[b][inner], rolled[inner])


def test_translate_subpixel_matches_bilinear_by_hand_including_borders() -> None:
    rng = np.random.default_rng(2)
    image = rng.normal(size=(12, 10))
    offset = np.array([[1.3, -2.6]])  # [d_x, d_y], both signs, fractional
    out = translate(image[None], offset)[0]
    for y in range(12):
        for x in range(10):
            expected = _bilinear_by_hand(image, y - offset[0, 1], x - offset[0, 0])
            # float64 arithmetic on O(1) values: agreement to 1e-12 absolute.
            assert abs(out[y, x] - expected) < 1e-12, (y, x)


def test_translate_complex_parts_independent() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 9, 9)) + 1j * rng.normal(size=(2, 9, 9))
    offsets = np.array([[0.25, 1.5], [-0.75, -0.4]])
    out = translate(z, offsets)
    # Same float64 arithmetic on each part: 1e-12 absolute.
    np.testing.assert_allclose(out.real, translate(z.real, offsets), atol=1e-12)
    np.testing.assert_allclose(out.imag, translate(z.imag, offsets), atol=1e-12)


def test_translate_rejects_wrong_offset_shape() -> None:
    with pytest.raises(ValueError, match=r"offsets must be \(B, 2\)"):
        translate(np.zeros((2, 4, 4)), np.zeros((3, 2)))


def test_extract_patches_centres_the_scan_point() -> None:
    obj = np.zeros((50, 60), dtype=np.complex64)
    obj[40, 30] = 2 + 1j
    patch = extract_patches(obj, np.array([[30.0, 40.0]]), 16)
    assert patch.shape == (1, 16, 16) and patch.dtype == np.complex64
    # B 1: the scan point (x=30, y=40) sits at patch index (N/2, N/2); integer position -> exact.
    assert patch[0, 8, 8] == 2 + 1j
    assert np.count_nonzero(patch) == 1


def test_extract_patches_equals_pad_and_translate_definition() -> None:
    # B 4 get_image_patches with decision 3: zero-pad by N/2, translate by -r, keep top-left N x N.
    rng = np.random.default_rng(4)
    N = 8
    obj = rng.normal(size=(30, 26)) + 1j * rng.normal(size=(30, 26))
    positions = np.array([[3.4, 5.9], [12.0, 20.25], [25.7, 28.1], [-1.5, 4.0]])
    padded = np.pad(obj, N // 2)
    reference = [translate(padded[None], -r[None])[0, :N, :N] for r in positions]
    # Same float64 bilinear arithmetic along two routes: 1e-12 absolute.
    np.testing.assert_allclose(extract_patches(obj, positions, N), reference, atol=1e-12)


def test_extract_patches_at_whole_pixels_are_exact_slices_with_zero_fill() -> None:
    # Grid scans sit on whole pixels: the patch is then the object's own pixels, zero where the
    # patch leaves the object, with no interpolation error at all.
    rng = np.random.default_rng(5)
    N = 8
    obj = (rng.normal(size=(30, 26)) + 1j * rng.normal(size=(30, 26))).astype(np.complex64)
    positions = np.array([[0.0, 0.0], [13.0, 15.0], [25.0, 29.0], [-3.0, 31.0], [4.0, 33.0]])
    padded = np.pad(obj, N)
    expected = [
        padded[N + y - N // 2 : N + y + N // 2, N + x - N // 2 : N + x + N // 2]
        for x, y in positions.astype(int)
    ]
    np.testing.assert_array_equal(extract_patches(obj, positions, N), expected)


@pytest.mark.parametrize(("dtype", "rtol"), [(np.complex128, 1e-12), (np.complex64, 1e-6)])
def test_far_field_parseval(dtype: type, rtol: float) -> None:
    # rtol: float64 rounding for complex128; float32 output rounding for complex64.
    rng = np.random.default_rng(5)
    field = (rng.normal(size=(3, 32, 32)) + 1j * rng.normal(size=(3, 32, 32))).astype(dtype)
    amplitude = far_field(field)
    assert amplitude.dtype == (np.float64 if dtype == np.complex128 else np.float32)
    np.testing.assert_allclose(
        np.sum(amplitude.astype(np.float64) ** 2, axis=(1, 2)),
        np.sum(np.abs(field.astype(np.complex128)) ** 2, axis=(1, 2)),
        rtol=rtol,
    )


def test_far_field_dc_at_centre_and_nhwc_axes() -> None:
    field = np.ones((2, 16, 16, 1), dtype=np.complex64)
    amplitude = far_field(field, axes=(1, 2))
    # A constant field has all its energy in the DC term at (N/2, N/2): sqrt(N^2) = N.
    # float32 output of exact FFT sums of ones: 1e-5 absolute.
    assert abs(amplitude[0, 8, 8, 0] - 16.0) < 1e-5
    assert np.sum(amplitude[0, ..., 0] > 1e-4) == 1


def test_far_field_equals_shifted_fft_over_n() -> None:
    rng = np.random.default_rng(6)
    field = rng.normal(size=(16, 16)) + 1j * rng.normal(size=(16, 16))
    # B 6.1 equivalent form fftshift(|FFT|)/N; float64 rounding, 1e-12 relative.
    np.testing.assert_allclose(
        far_field(field), np.fft.fftshift(np.abs(np.fft.fft2(field))) / 16, rtol=1e-12
    )


def test_padded_size_golden() -> None:
    # B 15 / B 3.1: N=64 g1 / g2 -> 74 / 78; N=128 g1 -> 138.
    assert padded_size(64, 1) == 74
    assert padded_size(64, 2) == 78
    assert padded_size(128, 1) == 138


def test_poisson_nll_hand_value_and_minimum() -> None:
    pred = np.array([1.0, 2.0])
    target = np.array([1.0, 0.0])
    # mean(1 - 1*log(1 + 1e-12), 4 - 0) = (5 - ~1e-12) / 2: 1e-9 absolute covers the floor term.
    assert abs(poisson_nll(pred, target) - 2.5) < 1e-9
    # For a fixed observation the NLL is smallest when the predicted intensity equals it.
    target = np.full(10, 3.0)
    best = poisson_nll(target, target)
    for factor in (0.9, 0.99, 1.01, 1.1):
        assert poisson_nll(target * factor, target) > best


def test_mae_hand_value() -> None:
    # mean(|1-2|, |3-1|, |0-0|) = 1; exact in float64.
    assert mae(np.array([1.0, 3.0, 0.0]), np.array([2.0, 1.0, 0.0])) == 1.0


@pytest.mark.parametrize("sigma", [0.1, 0.5, 0.7, 1.0, 1.3, 2.0, 10.0])
def test_gaussian_taps_match_scipy_and_the_closed_form(sigma: float) -> None:
    # Independent references of the B 6.4 kernel: scipy's Gaussian filter (radius 1) applied to a
    # unit impulse, and the normalised Gaussian on {-1, 0, 1}: e / (1 + 2e), 1 / (1 + 2e), e / (1 + 2e)
    # with e = exp(-1 / (2 sigma^2)).
    impulse = np.zeros(3)
    impulse[1] = 1.0
    scipy_taps = gaussian_filter1d(impulse, sigma, radius=1, mode="constant")
    e = math.exp(-1.0 / (2.0 * sigma * sigma))
    closed = np.array([e, 1.0, e]) / (1.0 + 2.0 * e)
    taps64 = gaussian_taps(sigma, np.float64)
    # float64 against float64: a handful of roundings (exp, sum, divide), so 1e-15 relative.
    np.testing.assert_allclose(taps64, closed, rtol=1e-15, atol=0)
    np.testing.assert_allclose(taps64, scipy_taps, rtol=1e-15, atol=0)
    taps = gaussian_taps(sigma)
    assert taps.shape == (3,) and taps.dtype == np.float32
    # The float32 default is the float64 value rounded to nearest: at most half a float32 ulp
    # (2^-24 relative); one ulp (2^-23) leaves room for the references' last-bit differences.
    np.testing.assert_allclose(taps, closed, rtol=2.0**-23, atol=0)
    assert taps[0] == taps[2]


def test_gaussian_taps_limits_and_bad_sigma() -> None:
    # Narrow: all weight on the centre tap; wide: the three taps tend to 1/3 each.
    np.testing.assert_array_equal(gaussian_taps(0.01, np.float64), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(gaussian_taps(1e4, np.float64), [1 / 3] * 3, rtol=1e-8)
    for sigma in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma must be > 0"):
            gaussian_taps(sigma)


def test_weighted_loss_leaves_out_zero_weight_terms():
    from ptycho_api.physics import weighted_loss

    assert weighted_loss(2.0, 3.0, 1.0, 0.0) == 2.0
    assert weighted_loss(2.0, 3.0, 0.5, 0.25) == 1.75
    # A NaN term with zero weight must not poison the loss (the term is not computed into it).
    assert weighted_loss(2.0, float("nan"), 1.0, 0.0) == 2.0
    assert weighted_loss(2.0, 3.0, 0.0, 0.0) == 0.0
