"""Simulation (B 11, decision 15): objects, noiseless forward model, Poisson statistics, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptycho_api import (
    ConfigError,
    RawData,
    make_train_test_pair,
    simulate_dataset,
    simulate_to_file,
)
from ptycho_api.objects import OBJECT_KINDS, lines_object, make_object
from ptycho_api.physics import extract_patches, far_field
from ptycho_api.probe import default_probe


def _reference_amplitudes(data: RawData) -> np.ndarray:
    """Noiseless amplitudes from the stored object, positions and probe: |FFT(P * O_r)| / N."""
    positions = np.column_stack([data.xcoords, data.ycoords])
    patches = extract_patches(data.objectGuess, positions, data.N).astype(np.complex128)
    return far_field(patches * data.probeGuess.astype(np.complex128))


def test_noiseless_resimulation_reproduces_the_stored_amplitudes(tmp_path: Path) -> None:
    path = simulate_to_file(
        tmp_path / "sim.npz", n_images=60, N=32, nphotons=1e6, seed=3, poisson_noise=False
    )
    data = RawData.from_file(path)
    reference = _reference_amplitudes(data)
    # Stored as float32: 1e-6 relative to the largest amplitude.
    rel = np.max(np.abs(data.diff3d - reference)) / np.max(reference)
    assert rel < 1e-6
    np.testing.assert_array_equal(data.xcoords_start, data.xcoords)
    assert data.metadata["physics_parameters"]["nphotons"] == 1e6


@pytest.mark.parametrize("nphotons", [1e4, 1e6])
def test_counts_are_poisson_at_nphotons(nphotons: float) -> None:
    data = simulate_dataset(n_images=200, N=32, nphotons=nphotons, seed=17)
    s_sim = data.metadata["simulation"]["s_sim"]
    rate = (s_sim * _reference_amplitudes(data)) ** 2
    # Expected counts per pattern average exactly nphotons (definition of s_sim); float64 sums.
    assert abs(rate.sum(axis=(1, 2)).mean() / nphotons - 1) < 1e-9
    counts = (data.diff3d.astype(np.float64) * s_sim) ** 2
    k = np.rint(counts)
    # float32 storage of sqrt(k)/s perturbs k by ~1e-7 relative (k < 1e6 here): within 0.1.
    assert np.max(np.abs(counts - k)) < 0.1
    # Mean: sum(k - rate) ~ N(0, sum rate) for Poisson; variance: sum((k - rate)^2 - rate) has
    # mean 0 and variance sum(rate + 2 rate^2). Both standardised sums must be within 5 sigma
    # (a false alarm has probability < 1e-6 per check, and the seed is fixed anyway).
    z_mean = np.sum(k - rate) / np.sqrt(np.sum(rate))
    z_var = np.sum((k - rate) ** 2 - rate) / np.sqrt(np.sum(rate + 2 * rate**2))
    assert abs(z_mean) < 5, z_mean
    assert abs(z_var) < 5, z_var
    # Counts must be noisy, not the rates themselves: the variance is clearly non-zero.
    assert np.sum((k - rate) ** 2) > 0.5 * np.sum(rate)


def test_same_seed_same_data_different_seed_different() -> None:
    a = simulate_dataset(n_images=20, N=32, nphotons=1e5, seed=1)
    b = simulate_dataset(n_images=20, N=32, nphotons=1e5, seed=1)
    c = simulate_dataset(n_images=20, N=32, nphotons=1e5, seed=2)
    np.testing.assert_array_equal(a.diff3d, b.diff3d)
    np.testing.assert_array_equal(a.objectGuess, b.objectGuess)
    assert not np.array_equal(a.objectGuess, c.objectGuess)
    assert not np.array_equal(a.xcoords, c.xcoords)


def test_defaults_follow_b11(tmp_path: Path) -> None:
    data = simulate_dataset(n_images=30, N=64, seed=0)
    assert data.objectGuess.shape == (224, 224)  # int(3.5 N) lines object
    np.testing.assert_array_equal(data.probeGuess, default_probe(64))
    # Positions within [buffer, size - buffer], buffer = N // 2.
    assert data.xcoords.min() >= 32 and data.xcoords.max() <= 224 - 32
    assert data.ycoords.min() >= 32 and data.ycoords.max() <= 224 - 32
    # Ground truth Y = un-illuminated patches of the object at each position.
    positions = np.column_stack([data.xcoords, data.ycoords])
    np.testing.assert_array_equal(data.Y, extract_patches(data.objectGuess, positions, 64))
    back = RawData.from_file(data.to_file(tmp_path / "d.npz"))
    np.testing.assert_array_equal(back.Y, data.Y)


def test_user_object_and_probe() -> None:
    rng = np.random.default_rng(0)
    obj = (rng.uniform(0.5, 1, (80, 90)) * np.exp(1j * rng.uniform(-1, 1, (80, 90)))).astype(
        np.complex64
    )
    probe = np.ones((16, 16), dtype=np.complex64)
    data = simulate_dataset(n_images=10, nphotons=1e5, seed=0, obj=obj, probe=probe)
    assert data.N == 16 and data.metadata["simulation"]["object"] == "user"
    np.testing.assert_array_equal(data.objectGuess, obj)
    np.testing.assert_array_equal(data.probeGuess, probe)
    with pytest.raises(ConfigError, match="simulation.probe: expected an \\(32, 32\\)"):
        simulate_dataset(n_images=5, N=32, obj=obj, probe=probe)
    with pytest.raises(ConfigError, match="simulation.object"):
        simulate_dataset(n_images=5, N=16, obj="unknown")


@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_object_kinds(kind: str) -> None:
    obj = make_object(kind, 48, np.random.default_rng(0))
    assert obj.shape == (48, 48) and obj.dtype == np.complex64
    assert np.all(np.isfinite(obj)) and np.all(obj.real >= 0) and np.all(obj.imag == 0)
    assert np.ptp(obj.real) > 0  # not constant
    same = make_object(kind, 48, np.random.default_rng(0))
    np.testing.assert_array_equal(obj, same)


def test_set_phi_phase() -> None:
    amplitude = lines_object(32, np.random.default_rng(1))
    obj = make_object("lines", 32, np.random.default_rng(1), set_phi=True)
    expected = np.pi * np.tanh((amplitude - amplitude.max() / 2) / (3 * amplitude.mean()))
    # complex64 object: phase to float32 precision, 1e-5 rad.
    np.testing.assert_allclose(np.angle(obj), expected, atol=1e-5)


def test_train_test_pair(tmp_path: Path) -> None:
    train, test = make_train_test_pair(tmp_path, n_train=12, n_test=8, N=32, nphotons=1e5, seed=4)
    assert (train.name, test.name) == ("train_data.npz", "test_data.npz")
    a, b = RawData.from_file(train), RawData.from_file(test)
    assert len(a) == 12 and len(b) == 8
    assert not np.array_equal(a.objectGuess, b.objectGuess)
    assert a.metadata["simulation"]["seed"] == 4 and b.metadata["simulation"]["seed"] == 5
