"""``ptycho convert`` and ``ptycho_api.hdf5``: HDF5 beamline scans (positions in metres, raw
uint16 counts, a bad-pixel mask) become the contract NPZ the equivalent hand-made NPZ is."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from cli_run import SRC, ptycho

from ptycho_api.hdf5 import HC_EV_M, object_pixel_size, read_hdf5_scan
from ptycho_api.rawdata import RawData
from ptycho_api.simulation import simulate_dataset

h5py = pytest.importorskip("h5py")

WAVELENGTH = 1.5e-10
"""Metres (8.27 keV)."""
DISTANCE = 2.0
"""Sample-detector distance, metres."""
DETECTOR_PIXEL = 75e-6
"""Detector pixel, metres (a Pilatus / Eiger pixel)."""
N = 64


def beamline_scan(directory: Path, *, positions_unit: str = "m") -> dict[str, Path]:
    """Write ``scan.h5`` (positions in metres, uint16 counts with hot bad pixels, a mask) and
    ``equivalent.npz`` (the same scan by hand: pixel positions, masked counts as uint16)."""
    raw = simulate_dataset(48, N=N, nphotons=1e4, seed=11)
    s = raw.metadata["simulation"]["s_sim"]
    counts = np.round((raw.diff3d.astype(np.float64) * s) ** 2).astype(np.uint16)
    mask = np.zeros((N, N), dtype=np.uint8)
    mask[5, 7] = mask[40, 3] = mask[N // 2, N // 2 + 9] = 1  # dead / hot detector pixels
    hot = counts.copy()
    hot[:, mask != 0] = 65535  # what a hot pixel reads; the mask must remove it
    pixel = object_pixel_size(WAVELENGTH, DISTANCE, DETECTOR_PIXEL, N)
    scale = pixel if positions_unit == "m" else 1.0
    h5 = directory / "scan.h5"
    with h5py.File(h5, "w") as f:
        f["entry/data/counts"] = hot
        f["entry/scan/x"] = raw.xcoords * scale
        f["entry/scan/y"] = raw.ycoords * scale
        f["entry/probe"] = raw.probeGuess
        f["entry/detector/bad_pixels"] = mask
    masked = counts.copy()
    masked[:, mask != 0] = 0
    npz = directory / "equivalent.npz"
    np.savez(
        npz, diff3d=masked, xcoords=raw.xcoords, ycoords=raw.ycoords, probeGuess=raw.probeGuess
    )
    return {"h5": h5, "npz": npz, "mask": mask != 0, "counts": masked}


CONVERT = (
    "--diffraction-key",
    "entry/data/counts",
    "--x-key",
    "entry/scan/x",
    "--y-key",
    "entry/scan/y",
    "--probe-key",
    "entry/probe",
    "--mask-key",
    "entry/detector/bad_pixels",
)
GEOMETRY = (
    "--positions-unit",
    "m",
    "--wavelength-m",
    str(WAVELENGTH),
    "--distance-m",
    str(DISTANCE),
    "--detector-pixel-m",
    str(DETECTOR_PIXEL),
)


def test_convert_writes_the_equivalent_npz(tmp_path):
    files = beamline_scan(tmp_path)
    res = ptycho("convert", "scan.h5", "scan.npz", *CONVERT, *GEOMETRY, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    pixel = WAVELENGTH * DISTANCE / (N * DETECTOR_PIXEL)
    assert f"object pixel: {pixel:.4g} m" in res.stdout
    assert "bad pixels:   3 set to 0 (key 'bad_pixels')" in res.stdout
    mean_counts = files["counts"].sum(axis=(1, 2), dtype=np.float64).mean()
    assert f"train with --nphotons {mean_counts:.4g}" in res.stdout
    converted = RawData.from_file(tmp_path / "scan.npz")
    equivalent = RawData.from_file(files["npz"])
    np.testing.assert_array_equal(converted.diff3d, equivalent.diff3d)
    np.testing.assert_allclose(converted.xcoords, equivalent.xcoords, rtol=1e-12)
    np.testing.assert_allclose(converted.ycoords, equivalent.ycoords, rtol=1e-12)
    np.testing.assert_array_equal(converted.probeGuess, equivalent.probeGuess)
    with np.load(tmp_path / "scan.npz") as npz:
        np.testing.assert_array_equal(npz["bad_pixels"], files["mask"])
        meta = json.loads(str(npz["_metadata"]))
    physics = meta["physics_parameters"]
    assert physics["object_pixel_m"] == pytest.approx(pixel, rel=1e-12)
    assert physics["nphotons"] == pytest.approx(mean_counts)
    assert meta["bad_pixels"] == 3 and meta["positions_unit"] == "m"


def test_energy_gives_the_wavelength_and_pixel_positions_need_no_geometry(tmp_path):
    files = beamline_scan(tmp_path, positions_unit="px")
    scan = read_hdf5_scan(
        files["h5"],
        diffraction_key="entry/data/counts",
        x_key="entry/scan/x",
        y_key="entry/scan/y",
        probe_key="entry/probe",
    )
    assert scan.object_pixel_m is None and scan.bad_pixels is None
    np.testing.assert_array_equal(scan.raw.xcoords, RawData.from_file(files["npz"]).xcoords)
    assert object_pixel_size(HC_EV_M / 8000.0, DISTANCE, DETECTOR_PIXEL, N) == pytest.approx(
        HC_EV_M / 8000.0 * DISTANCE / (N * DETECTOR_PIXEL)
    )


def one_line_error(res) -> str:
    """The exit-2 message: one error line on stderr (after any INFO lines), no traceback."""
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("ptycho convert: error: "), res.stderr
    return lines[0]


def test_metre_positions_read_as_pixels_are_refused(tmp_path):
    """The issue's unit mistake through the CLI: metres without --positions-unit m."""
    beamline_scan(tmp_path)
    line = one_line_error(ptycho("convert", "scan.h5", "scan.npz", *CONVERT, cwd=tmp_path))
    assert "scan.h5: scan extent" in line and "expected at least 1 object pixel" in line
    assert "--positions-unit m" in line
    assert not (tmp_path / "scan.npz").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--positions-unit", "m"), "positions in metres: expected the wavelength"),
        (("--mask-key", "entry/nothing"), "dataset 'entry/nothing': expected a dataset of numbers"),
        (("--x-key", "entry/scan"), "found a Group, not a dataset"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, extra, expected):
    beamline_scan(tmp_path)
    line = one_line_error(ptycho("convert", "scan.h5", "o.npz", *CONVERT, *extra, cwd=tmp_path))
    assert expected in line


