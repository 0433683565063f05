"""Probe support mask, default probe and normalisation (B 6.3) against the golden values of B 15."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_api.probe import default_probe, normalize_probe, probe_support_mask


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
