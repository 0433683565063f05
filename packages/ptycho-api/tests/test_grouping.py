"""Grouping (B 4, decisions 3 and 8): keys, shapes, neighbours, seeds, sequential mode, errors."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_api import DataError, RawData, params
from ptycho_api.grouping import GROUPED_KEYS, select_groups
from ptycho_api.physics import extract_patches


def _knn_sets(raw: RawData, K: int) -> list[set[int]]:
    """Brute-force K nearest other points of every point."""
    pts = np.column_stack([raw.xcoords, raw.ycoords])
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    return [set(np.argsort(row, kind="stable")[:K].tolist()) for row in dist]


@pytest.mark.parametrize("gridsize", [1, 2])
def test_shapes_and_dtypes_of_every_key(raw: RawData, gridsize: int) -> None:
    C, N, B = gridsize**2, 16, 25
    g = raw.generate_grouped_data(N, K=6, nsamples=B, gridsize=gridsize, seed=0)
    assert set(g) == set(GROUPED_KEYS)
    expected = {
        "diffraction": ((B, N, N, C), np.float32),
        "X_full": ((B, N, N, C), np.float32),
        "coords_nn": ((B, 1, 2, C), np.float64),
        "coords_offsets": ((B, 1, 2, 1), np.float64),
        "coords_relative": ((B, 1, 2, C), np.float64),
        "coords_start_nn": ((B, 1, 2, C), np.float64),
        "coords_start_offsets": ((B, 1, 2, 1), np.float64),
        "coords_start_relative": ((B, 1, 2, C), np.float64),
        "nn_indices": ((B, C), np.int64),
        "Y": ((B, N, N, C), np.complex64),
        "objectGuess": ((64, 64), np.complex64),
        "probeGuess": ((N, N), np.complex64),
    }
    for key, (shape, dtype) in expected.items():
        assert g[key].shape == shape and g[key].dtype == dtype, key
    nn = g["nn_indices"]
    np.testing.assert_array_equal(g["diffraction"], np.moveaxis(raw.diff3d[nn], 1, -1))


def test_members_are_among_the_k_nearest_neighbours_of_their_seed(raw: RawData) -> None:
    K = 5
    # With one group per point the seeds are the points in order, so group b's seed is b.
    nn = select_groups(raw.xcoords, raw.ycoords, C=4, K=K, seed=3)
    knn = _knn_sets(raw, K)
    for b, members in enumerate(nn):
        assert len(set(members.tolist())) == 4  # distinct
        assert set(members.tolist()) <= knn[b]  # among the K nearest, seed itself excluded


def test_same_seed_same_groups_different_seed_different(raw: RawData) -> None:
    a = raw.generate_grouped_data(16, K=6, nsamples=20, gridsize=2, seed=11)
    b = raw.generate_grouped_data(16, K=6, nsamples=20, gridsize=2, seed=11)
    c = raw.generate_grouped_data(16, K=6, nsamples=20, gridsize=2, seed=12)
    np.testing.assert_array_equal(a["nn_indices"], b["nn_indices"])
    np.testing.assert_array_equal(a["X_full"], b["X_full"])
    assert not np.array_equal(a["nn_indices"], c["nn_indices"])
    g1 = select_groups(raw.xcoords, raw.ycoords, C=1, nsamples=10, seed=1)
    assert not np.array_equal(g1, select_groups(raw.xcoords, raw.ycoords, C=1, nsamples=10, seed=2))


def test_global_numpy_random_state_is_untouched(raw: RawData) -> None:
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    raw.generate_grouped_data(16, K=4, nsamples=10, gridsize=2, seed=5)
    raw.generate_grouped_data(16, K=4, nsamples=10, gridsize=2, sequential_sampling=True)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_sequential_sampling(raw: RawData) -> None:
    g1 = select_groups(raw.xcoords, raw.ycoords, C=1, nsamples=7, sequential_sampling=True)
    np.testing.assert_array_equal(g1[:, 0], np.arange(7))
    K = 4
    g2 = select_groups(raw.xcoords, raw.ycoords, C=4, K=K, nsamples=7, sequential_sampling=True)
    knn = _knn_sets(raw, K)
    # Seeds are points 0..6; with K = C every neighbour is used, in a seeded random order.
    for b, members in enumerate(g2):
        assert set(members.tolist()) == knn[b]
    again = select_groups(raw.xcoords, raw.ycoords, C=4, K=K, nsamples=7, sequential_sampling=True)
    np.testing.assert_array_equal(g2, again)  # deterministic without a seed (seed 0)


def test_coords_relative_is_group_mean_minus_position(raw: RawData) -> None:
    g = raw.generate_grouped_data(16, K=6, nsamples=15, gridsize=2, seed=4)
    nn = g["nn_indices"]
    x, y = raw.xcoords[nn], raw.ycoords[nn]
    mean_x, mean_y = x.mean(axis=1), y.mean(axis=1)
    # float64 means of the same numbers: 1e-12 absolute on O(10) pixel coordinates.
    np.testing.assert_allclose(g["coords_offsets"][:, 0, 0, 0], mean_x, atol=1e-12)
    np.testing.assert_allclose(g["coords_offsets"][:, 0, 1, 0], mean_y, atol=1e-12)
    np.testing.assert_allclose(g["coords_relative"][:, 0, 0], mean_x[:, None] - x, atol=1e-12)
    np.testing.assert_allclose(g["coords_relative"][:, 0, 1], mean_y[:, None] - y, atol=1e-12)
    np.testing.assert_allclose(g["coords_relative"].sum(axis=3), 0.0, atol=1e-12)
    np.testing.assert_array_equal(g["coords_nn"][:, 0, 0], x)


def test_ground_truth_patches_are_centred_on_each_member(raw: RawData) -> None:
    # Decision 3: the patch of member c is centred on its own point r_c (not 2m - r_c).
    g = raw.generate_grouped_data(16, K=6, nsamples=6, gridsize=2, seed=9)
    for b, members in enumerate(g["nn_indices"]):
        for c, index in enumerate(members):
            r = np.array([[raw.xcoords[index], raw.ycoords[index]]])
            want = extract_patches(raw.objectGuess, r, 16)[0]
            np.testing.assert_array_equal(g["Y"][b, ..., c], want)


def test_ground_truth_from_file_patches(raw: RawData) -> None:
    per_position = np.arange(len(raw), dtype=np.complex64)[:, None, None] * np.ones((16, 16))
    raw.Y = per_position.astype(np.complex64)
    g = raw.generate_grouped_data(16, K=4, nsamples=5, gridsize=2, seed=1)
    np.testing.assert_array_equal(g["Y"][:, 0, 0, :].real, g["nn_indices"])


def test_no_ground_truth_gives_none(raw: RawData) -> None:
    raw.objectGuess = None
    assert raw.generate_grouped_data(16, K=4, nsamples=5, gridsize=1, seed=1)["Y"] is None


def test_k_smaller_than_c_is_a_data_error(raw: RawData) -> None:
    with pytest.raises(DataError, match=r"expected K >= C = gridsize\*\*2 = 4 .* found K = 3"):
        raw.generate_grouped_data(16, K=3, nsamples=5, gridsize=2)


def test_too_few_points_is_a_data_error() -> None:
    with pytest.raises(DataError, match="at least C = gridsize\\*\\*2 = 9 scan positions; found 5"):
        select_groups(np.arange(5.0), np.arange(5.0), C=9, K=9)


def test_more_groups_than_points_oversamples_when_enabled(raw: RawData) -> None:
    g = raw.generate_grouped_data(
        16, K=6, nsamples=100, gridsize=2, seed=0, enable_oversampling=True, neighbor_pool_size=7
    )
    nn = g["nn_indices"]
    assert nn.shape == (100, 4)
    assert all(len(set(row.tolist())) == 4 for row in nn)
    # Every group is a combination of one seed's 7 nearest neighbours.
    knn = _knn_sets(raw, 7)
    assert all(any(set(row.tolist()) <= pool for pool in knn) for row in nn)


@pytest.mark.parametrize("gridsize", [1, 2, 3])
def test_every_gridsize_caps_groups_at_the_number_of_points(
    raw: RawData, gridsize: int, caplog: pytest.LogCaptureFixture
) -> None:
    # One rule for every gridsize: without oversampling, one group per seed position, a warning.
    with caplog.at_level("WARNING", logger="ptycho_api"):
        g = raw.generate_grouped_data(16, K=9, nsamples=1000, gridsize=gridsize, seed=0)
    assert g["nn_indices"].shape == (len(raw), gridsize**2)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    n = len(raw)
    assert f"1000 groups requested but only {n} scan positions; using {n}" in warnings[0]
    assert ("enable_oversampling" in warnings[0]) == (gridsize > 1)
    if gridsize == 1:
        assert sorted(g["nn_indices"][:, 0].tolist()) == list(range(len(raw)))


def test_pattern_size_must_match(raw: RawData) -> None:
    with pytest.raises(
        DataError, match="expected the pattern size of the data \\(16\\); found N = 64"
    ):
        raw.generate_grouped_data(64, gridsize=1)


def test_gridsize_none_reads_the_legacy_dict(raw: RawData, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(params.cfg, "gridsize", 2)
    g = raw.generate_grouped_data(16, K=4, nsamples=3, seed=0)
    assert g["nn_indices"].shape == (3, 4)
