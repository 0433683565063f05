"""Plausibility checks (issue 16): positions in the wrong unit, intensities read as amplitudes,
out-of-range stitched amplitudes, holes in the scanned region. Each message names the file, the
quantity, the expected and the found value."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from ptycho_api.cli.outputs import coverage_mask, write_reconstruction
from ptycho_api.errors import DataError
from ptycho_api.plausibility import (
    INTENSITY_RANGE_RATIO,
    MIN_SCAN_EXTENT_PX,
    amplitude_limit,
    check_raw,
    check_reconstruction,
    check_scan,
    classify_patterns,
    resolve_data_kind,
)
from ptycho_api.probe import defocused_probe
from ptycho_api.rawdata import RawData
from ptycho_api.simulation import simulate_dataset


@pytest.fixture(scope="module")
def simulated() -> RawData:
    """A noisy simulated scan (amplitudes sqrt(counts) / s_sim), 64 x 64 patterns."""
    return simulate_dataset(48, N=64, nphotons=1e6, seed=4)


def write(raw: RawData, path: Path, **changes: np.ndarray) -> Path:
    """``raw`` as an NPZ with some arrays replaced."""
    arrays = {
        "diff3d": raw.diff3d,
        "probeGuess": raw.probeGuess,
        "xcoords": raw.xcoords,
        "ycoords": raw.ycoords,
        "objectGuess": raw.objectGuess,
    }
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


# -- positions -------------------------------------------------------------------------------


def test_positions_in_metres_are_refused_naming_file_quantity_expected_found(simulated, tmp_path):
    """The issue's case: pixel positions * 1e-8 (metres read as pixels) must not reconstruct."""
    path = write(
        simulated,
        tmp_path / "metres.npz",
        xcoords=simulated.xcoords * 1e-8,
        ycoords=simulated.ycoords * 1e-8,
    )
    raw = RawData.from_file(path)  # the contract itself holds: finite numbers
    with pytest.raises(DataError) as info:
        check_raw(raw)
    message = str(info.value)
    extent = max(np.ptp(raw.xcoords), np.ptp(raw.ycoords))
    assert str(path) in message
    assert "scan extent" in message
    assert f"expected at least {MIN_SCAN_EXTENT_PX:g} object pixel" in message
    assert f"found {extent:.3g} pixels" in message
    assert "metres" in message


def test_plausible_scans_pass_and_single_positions_are_not_scans(simulated):
    check_raw(simulated)
    check_scan(np.zeros(1), np.zeros(1), 64)  # one position: nothing to compare


def test_scan_steps_wider_than_a_pattern_warn(caplog):
    x = np.arange(10) * 500.0  # nanometres given as pixels: 500 px steps for N = 64
    with caplog.at_level(logging.WARNING, logger="ptycho_api.plausibility"):
        check_scan(x, np.zeros(10), 64, source="nm.npz")
    (record,) = caplog.records
    assert "nm.npz" in record.message and "expected at most the pattern width 64" in record.message
    assert "found 500 pixels" in record.message


def test_positions_outside_the_object_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="ptycho_api.plausibility"):
        check_scan(np.array([10.0, 30, 300]), np.array([10.0, 30, 20]), 16, object_shape=(64, 64))
    assert "found 1 of 3 outside" in caplog.text


# -- amplitudes versus intensities ---------------------------------------------------------


@pytest.mark.parametrize("nphotons", [1e3, 1e6, 1e9])
@pytest.mark.parametrize("probe", ["default", "defocused"])
def test_simulated_amplitudes_and_their_squares_are_told_apart(nphotons, probe):
    """Noisy amplitudes sqrt(k)/s are amplitudes, their squares k/s^2 counts, at every flux."""
    raw = simulate_dataset(
        16,
        N=64,
        nphotons=nphotons,
        seed=1,
        probe=defocused_probe(64) if probe == "defocused" else None,
    )
    assert classify_patterns(raw.diff3d)[0] == "amplitudes"
    squares = (raw.diff3d.astype(np.float64) ** 2).astype(np.float32)
    assert classify_patterns(squares)[0] == "counts"


def test_noiseless_intensities_fall_back_to_the_dynamic_range():
    raw = simulate_dataset(16, N=64, seed=1, poisson_noise=False)
    kind, reason = classify_patterns(raw.diff3d.astype(np.float64) ** 2)
    assert kind == "intensity-like" and f"> {INTENSITY_RANGE_RATIO:g}" in reason
    assert classify_patterns(raw.diff3d)[0] == "unknown"


def test_float_intensities_are_refused_until_stated(simulated, tmp_path):
    """The issue's case: float32 intensities (amplitudes squared) read as amplitudes."""
    intensities = (simulated.diff3d.astype(np.float64) ** 2).astype(np.float32)
    path = write(simulated, tmp_path / "intensities.npz", diff3d=intensities)
    with pytest.raises(DataError) as info:
        RawData.from_file(path)
    message = str(info.value)
    assert str(path) in message and "key 'diff3d'" in message
    assert "expected float amplitudes (sqrt of counts)" in message
    assert "look like counts or intensities" in message and "--data-kind" in message
    # Stating the convention overrides the heuristic both ways.
    raw = RawData.from_file(path, data_kind="intensities")
    np.testing.assert_allclose(raw.diff3d, simulated.diff3d, rtol=1e-6, atol=1e-7)
    kept = RawData.from_file(path, data_kind="amplitudes")
    np.testing.assert_array_equal(kept.diff3d, intensities)


