"""``RawData``: the NPZ contract (B 2) and decision 7; one test per kind of bad input."""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ptycho_api import DataError, RawData

WriteNpz = Callable[..., Path]


def _error_for(path: Path) -> str:
    with pytest.raises(DataError) as info:
        RawData.from_file(path)
    message = str(info.value)
    assert str(path) in message and "expected" in message and "found" in message
    return message


# -- valid input --------------------------------------------------------------------------------


def test_round_trip_preserves_every_array(raw: RawData, tmp_path: Path) -> None:
    raw.metadata = {"physics_parameters": {"nphotons": 1e6}}
    path = raw.to_file(tmp_path / "out.npz")
    back = RawData.from_file(path)
    for key in ("diff3d", "probeGuess", "xcoords", "ycoords", "xcoords_start", "ycoords_start"):
        np.testing.assert_array_equal(getattr(back, key), getattr(raw, key))
    np.testing.assert_array_equal(back.scan_index, raw.scan_index)
    np.testing.assert_array_equal(back.objectGuess, raw.objectGuess)
    assert back.Y is None and back.metadata == raw.metadata
    assert back.diff3d.dtype == np.float32 and back.probeGuess.dtype == np.complex64
    assert back.xcoords.dtype == np.float64 and back.N == 16 and len(back) == 40
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no temporary left behind


@pytest.mark.parametrize(
    ("compress", "method"), [(True, zipfile.ZIP_DEFLATED), (False, zipfile.ZIP_STORED)]
)
def test_written_npz_is_a_plain_numpy_archive(
    raw: RawData, tmp_path: Path, compress: bool, method: int
) -> None:
    # Any NPZ reader (numpy's own, without pickle) gets the same arrays; each member is
    # deflated or stored as asked.
    path = raw.to_file(tmp_path / "out.npz", compress=compress)
    with zipfile.ZipFile(path) as archive:
        kinds = {info.compress_type for info in archive.infolist()}
    assert kinds == {method}
    with np.load(path, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["diff3d"], raw.diff3d)
        np.testing.assert_array_equal(data["objectGuess"], raw.objectGuess)
        assert "diff3d.npy" not in data.files and "scan_index" in data.files


def test_object_arrays_are_refused_before_anything_is_written(raw: RawData, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"extra arrays \['notes'\].*found Python objects"):
        raw.to_file(tmp_path / "out.npz", extra={"notes": np.array([{"a": 1}], dtype=object)})
    assert list(tmp_path.iterdir()) == []


def test_diffraction_key_and_optional_keys(scan_arrays: dict, write_npz: WriteNpz) -> None:
    arrays = dict(scan_arrays)
    arrays["diffraction"] = arrays.pop("diff3d")[..., None]  # (M, N, N, 1) accepted
    del arrays["scan_index"], arrays["objectGuess"]
    arrays["Y"] = np.ones((40, 16, 16, 1), dtype=np.complex64)
    arrays["bad_pixels"] = np.zeros((16, 16), dtype=bool)  # Ptychodus' extra key is ignored
    data = RawData.from_file(write_npz(**arrays))
    assert data.diff3d.shape == (40, 16, 16)
    np.testing.assert_array_equal(data.scan_index, np.zeros(40, dtype=np.int64))
    np.testing.assert_array_equal(data.xcoords_start, data.xcoords)
    assert data.objectGuess is None and data.Y.shape == (40, 16, 16)


def test_integer_counts_are_square_rooted(
    scan_arrays: dict, caplog: pytest.LogCaptureFixture
) -> None:
    counts = np.random.default_rng(0).poisson(9.0, (40, 16, 16)).astype(np.uint16)
    a = scan_arrays
    with caplog.at_level(logging.INFO, logger="ptycho_api.rawdata"):
        data = RawData.from_coords_without_pc(
            a["xcoords"], a["ycoords"], counts, a["probeGuess"], a["scan_index"]
        )
    # sqrt of integers in float64, rounded once to float32: exact to float32 rounding.
    np.testing.assert_allclose(data.diff3d, np.sqrt(counts.astype(np.float64)), rtol=1e-7)
    assert data.diff3d.dtype == np.float32
    assert sum("photon counts" in r.getMessage() for r in caplog.records) == 1


def test_modes_probe_uses_mode_zero(scan_arrays: dict, caplog: pytest.LogCaptureFixture) -> None:
    a = scan_arrays
    modes = np.stack([a["probeGuess"], 2 * a["probeGuess"], 3 * a["probeGuess"]])
    with caplog.at_level(logging.WARNING, logger="ptycho_api.rawdata"):
        data = RawData.from_coords_without_pc(
            a["xcoords"], a["ycoords"], a["diff3d"], modes, a["scan_index"]
        )
    np.testing.assert_array_equal(data.probeGuess, a["probeGuess"])
    assert any("3 modes" in r.getMessage() for r in caplog.records)
    single = RawData.from_coords_without_pc(
        a["xcoords"], a["ycoords"], a["diff3d"], modes[:1], a["scan_index"]
    )
    np.testing.assert_array_equal(single.probeGuess, a["probeGuess"])


