"""Square-shaped groups of a random scan (``square_groups``, ``ptycho group``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from cli_run import ptycho
from conftest import make_scan_arrays

from ptycho_api import DataError, RawData
from ptycho_api.grouping import square_groups


def _lattice(pitch: float, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions on a square lattice, row after row: index = row * side + column."""
    rows, cols = np.divmod(np.arange(side * side), side)
    return cols * pitch, rows * pitch


def test_on_a_lattice_the_members_are_the_square_corners_in_raster_order() -> None:
    # Lattice pitch 2 px, square spacing 4 px: the corners of position (row 5, column 5) are
    # the lattice points at rows 4 and 6, columns 4 and 6, each exactly on its place, in the
    # order top-left, top-right, bottom-left, bottom-right (x = column, y = row).
    x, y = _lattice(2.0, 10)
    groups = square_groups(x, y, 2, spacing=4.0)
    assert groups.shape == (100, 4) and groups.dtype == np.int64
    np.testing.assert_array_equal(groups[55], [44, 46, 64, 66])
    # gridsize 3 at spacing 2: the 3 x 3 block around (row 5, column 5), raster order
    groups = square_groups(x, y, 3, spacing=2.0)
    np.testing.assert_array_equal(groups[55], [44, 45, 46, 54, 55, 56, 64, 65, 66])


def test_members_are_distinct_and_nearest_to_their_place() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 60, (2, 900))
    groups = square_groups(x, y, 2, spacing=4.0)
    assert all(len(set(row)) == 4 for row in groups.tolist())
    points = np.column_stack([x, y])
    steps = np.array([[-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0], [2.0, 2.0]])
    for i in (0, 17, 450, 899):
        taken: list[int] = []
        for c, step in enumerate(steps):
            # brute force: the nearest position to the place that the group does not hold yet
            dist = np.linalg.norm(points - (points[i] + step), axis=1)
            dist[taken] = np.inf
            assert groups[i, c] == int(np.argmin(dist))
            taken.append(int(groups[i, c]))


def test_gridsize_1_is_each_position_itself() -> None:
    x, y = np.random.default_rng(0).uniform(0, 50, (2, 30))
    np.testing.assert_array_equal(square_groups(x, y, 1)[:, 0], np.arange(30))


@pytest.mark.parametrize(
    ("gridsize", "spacing", "n", "expected"),
    [
        (2, 0.0, 10, "spacing"),
        (2, float("nan"), 10, "spacing"),
        (0, 4.0, 10, "gridsize"),
        (3, 4.0, 8, "at least C = gridsize**2 = 9"),
    ],
)
def test_bad_arguments_are_data_errors(
    gridsize: int, spacing: float, n: int, expected: str
) -> None:
    x, y = np.random.default_rng(0).uniform(0, 50, (2, n))
    with pytest.raises(DataError, match=re.escape(expected)):
        square_groups(x, y, gridsize, spacing, source="scan.npz")


def test_cli_writes_groups_and_keeps_everything_else(tmp_path: Path) -> None:
    arrays = make_scan_arrays(n=60)
    bad = np.zeros((16, 16), dtype=bool)
    bad[3, 4] = True
    np.savez(tmp_path / "scan.npz", bad_pixels=bad, **arrays)
    res = ptycho("group", "scan.npz", "out/grouped.npz", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "60 groups of 4" in res.stdout and "median" in res.stdout
    out = RawData.from_file(tmp_path / "out" / "grouped.npz")
    np.testing.assert_array_equal(
        out.groups, square_groups(arrays["xcoords"], arrays["ycoords"], 2, 4.0)
    )
    np.testing.assert_array_equal(out.diff3d, arrays["diff3d"])
    np.testing.assert_array_equal(out.xcoords, arrays["xcoords"])
    np.testing.assert_array_equal(out.objectGuess, arrays["objectGuess"])
    with np.load(tmp_path / "out" / "grouped.npz") as npz:
        np.testing.assert_array_equal(npz["bad_pixels"], bad)
    # an existing output is kept unless --overwrite
    before = (tmp_path / "out" / "grouped.npz").read_bytes()
    res = ptycho("group", "scan.npz", "out/grouped.npz", "--gridsize", "3", cwd=tmp_path)
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert (tmp_path / "out" / "grouped.npz").read_bytes() == before
    res = ptycho(
        "group", "scan.npz", "out/grouped.npz", "--gridsize", "3", "--overwrite", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert RawData.from_file(tmp_path / "out" / "grouped.npz").groups.shape == (60, 9)


def test_cli_bad_spacing_exits_2_naming_the_field(tmp_path: Path) -> None:
    np.savez(tmp_path / "scan.npz", **make_scan_arrays(n=20))
    res = ptycho("group", "scan.npz", "out.npz", "--spacing", "-1", cwd=tmp_path)
    assert res.returncode == 2 and "spacing" in res.stderr and "-1" in res.stderr
    assert not (tmp_path / "out.npz").exists()
