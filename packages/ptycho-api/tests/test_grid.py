"""Grid simulation of the published 'lines' protocol (physics.md B 11.3).

Golden values are derived by reading the original's ``diffsim.mk_simdata`` /
``tf_helper.extract_nested_patches`` / ``data_preprocessing.get_clipped_object`` and
``grid_lines_workflow.stitch_predictions`` (hoidn/PtychoPINN at 712c23f):

- outer windows of ``bigN = N + (gridsize - 1) * offset`` pixels every ``outer_offset // 2``
  pixels, ``(size - bigN) // (outer_offset // 2) + 1`` per side, row-major
  (``tf.image.extract_patches`` with VALID padding);
- members on a gridsize x gridsize grid ``offset`` apart inside each window, channel
  ``row * gridsize + col`` (``grid_to_channel``); nominal offsets ``outer centre - patch centre``
  (``diffsim.extract_coords``);
- the stitched test image keeps the central ``outer_offset / 2`` square of every group
  (border ``(N - outer_offset / 2) / 2``) and the ground truth is the object with the first
  ``clip = (N - outer_offset/2)/2 + ((gridsize - 1) * offset) // 2`` rows/columns removed:
  330 x 330 pixels for both gridsizes of the published layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptycho_api import ConfigError, DataError, RawData
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.container import create_ptycho_data_container
from ptycho_api.grid import GridLayout, grid_layout, simulate_grid
from ptycho_api.grid_quality import score_grid_model, score_grid_training
from ptycho_api.metrics import align_for_evaluation
from ptycho_api.physics import far_field
from ptycho_api.probe import default_probe, normalize_probe
from ptycho_api.stitching import reassemble_position, reassemble_weighted


@pytest.mark.parametrize(
    ("gridsize", "outer_offset", "big_n", "per_side"),
    [(1, 8, 64, 83), (2, 8, 68, 82), (1, 20, 64, 33), (2, 20, 68, 33)],
)
def test_published_layout_counts(
    gridsize: int, outer_offset: int, big_n: int, per_side: int
) -> None:
    layout = grid_layout(64, gridsize, 4, outer_offset, 392)
    assert layout.big_n == big_n
    assert layout.stride == outer_offset // 2
    assert layout.windows_per_side == per_side
    assert layout.n_groups == per_side**2


def test_group_centres_and_member_offsets_follow_the_original() -> None:
    layout = grid_layout(64, 2, 4, 8, 392)
    centres = layout.group_centres()
    # Window (row i, col j) has its top-left pixel at (4 i, 4 j) and its centre bigN/2 = 34 in.
    np.testing.assert_array_equal(centres[0], [34.0, 34.0])
    np.testing.assert_array_equal(centres[1], [38.0, 34.0])  # row-major: x moves first
    np.testing.assert_array_equal(centres[82], [34.0, 38.0])
    np.testing.assert_array_equal(centres[-1], [358.0, 358.0])
    # Nominal offsets m - r of channels (0,0), (0,1), (1,0), (1,1): +2 where the member is
    # left of / above the window centre.
    members = layout.member_positions()
    relative = centres[:, None, :] - members
    expected = np.array([[2.0, 2.0], [-2.0, 2.0], [2.0, -2.0], [-2.0, -2.0]])
    np.testing.assert_array_equal(relative[0], expected)
    np.testing.assert_array_equal(relative[-1], expected)


def test_layout_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="outer_offset"):
        grid_layout(64, 1, 4, 7, 392)
    with pytest.raises(ConfigError, match="size"):
        grid_layout(64, 2, 4, 8, 60)


@pytest.fixture(scope="module")
def small_grid() -> object:
    # N=64 keeps the probe's size; a 100 px object keeps it fast.
    layout = grid_layout(64, 2, 4, 8, 100)
    return simulate_grid(layout, default_probe(64), n_objects=2, seed=5, nphotons=1e6)


def test_patches_are_the_object_windows_divided_by_norm(small_grid: object) -> None:
    sim = small_grid
    layout = sim.layout
    C = layout.gridsize**2
    Y = sim.raw.Y.reshape(2, layout.n_groups, C, 64, 64)
    obj0 = sim.objects[0]
    n = layout.windows_per_side
    for g in (0, 1, n, layout.n_groups - 1):
        i, j = divmod(g, n)
        for a in range(2):
            for b in range(2):
                top, left = 4 * i + 4 * a, 4 * j + 4 * b
                window = obj0[top : top + 64, left : left + 64]
                np.testing.assert_allclose(Y[0, g, a * 2 + b], window, rtol=0, atol=1e-6)
    # norm_Y_I: the mean over groups of each group's largest amplitude (before division).
    raw_max = np.abs(Y * sim.norm_Y_I).max(axis=(2, 3, 4))
    assert np.mean(raw_max) == pytest.approx(sim.norm_Y_I, rel=1e-5)
    # Objects sit side by side: object 1's positions are shifted by size + gap = 164 px in x.
    x = sim.raw.xcoords.reshape(2, -1)
    np.testing.assert_allclose(x[1] - x[0], 164.0)
    np.testing.assert_array_equal(np.unique(sim.raw.scan_index), [0, 1])


def test_noiseless_patterns_use_the_model_probe_and_the_shared_scale(small_grid: object) -> None:
    sim = small_grid
    layout = grid_layout(64, 2, 4, 20, 100)
    test = simulate_grid(
        layout, default_probe(64), n_objects=1, seed=6, intensity_scale=sim.intensity_scale
    )
    assert test.intensity_scale == sim.intensity_scale
    # Poisson amplitudes scatter about |FFT(P_model Y)| / N with sd 1/(2 s) per pixel.
    expected = far_field(test.raw.Y.astype(np.complex128) * normalize_probe(default_probe(64)))
    residual = test.raw.diff3d - expected
    assert abs(np.mean(residual)) < 5 / test.intensity_scale
    assert np.std(residual) < 1.0 / test.intensity_scale


def test_fixed_groups_survive_the_npz_round_trip_and_drive_grouping(
    small_grid: object, tmp_path: Path
) -> None:
    path = small_grid.raw.to_file(tmp_path / "grid.npz")
    raw = RawData.from_file(path)
    np.testing.assert_array_equal(raw.groups, small_grid.raw.groups)
    config = TrainingConfig(model=ModelConfig(N=64, gridsize=2), n_groups=10, seed=3)
    container = create_ptycho_data_container(raw, config)
    assert container.nn_indices.shape == (10, 4)
    # Every drawn group is one of the file's groups, with the +-2 px offsets of the grid.
    rows = {tuple(r) for r in raw.groups.tolist()}
    assert all(tuple(r) in rows for r in container.nn_indices.tolist())
    np.testing.assert_allclose(np.abs(container.local_offsets), 2.0)
    with pytest.raises(DataError, match="groups"):
        create_ptycho_data_container(raw, TrainingConfig(model=ModelConfig(N=64), n_groups=10))


def test_groups_are_validated(small_grid: object) -> None:
    raw = small_grid.raw
    with pytest.raises(DataError, match="'groups'"):
        RawData(
            raw.xcoords,
            raw.ycoords,
            None,
            None,
            raw.diff3d,
            raw.probeGuess,
            None,
            groups=raw.groups + len(raw.diff3d),
        )


def _true_windows(layout: GridLayout, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random 392 px object and, as each group's perfect reconstruction, the 64 px window
    centred on its group centre: -> object, patches (B, 64, 64, 1), offsets (B, 1, 2, 1)."""
    centres = layout.group_centres()
    obj = np.random.default_rng(seed).uniform(0.5, 1.5, (392, 392)).astype(np.complex64)
    rows = (centres[:, 1] - 32).astype(int)
    cols = (centres[:, 0] - 32).astype(int)
    patches = np.stack([obj[r : r + 64, c : c + 64] for r, c in zip(rows, cols, strict=True)])
    return obj, patches[..., None], centres[:, None, :, None]