def test_pickled_metadata_is_ignored_not_unpickled(scan_arrays: dict, write_npz: WriteNpz) -> None:
    path = write_npz(**scan_arrays, _metadata=np.array({"x": 1}, dtype=object))
    assert RawData.from_file(path).metadata is None


def test_json_metadata_is_read(scan_arrays: dict, write_npz: WriteNpz) -> None:
    meta = {"physics_parameters": {"nphotons": 1e7}}
    path = write_npz(**scan_arrays, _metadata=np.array(json.dumps(meta)))
    assert RawData.from_file(path).metadata == meta


# -- one test per violation ------------------------------------------------------------------


def test_missing_key(scan_arrays: dict, write_npz: WriteNpz) -> None:
    arrays = dict(scan_arrays)
    del arrays["probeGuess"]
    message = _error_for(write_npz(**arrays))
    assert "'probeGuess'" in message and "found keys" in message


def test_missing_diffraction_key(scan_arrays: dict, write_npz: WriteNpz) -> None:
    arrays = dict(scan_arrays)
    del arrays["diff3d"]
    assert "'diff3d or diffraction'" in _error_for(write_npz(**arrays))


def test_wrong_ndim(scan_arrays: dict, write_npz: WriteNpz) -> None:
    arrays = dict(scan_arrays, diff3d=scan_arrays["diff3d"][0])
    message = _error_for(write_npz(**arrays))
    assert "key 'diff3d'" in message and "(M, N, N)" in message and "(16, 16)" in message


def test_non_square_patterns(scan_arrays: dict, write_npz: WriteNpz) -> None:
    arrays = dict(scan_arrays, diff3d=scan_arrays["diff3d"][:, :, :12])
    message = _error_for(write_npz(**arrays))
    assert "square patterns" in message and "16 x 12" in message


def test_length_mismatch(scan_arrays: dict, write_npz: WriteNpz) -> None:
    arrays = dict(scan_arrays, ycoords=scan_arrays["ycoords"][:-1])
    message = _error_for(write_npz(**arrays))
    assert "key 'ycoords'" in message and "length M = 40" in message and "length 39" in message


def test_nan_in_patterns(scan_arrays: dict, write_npz: WriteNpz) -> None:
    diff = scan_arrays["diff3d"].copy()
    diff[3, 4, 5] = np.nan
    message = _error_for(write_npz(**dict(scan_arrays, diff3d=diff)))
    assert "key 'diff3d'" in message and "finite" in message and "(3, 4, 5)" in message


def test_inf_in_coordinates(scan_arrays: dict, write_npz: WriteNpz) -> None:
    x = scan_arrays["xcoords"].copy()
    x[7] = np.inf
    message = _error_for(write_npz(**dict(scan_arrays, xcoords=x)))
    assert "key 'xcoords'" in message and "inf at index (7,)" in message


def test_negative_values(scan_arrays: dict, write_npz: WriteNpz) -> None:
    diff = scan_arrays["diff3d"].copy()
    diff[2, 1, 0] = -0.5
    message = _error_for(write_npz(**dict(scan_arrays, diff3d=diff)))
    assert "non-negative" in message and "-0.5 at pattern 2, pixel (1, 0)" in message


def test_probe_size_differs_from_pattern_size(scan_arrays: dict, write_npz: WriteNpz) -> None:
    arrays = dict(scan_arrays, probeGuess=np.ones((32, 32), dtype=np.complex64))
    message = _error_for(write_npz(**arrays))
    assert "key 'probeGuess'" in message and "(16, 16)" in message and "32 x 32" in message


def test_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "notes.npz"
    path.write_text("this is not a numpy archive\n")
    assert "expected an NPZ archive" in _error_for(path)


def test_truncated_and_corrupt_npz(scan_arrays: dict, write_npz: WriteNpz, tmp_path: Path) -> None:
    data = write_npz(**scan_arrays).read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    assert "damaged or truncated zip" in _error_for(truncated)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(data[:2000] + b"x" * 100 + data[2100:])  # inside the first member
    assert "unreadable member" in _error_for(corrupt)


def test_single_npy_array_is_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "patterns.npy"
    np.save(path, np.ones((3, 4, 4)))
    assert "single .npy array" in _error_for(path)


def test_unreadable_file(tmp_path: Path) -> None:
    assert "cannot read" in _error_for(tmp_path / "does_not_exist.npz")
    assert "cannot read" in _error_for(tmp_path)  # a directory


def test_arrays_source_is_named_for_in_memory_input(scan_arrays: dict) -> None:
    a = scan_arrays
    with pytest.raises(DataError, match=r"<arrays>: key 'diff3d': expected non-negative"):
        RawData.from_coords_without_pc(
            a["xcoords"], a["ycoords"], -a["diff3d"] - 1, a["probeGuess"], a["scan_index"]
        )