def test_float_counts_and_integer_counts_agree(simulated, tmp_path):
    s = simulated.metadata["simulation"]["s_sim"]
    counts = np.round((simulated.diff3d.astype(np.float64) * s) ** 2)
    as_int = RawData.from_file(
        write(simulated, tmp_path / "i.npz", diff3d=counts.astype(np.uint32))
    )
    as_float = RawData.from_file(
        write(simulated, tmp_path / "f.npz", diff3d=counts.astype(np.float32)), data_kind="counts"
    )
    np.testing.assert_array_equal(as_int.diff3d, as_float.diff3d)


def test_amplitudes_and_ambiguous_floats_load_as_before(simulated, tmp_path):
    assert resolve_data_kind(simulated.diff3d) == "amplitudes"
    ones = np.ones((4, 16, 16), dtype=np.float32)  # counts 0/1 have equal amplitudes
    assert resolve_data_kind(ones) == "amplitudes"
    assert resolve_data_kind(ones.astype(np.uint8)) == "counts"
    with pytest.raises(DataError, match="data kind: expected one of auto, counts"):
        resolve_data_kind(ones, "photons")


# -- stitched results ----------------------------------------------------------------------


def grid_offsets(step: float, n: int = 5) -> np.ndarray:
    """``(n*n, 2)`` [x, y] positions of a square raster with ``step`` pixels."""
    g = np.arange(n) * step + 100.25
    return np.array([(x, y) for y in g for x in g])


def test_out_of_range_stitched_amplitude_warns_naming_the_file(tmp_path, caplog):
    """The issue's case: a sigmoid amplitude head (<= 1) stitched to a hot pixel of 61.9."""
    offsets, M = grid_offsets(10.0), 20
    shape = coverage_mask(offsets, M).shape
    canvas = np.full(shape, 0.5 + 0.1j, dtype=np.complex64)
    canvas[shape[0] // 2, shape[1] // 2] = 61.9
    with caplog.at_level(logging.WARNING, logger="ptycho_api.plausibility"):
        write_reconstruction(tmp_path, canvas, offsets, M, amplitude_max=amplitude_limit("sigmoid"))
    (record,) = caplog.records
    assert str(tmp_path / "reconstruction.npz") in record.message
    assert "stitched amplitude: expected at most 1" in record.message
    assert "found 61.9 at its maximum, 1 pixel(s) above" in record.message
    assert (tmp_path / "reconstruction.npz").exists()  # a warning: the result is still written


def test_unbounded_heads_and_in_range_amplitudes_are_quiet(caplog):
    offsets, M = grid_offsets(10.0), 20
    coverage = coverage_mask(offsets, M)
    image = np.full(coverage.shape, 1.0005, dtype=np.complex64)  # rounding slack
    with caplog.at_level(logging.WARNING, logger="ptycho_api.plausibility"):
        check_reconstruction(image, coverage, offsets, M, amplitude_max=1.0)
        check_reconstruction(image * 50, coverage, offsets, M, amplitude_max=None)
    assert amplitude_limit("swish") is None
    assert caplog.records == []


@pytest.mark.parametrize(("step", "holes"), [(10.0, 0), (20.0, 0), (30.0, 1)])
def test_holes_inside_the_scanned_region_warn(step, holes, caplog):
    """Raster steps up to M tile the region; a 30-pixel step with M = 20 leaves stripes."""
    offsets, M = grid_offsets(step), 20
    coverage = coverage_mask(offsets, M)
    image = np.where(coverage, 0.5, 0).astype(np.complex64)
    with caplog.at_level(logging.WARNING, logger="ptycho_api.plausibility"):
        found = check_reconstruction(image, coverage, offsets, M, source="recon.npz")
    assert found["holes"] == holes
    if holes:
        (record,) = caplog.records
        assert "recon.npz: coverage inside the scanned region: expected no uncovered pixels" in (
            record.message
        )
        assert f"{int(found['hole_pixels'])} pixel(s)" in record.message
    else:
        assert caplog.records == []


def test_an_enclosed_hole_in_a_dense_scan_warns(caplog):
    """One position missing from a dense raster: its uncovered square is enclosed."""
    offsets, M = grid_offsets(20.0, n=5), 20
    offsets = np.delete(offsets, 12, axis=0)  # the centre of the 5 x 5 raster
    coverage = coverage_mask(offsets, M)
    with caplog.at_level(logging.WARNING, logger="ptycho_api.plausibility"):
        found = check_reconstruction(np.ones(coverage.shape), coverage, offsets, M)
    assert found["holes"] == 1 and found["hole_pixels"] >= (M - 2) ** 2