@pytest.mark.parametrize(("gridsize", "clip"), [(1, 27), (2, 29)])
def test_tile_stitching_matches_the_original_ground_truth_crop(gridsize: int, clip: int) -> None:
    layout = grid_layout(64, gridsize, 4, 20, 392)
    obj, patches, offsets = _true_windows(layout, seed=0)
    canvas = reassemble_position(patches, offsets, M=layout.stride)
    image, truth = align_for_evaluation(canvas, obj, offsets, M=layout.stride)
    assert image.shape == (330, 330)
    np.testing.assert_array_equal(truth, obj[clip : clip + 330, clip : clip + 330])
    np.testing.assert_allclose(image, truth, atol=1e-6)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_probe_stitching_of_true_windows_lands_on_the_same_area(gridsize: int) -> None:
    # The quality protocol scores probe-weighted stitching on the crop stitching's area: exact
    # object windows, weighted by the members' illumination, must give back the object there
    # (float32 rounding of the weighted mean: 1e-5 on values 0.5-1.5).
    layout = grid_layout(64, gridsize, 4, 20, 392)
    obj, patches, offsets = _true_windows(layout, seed=1)
    members = layout.member_offsets().T[None, None]  # (1, 1, 2, C)
    local = np.broadcast_to(members, (len(patches), 1, 2, gridsize**2))
    probe = normalize_probe(default_probe(64))
    canvas = reassemble_weighted(patches, offsets, probe, local, M=layout.stride)
    image, truth = align_for_evaluation(canvas, obj, offsets, M=layout.stride)
    assert image.shape == (330, 330)
    np.testing.assert_allclose(image, truth, atol=1e-5)


