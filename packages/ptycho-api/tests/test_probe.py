"""Probe support mask, default probe and normalisation (B 6.3) against the golden values of B 15."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_api.probe import (
    default_probe,
    defocused_probe,
    normalize_probe,
    pad_extrapolate,
    probe_support_mask,
    smooth_complex,
)


@pytest.mark.parametrize(
    ("N", "max_abs", "energy", "mask_px"),
    [(64, 2.7234, 2505.119, 812), (128, 2.7307, 10613.78, 3228)],
)
def test_default_probe_golden_values(N: int, max_abs: float, energy: float, mask_px: int) -> None:
    probe = normalize_probe(default_probe(N), probe_scale=4.0)
    assert probe.shape == (N, N) and probe.dtype == np.complex64
    # B 15 quotes 4 decimals for the maximum: half a unit of the last digit.
    assert abs(np.abs(probe).max() - max_abs) < 5e-5
    # ... and 3 (N=64) / 2 (N=128) decimals for the energy; float32 probe values, 1e-5 relative.
    assert abs(np.sum(np.abs(probe.astype(np.complex128)) ** 2) - energy) < 1e-5 * energy
    assert int(probe_support_mask(N).sum()) == mask_px


def test_default_probe_is_real_positive_and_unnormalised() -> None:
    probe = default_probe(64)
    assert probe.dtype == np.complex64
    assert np.all(probe.imag == 0) and np.all(probe.real > 0)
    # The un-normalised disk peaks at 1 (a blurred indicator); 1e-6 for float32 rounding.
    assert abs(np.abs(probe).max() - 1.0) < 1e-6


def test_normalize_probe_sets_mean_masked_modulus() -> None:
    rng = np.random.default_rng(0)
    probe = rng.normal(size=(32, 32)) + 1j * rng.normal(size=(32, 32))
    normalised = normalize_probe(probe, probe_scale=2.5)
    mask = probe_support_mask(32)
    # mean |mask * P| == 1 / probe_scale after normalisation; float32 output, 1e-6 relative.
    assert abs(np.mean(np.abs(mask * normalised)) - 1 / 2.5) < 1e-6 / 2.5


def test_normalize_probe_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="probe must be"):
        normalize_probe(np.ones((4, 5)))
    with pytest.raises(ValueError, match="probe_scale"):
        normalize_probe(np.ones((4, 4)), probe_scale=0.0)
    with pytest.raises(ValueError, match="zero everywhere"):
        normalize_probe(np.zeros((8, 8)))


def test_pad_extrapolate_continues_a_quadratic_phase_and_the_edge_amplitude() -> None:
    # A 40 px probe with phase 0.004 r^2 + 0.3 (about 0.3 rad/px at the border, far below
    # the pi/px an unwrap can follow), padded to 64: the extrapolated phase is the same
    # quadratic on the bigger grid, to float32 rounding (1e-5 rad).
    n, N, a, b = 40, 64, 0.004, 0.3
    idx = np.arange(n) - (n - 1) / 2
    r2 = idx[:, None] ** 2 + idx[None, :] ** 2
    amplitude = 1.0 + 0.01 * np.add.outer(np.arange(n), np.arange(n))
    padded = pad_extrapolate(amplitude * np.exp(1j * (a * r2 + b)), N)
    big = np.arange(N) - (N - 1) / 2
    R2 = big[:, None] ** 2 + big[None, :] ** 2
    assert padded.shape == (N, N) and padded.dtype == np.complex64
    phase_error = np.angle(padded * np.exp(-1j * (a * R2 + b)))
    assert np.abs(phase_error).max() < 1e-5
    np.testing.assert_allclose(np.abs(padded)[12:52, 12:52], amplitude, rtol=1e-6)
    np.testing.assert_allclose(np.abs(padded)[0, 0], amplitude[0, 0], rtol=1e-6)
    np.testing.assert_allclose(np.abs(padded)[30, 63], amplitude[18, 39], rtol=1e-6)
    with pytest.raises(ValueError, match="smaller than the probe's 40"):
        pad_extrapolate(padded[:40, :40], 32)


def test_smooth_complex_keeps_a_wrapping_phase_ramp() -> None:
    # A ramp of 1 rad/px wraps every 6 px; smoothing wrapped values would average them towards
    # 0, smoothing the unwrapped phase leaves a linear ramp unchanged away from the borders.
    x = np.arange(32, dtype=np.float64)
    probe = np.exp(1j * np.add.outer(np.zeros(32), x))
    smooth = smooth_complex(probe, 0.5)
    np.testing.assert_allclose(np.abs(smooth), 1.0, rtol=1e-6)
    error = np.angle(smooth * np.conj(probe))[4:-4, 4:-4]
    assert np.abs(error).max() < 1e-5
    np.testing.assert_array_equal(smooth_complex(probe, 0.0), probe.astype(np.complex64))


def test_defocused_probe_is_band_limited_to_its_annular_pupil() -> None:
    # The probe is the inverse FFT of an annular pupil (radii 0.135 and 0.3 cycles/px), so its
    # spectrum must vanish outside the annulus (to float32 rounding) and it is not symmetric.
    N = 64
    probe = defocused_probe(N)
    assert probe.dtype == np.complex64 and np.isclose(np.abs(probe).max(), 1.0)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(probe.astype(np.complex128))))
    k = np.fft.fftshift(np.fft.fftfreq(N))
    rho = np.hypot(k[:, None], k[None, :]) / 0.3
    outside = (rho > 1.0 + 1.5 / (0.3 * N)) | (rho < 0.45 - 1.5 / (0.3 * N))
    assert spectrum[outside].max() < 1e-4 * spectrum.max()
    assert np.abs(probe - probe[::-1, ::-1]).max() > 0.1
    assert np.abs(np.angle(probe[np.abs(probe) > 0.3])).max() > 1.0