def test_declared_sizes_are_checked_against_the_budget_before_reading(tmp_path):
    beamline_scan(tmp_path)
    res = ptycho(
        "convert",
        "scan.h5",
        "o.npz",
        *CONVERT,
        *GEOMETRY,
        cwd=tmp_path,
        env={"PTYCHO_MAX_LOAD_BYTES": "100000"},
    )
    line = one_line_error(res)
    assert "dataset 'entry/data/counts': expected datasets of at most 100,000 bytes" in line
    assert f"shape (48, {N}, {N}) uint16" in line


def test_not_hdf5_and_existing_output_are_refused(tmp_path):
    (tmp_path / "fake.h5").write_bytes(b"not an hdf5 file at all")
    line = one_line_error(ptycho("convert", "fake.h5", "o.npz", cwd=tmp_path))
    assert "fake.h5: expected an HDF5 file" in line
    beamline_scan(tmp_path)
    (tmp_path / "o.npz").write_bytes(b"x")
    line = one_line_error(ptycho("convert", "scan.h5", "o.npz", *CONVERT, *GEOMETRY, cwd=tmp_path))
    assert "o.npz: expected a new output file" in line and "--overwrite" in line


def test_missing_h5py_names_the_extra(tmp_path):
    """An h5py that fails to import (a stand-in package first on the path) gives the extra."""
    blocker = tmp_path / "blocked" / "h5py"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('h5py is not installed here')\n")
    (tmp_path / "scan.h5").write_bytes(b"")
    res = ptycho(
        "convert",
        "scan.h5",
        "o.npz",
        cwd=tmp_path,
        env={"PYTHONPATH": os.pathsep.join([str(blocker.parent), SRC])},
    )
    line = one_line_error(res)
    assert "scan.h5: reading HDF5 needs h5py" in line
    assert "pip install 'ptycho-api[hdf5]'" in line