def test_an_unknown_stitching_is_refused_before_training(small_grid: object) -> None:
    with pytest.raises(ConfigError, match=r"stitch: expected one of \['probe', 'crop'\]"):
        score_grid_training(None, small_grid, small_grid, TrainingConfig(), stitch="tile")


def test_same_seed_same_scan() -> None:
    layout = grid_layout(64, 1, 4, 20, 100)
    a = simulate_grid(layout, default_probe(64), n_objects=1, seed=9)
    b = simulate_grid(layout, default_probe(64), n_objects=1, seed=9)
    np.testing.assert_array_equal(a.raw.diff3d, b.raw.diff3d)
    np.testing.assert_array_equal(a.raw.objectGuess, b.raw.objectGuess)


def test_a_layout_too_large_for_memory_is_refused_before_allocating() -> None:
    # 40,000 px objects at stride 4 would be ~1e8 patterns (~13 TB): refused from the layout
    # arithmetic alone, so the call returns at once instead of exhausting memory.
    layout = grid_layout(64, 1, 4, 8, 40_000)
    with pytest.raises(ConfigError, match="GiB; expected at most 8 GiB"):
        simulate_grid(layout, np.ones((64, 64), np.complex64), n_objects=1)


def test_scoring_an_object_the_test_scan_lacks_is_refused_before_training(
    small_grid: object,
) -> None:
    # backend None: the check must fire before anything is trained.
    with pytest.raises(ConfigError, match=r"object_index: expected 0 to 1 .* found 2"):
        score_grid_training(None, small_grid, small_grid, TrainingConfig(), object_index=2)


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        ({"stitch": "tile"}, r"stitch: expected one of \['probe', 'crop'\]"),
        ({"object_index": 2}, r"object_index: expected 0 to 1 .* found 2"),
    ],
)
def test_scoring_a_trained_model_refuses_bad_choices_before_predicting(
    small_grid: object, choice: dict, message: str
) -> None:
    # backend and model None: the check must fire before any prediction.
    with pytest.raises(ConfigError, match=message):
        score_grid_model(None, None, 1.0, small_grid, TrainingConfig(), **choice)
