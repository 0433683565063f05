"""Hostile and faulty scan files (issue 17): each gives ``DataError`` (CLI: exit 2, one line)
naming the file, key, expected and found values, before anything large is allocated.

Every case is a real file on disk; the CLI cases run the real ``ptycho`` console script.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cli_run import ptycho

from ptycho_api.errors import DataError
from ptycho_api.rawdata import (
    MAX_COORDINATE,
    MAX_LOAD_BYTES_ENV,
    MIN_PATTERN_SIZE,
    RawData,
)

# Elements a hostile header declares: 4 TB as float32, far beyond any machine's memory, so
# reading it as numpy would either fail with MemoryError or take the machine down.
HUGE_SHAPE = (10**6, 1000, 1000)
# Loading a tiny file with a hostile header must be refused at once; a run that allocated or
# touched the declared terabytes could not finish within it.
QUICK_S = 5.0


def _error_for(path: Path, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        RawData.from_file(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=True)
    return buf.getvalue()


def _hostile_header(descr: str, shape: tuple[int, ...], payload: bytes = b"\0" * 64) -> bytes:
    """A .npy member whose header declares ``shape`` but which holds only ``payload``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue() + payload


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(f"{name}.npy", data)
    return path


# -- array headers: checked before anything is read ------------------------------------------


def test_header_declaring_1e12_elements_is_refused_without_allocating(
    scan_arrays: dict, tmp_path: Path
) -> None:
    members = {k: _npy_bytes(v) for k, v in scan_arrays.items()}
    members["diff3d"] = _hostile_header("<f4", HUGE_SHAPE)
    path = _write_zip(tmp_path / "liar.npz", members)
    start = time.perf_counter()
    message = _error_for(path)
    assert time.perf_counter() - start < QUICK_S
    assert "key 'diff3d'" in message and f"{4 * 10**12:,} bytes" in message
    assert "64 bytes in the archive member" in message


def test_arrays_over_the_memory_budget_are_refused_before_reading(
    scan_arrays: dict, tmp_path: Path
) -> None:
    # 64 MB of zeros compress to ~64 kB: the budget counts what the headers declare, not the
    # file size, so a zip bomb cannot slip through.
    big = np.zeros((1000, 128, 128), np.float32)
    arrays = dict(scan_arrays, diff3d=big, probeGuess=np.ones((128, 128), np.complex64))
    arrays["xcoords"] = arrays["ycoords"] = np.full(1000, 100.0)
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if k != "scan_index"})
    assert path.stat().st_size < 1_000_000
    message = _error_for(path, max_bytes=2**20)
    assert "key 'diff3d'" in message and f"at most {2**20:,} bytes" in message
    assert MAX_LOAD_BYTES_ENV in message and "(1000, 128, 128) float32" in message


def test_object_dtype_is_refused_by_name(scan_arrays: dict, tmp_path: Path) -> None:
    members = {k: _npy_bytes(v) for k, v in scan_arrays.items()}
    members["probeGuess"] = _npy_bytes(np.array([{"evil": 1}], dtype=object))
    message = _error_for(_write_zip(tmp_path / "pickle.npz", members))
    assert "key 'probeGuess'" in message and "dtype object" in message


# -- values that cannot be a measurement -------------------------------------------------------


def test_all_zero_patterns(scan_arrays: dict, write_npz) -> None:
    arrays = dict(scan_arrays, diff3d=np.zeros_like(scan_arrays["diff3d"]))
    message = _error_for(write_npz(**arrays))
    assert "key 'diff3d'" in message and "40 all-zero patterns" in message


def test_patterns_below_the_minimum_size(scan_arrays: dict, write_npz) -> None:
    small = MIN_PATTERN_SIZE - 2  # the next smaller even size
    arrays = dict(
        scan_arrays,
        diff3d=np.ones((40, small, small), np.float32),
        probeGuess=np.ones((small, small), np.complex64),
    )
    message = _error_for(write_npz(**arrays))
    assert f"at least {MIN_PATTERN_SIZE} x {MIN_PATTERN_SIZE}" in message
    assert f"{small} x {small} patterns" in message
    at_minimum = dict(
        arrays,
        diff3d=np.ones((40, MIN_PATTERN_SIZE, MIN_PATTERN_SIZE), np.float32),
        probeGuess=np.ones((MIN_PATTERN_SIZE, MIN_PATTERN_SIZE), np.complex64),
    )
    assert RawData.from_file(write_npz("ok.npz", **at_minimum)).N == MIN_PATTERN_SIZE


@pytest.mark.parametrize(
    ("probe", "found"),
    [
        (np.zeros((16, 16), np.complex64), "an all-zero probe"),
        (np.zeros((0, 16, 16), np.complex64), "shape (0, 16, 16)"),
    ],
    ids=["all-zero", "zero-modes"],
)
def test_zero_or_empty_probe(scan_arrays: dict, write_npz, probe: np.ndarray, found: str) -> None:
    message = _error_for(write_npz(**dict(scan_arrays, probeGuess=probe)))
    assert "key 'probeGuess'" in message and found in message


