"""Normalisation, intensity scale and ``PtychoDataContainer`` (B 5, decisions 3 and 11)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptycho_api import (
    ConfigError,
    DataError,
    InferenceConfig,
    ModelConfig,
    PtychoDataContainer,
    RawData,
    TrainingConfig,
    create_ptycho_data_container,
    params,
)
from ptycho_api.normalization import intensity_scale, normalize_data


def _training(gridsize: int = 1, **kwargs: object) -> TrainingConfig:
    return TrainingConfig(model=ModelConfig(N=16, gridsize=gridsize), **kwargs)


def test_intensity_scale_golden_values() -> None:
    # B 15 quotes 4 decimals: half a unit of the last digit.
    assert abs(intensity_scale(1e9, 64) - 988.2118) < 5e-5
    assert abs(intensity_scale(1e9, 128) - 494.1059) < 5e-5


@pytest.mark.parametrize("gridsize", [1, 2])
def test_normalisation_sets_mean_energy(raw: RawData, gridsize: int) -> None:
    g = raw.generate_grouped_data(16, K=6, nsamples=30, gridsize=gridsize, seed=0)
    X = g["X_full"].astype(np.float64)
    # B 5.1: mean over all B*C patterns of sum X^2 = (N/2)^2. float32 storage of X: 1e-6 relative.
    assert abs(np.mean(np.sum(X**2, axis=(1, 2))) / 64.0 - 1.0) < 1e-6
    # A pure rescaling of the file's amplitudes (float32 rounding: 1e-6 relative).
    ratio = g["X_full"] / np.where(g["diffraction"] > 0, g["diffraction"], np.nan)
    assert np.nanmax(ratio) / np.nanmin(ratio) - 1 < 1e-6


def test_normalize_data_is_scale_invariant() -> None:
    rng = np.random.default_rng(0)
    d = rng.uniform(0, 1, (4, 8, 8, 2)).astype(np.float32)
    # Multiplying the input by a power of two is exact, so the outputs agree bit for bit.
    np.testing.assert_array_equal(normalize_data(d), normalize_data(d * 1024))


@pytest.mark.parametrize("gridsize", [1, 2])
def test_container_fields(raw: RawData, gridsize: int) -> None:
    C = gridsize**2
    config = _training(gridsize, n_groups=12, neighbor_count=6, seed=3, nphotons=1e6)
    c = create_ptycho_data_container(raw, config)
    assert isinstance(c, PtychoDataContainer) and len(c) == 12 and c.n_channels == C
    assert c.X.shape == (12, 16, 16, C) and c.X.dtype == np.float32
    assert c.local_offsets.shape == (12, 1, 2, C) and c.local_offsets.dtype == np.float32
    assert c.coords_nominal.dtype == np.float32 and c.coords is c.coords_nominal
    assert c.global_offsets.shape == (12, 1, 2, 1) and c.global_offsets.dtype == np.float64
    assert c.probe.shape == (16, 16) and c.probe.dtype == np.complex64
    assert c.nn_indices.shape == (12, C) and c.has_ground_truth
    # s = sqrt(1e6) / 8 = 125; norm_Y_I from the normalised data equals it to float32 rounding.
    assert c.intensity_scale == 125.0
    assert abs(c.norm_Y_I / c.intensity_scale - 1) < 1e-6
    g = raw.generate_grouped_data(16, K=6, nsamples=12, gridsize=gridsize, seed=3)
    np.testing.assert_array_equal(c.X, g["X_full"])
    np.testing.assert_array_equal(c.local_offsets, g["coords_relative"].astype(np.float32))
    np.testing.assert_array_equal(c.global_offsets, g["coords_offsets"])
    np.testing.assert_array_equal(c.probe, raw.probeGuess)
    # Y round trip through amplitude/phase in float32: 1e-6 absolute on O(1) values.
    np.testing.assert_allclose(c.Y, g["Y"], atol=1e-6)


def test_container_without_ground_truth_has_placeholders(raw: RawData) -> None:
    raw.objectGuess = None
    c = create_ptycho_data_container(raw, _training(n_groups=5, seed=0))
    assert not c.has_ground_truth
    assert np.all(c.Y_I == 1) and np.all(c.Y_phi == 0)


def test_container_from_grouped_dict_and_inference_config(
    raw: RawData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(params.cfg, "nphotons", 4e6)
    config = InferenceConfig(model=ModelConfig(N=16, gridsize=1), seed=0)
    c = create_ptycho_data_container(raw, config)
    assert len(c) == len(raw)  # n_groups None: one group per scan point
    assert c.intensity_scale == 250.0  # sqrt(4e6) / 8, from params.cfg
    grouped = raw.generate_grouped_data(16, K=4, nsamples=9, gridsize=1, seed=1)
    from_dict = create_ptycho_data_container(grouped, config, nphotons=1e6)
    assert len(from_dict) == 9 and from_dict.intensity_scale == 125.0


def test_same_seed_same_container(raw: RawData) -> None:
    config = _training(2, n_groups=10, neighbor_count=5, seed=7)
    a = create_ptycho_data_container(raw, config)
    b = create_ptycho_data_container(raw, config)
    np.testing.assert_array_equal(a.nn_indices, b.nn_indices)
    np.testing.assert_array_equal(a.X, b.X)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_evaluation_grouping_caps_n_groups_at_the_scan(
    raw: RawData, gridsize: int, caplog: pytest.LogCaptureFixture
) -> None:
    positions = len(raw.xcoords)
    asked = _training(gridsize, n_groups=positions + 50, neighbor_count=5, seed=3)
    capped = _training(gridsize, n_groups=positions, neighbor_count=5, seed=3)
    with caplog.at_level("WARNING", logger="ptycho_api"):
        got = create_ptycho_data_container(raw, asked, evaluation=True)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    want = create_ptycho_data_container(raw, capped)
    assert len(got) == positions
    np.testing.assert_array_equal(got.nn_indices, want.nn_indices)
    np.testing.assert_array_equal(got.X, want.X)
    # Training data follow the same rule for every gridsize: capped at one group per position,
    # with a warning (oversampling only when enabled).
    caplog.clear()
    with caplog.at_level("WARNING", logger="ptycho_api"):
        trained = create_ptycho_data_container(raw, asked)
    np.testing.assert_array_equal(trained.nn_indices, want.nn_indices)
    assert [r for r in caplog.records if "groups requested" in r.getMessage()]


@pytest.mark.parametrize("gridsize", [1, 2])
def test_evaluation_grouping_covers_the_whole_scan(raw: RawData, gridsize: int) -> None:
    # A training n_groups smaller than the test scan must not leave parts of it unreconstructed.
    positions = len(raw.xcoords)
    few = _training(gridsize, n_groups=10, neighbor_count=5, seed=3)
    every = _training(gridsize, n_groups=positions, neighbor_count=5, seed=3)
    got = create_ptycho_data_container(raw, few, evaluation=True)
    want = create_ptycho_data_container(raw, every)
    assert len(got) == positions
    np.testing.assert_array_equal(got.nn_indices, want.nn_indices)


def test_config_and_data_must_agree(raw: RawData) -> None:
    grouped = raw.generate_grouped_data(16, K=4, nsamples=4, gridsize=1, seed=0)
    with pytest.raises(DataError, match="expected N = 64 and C = gridsize\\*\\*2 = 1"):
        create_ptycho_data_container(grouped, TrainingConfig(model=ModelConfig(N=64)))
    with pytest.raises(ConfigError, match="TrainingConfig or InferenceConfig"):
        create_ptycho_data_container(raw, ModelConfig(N=16))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="RawData or a grouped-data dict"):
        create_ptycho_data_container([1, 2], _training())  # type: ignore[arg-type]


def test_container_rejects_inconsistent_arrays(raw: RawData) -> None:
    c = create_ptycho_data_container(raw, _training(n_groups=4, seed=0))
    with pytest.raises(DataError, match="local_offsets: expected shape \\(4, 1, 2, 1\\) float32"):
        PtychoDataContainer(**{**c.__dict__, "local_offsets": c.local_offsets.astype(np.float64)})


def test_to_npz(raw: RawData, tmp_path: Path) -> None:
    c = create_ptycho_data_container(raw, _training(n_groups=4, seed=0))
    with np.load(c.to_npz(tmp_path / "container.npz")) as saved:
        np.testing.assert_array_equal(saved["X"], c.X)
        np.testing.assert_array_equal(saved["global_offsets"], c.global_offsets)
        assert float(saved["intensity_scale"]) == c.intensity_scale