@pytest.mark.parametrize("key", ["xcoords", "ycoords", "xcoords_start"])
def test_coordinates_beyond_the_bound(scan_arrays: dict, write_npz, key: str) -> None:
    arrays = dict(scan_arrays, xcoords_start=scan_arrays["xcoords"].copy())
    arrays[key] = arrays[key].copy()
    arrays[key][5] = -3e7  # metres-to-nanometres slips look like this
    message = _error_for(write_npz(**arrays))
    assert f"key '{key}'" in message and f"+-{MAX_COORDINATE:g}" in message
    assert "-3e+07 at index 5" in message


# -- paths that are not regular files ----------------------------------------------------------


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "scan.npz"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            RawData.from_file(fifo)
            outcome.append(None)
        except BaseException as exc:  # any outcome is handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(QUICK_S)
    if reader.is_alive():
        # Opening the writing end releases a reader blocked in open(), so the test ends.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(QUICK_S)
        pytest.fail("RawData.from_file blocked on a FIFO")
    assert isinstance(outcome[0], DataError), outcome
    assert "a FIFO" in str(outcome[0]) and str(fifo) in str(outcome[0])


def test_directory_and_device_are_refused(tmp_path: Path) -> None:
    assert "found a directory" in _error_for(tmp_path)
    if Path("/dev/zero").exists() and stat.S_ISCHR(os.stat("/dev/zero").st_mode):
        assert "found a character device" in _error_for(Path("/dev/zero"))


# -- the command line: exit 2 with one line, never a traceback ---------------------------------


def _reconstruction(directory: Path) -> Path:
    """A tiny valid reconstruction.npz, so that ``evaluate`` goes on to read the ground truth."""
    path = directory / "reconstruction.npz"
    np.savez(path, object=np.ones((8, 8), np.complex64), global_offsets=np.zeros((1, 1, 2, 1)), M=8)
    return path


def _assert_one_line_exit_2(res: subprocess.CompletedProcess, *expected: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, res.stderr
    assert all(text in errors[0] for text in expected), res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("huge_header", ["key 'diff3d'", "header declares"]),
        ("all_zero", ["key 'diff3d'", "all-zero patterns"]),
        ("far_coordinates", ["key 'xcoords'", "-3e+07"]),
        ("zero_probe", ["key 'probeGuess'", "all-zero probe"]),
        ("fifo", ["a FIFO"]),
    ],
)
def test_cli_bad_ground_truth_exits_2(
    scan_arrays: dict, tmp_path: Path, case: str, expected: list[str]
) -> None:
    data = tmp_path / "truth.npz"
    if case == "huge_header":
        members = {k: _npy_bytes(v) for k, v in scan_arrays.items()}
        members["diff3d"] = _hostile_header("<f4", HUGE_SHAPE)
        _write_zip(data, members)
    elif case == "fifo":
        os.mkfifo(data)
    else:
        arrays = dict(scan_arrays)
        if case == "all_zero":
            arrays["diff3d"] = np.zeros_like(arrays["diff3d"])
        elif case == "far_coordinates":
            arrays["xcoords"] = np.full(40, -3e7)
        else:
            arrays["probeGuess"] = np.zeros_like(arrays["probeGuess"])
        np.savez(data, **arrays)
    res = ptycho(
        "evaluate",
        "--reconstruction",
        str(_reconstruction(tmp_path)),
        "--ground-truth",
        str(data),
        cwd=tmp_path,
    )
    _assert_one_line_exit_2(res, str(data), *expected)


def test_cli_budget_from_the_environment(scan_arrays: dict, tmp_path: Path) -> None:
    np.savez(tmp_path / "truth.npz", **scan_arrays)
    # The scan's arrays take about 60 kB; 10 kB is below them but above the reconstruction's.
    res = ptycho(
        "evaluate",
        "--reconstruction",
        str(_reconstruction(tmp_path)),
        "--ground-truth",
        "truth.npz",
        cwd=tmp_path,
        env={MAX_LOAD_BYTES_ENV: "1e4"},
    )
    _assert_one_line_exit_2(res, "truth.npz", "at most 10,000 bytes")
    res = ptycho(
        "evaluate",
        "--reconstruction",
        "reconstruction.npz",
        "--ground-truth",
        "truth.npz",
        cwd=tmp_path,
        env={MAX_LOAD_BYTES_ENV: "lots"},
    )
    _assert_one_line_exit_2(res, MAX_LOAD_BYTES_ENV, "'lots'")


def test_cli_probe_file_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "probe.npz")
    res = ptycho("simulate", "--output", "o.npz", "--probe-file", "probe.npz", cwd=tmp_path)
    _assert_one_line_exit_2(res, "probe.npz", "a FIFO")
