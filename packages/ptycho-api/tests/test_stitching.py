"""Stitching by scan position, ``reassemble_position`` (B 9, decision 13)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_api import reassemble_position
from ptycho_api.physics import translate
from ptycho_api.stitching import (
    ILLUMINATION_FLOOR,
    STITCH_DENOMINATOR_EPS,
    apply_stitch_options,
    crop_margin,
    illumination_window,
    reassemble_weighted,
    stitch_geometry,
    stitch_support,
    weighted_support,
)


def _literal_reassembly(patches: np.ndarray, offsets: np.ndarray, M: int) -> np.ndarray:
    """B 9 as written: pad each crop to the full canvas, translate it, sum, divide."""
    geom = stitch_geometry(offsets, M)
    N = patches.shape[1]
    lo = N // 2 - M // 2
    crops = patches[:, lo : lo + M, lo : lo + M]
    pad = ((0, 0), (geom.pad, geom.pad), (geom.pad, geom.pad))
    numerator = translate(np.pad(crops, pad), geom.offsets).sum(axis=0)
    weights = translate(np.pad(np.ones(crops.shape), pad), geom.offsets).sum(axis=0)
    return numerator / (weights + STITCH_DENOMINATOR_EPS)


def test_two_patch_golden_example() -> None:
    # B 15: patches at x = 100, 110, y = 100, M = 20 -> 32 x 32 canvas; the patch at x = 100
    # spans columns 1-20 and columns 11-20 are the average of the two.
    N = 64
    patches = np.stack([np.full((N, N, 1), 1.0 + 0j), np.full((N, N, 1), 3.0 + 0j)]).astype(
        np.complex64
    )
    offsets = np.array([[[[100.0], [100.0]]], [[[110.0], [100.0]]]])  # (2, 1, 2, 1) [x, y]
    canvas = reassemble_position(patches, offsets, M=20)
    assert canvas.shape == (32, 32, 1) and canvas.dtype == np.complex64
    row = canvas[16, :, 0].real
    # Integer offsets and a 1e-9 denominator guard: values within 1e-6 of the exact averages.
    np.testing.assert_allclose(row[1:11], 1.0, atol=1e-6)
    np.testing.assert_allclose(row[11:21], 2.0, atol=1e-6)
    np.testing.assert_allclose(row[21:31], 3.0, atol=1e-6)
    assert abs(row[0]) < 1e-6 and abs(row[31]) < 1e-6
    # d_y = 0 for both: rows pad .. pad + M - 1 = 6 .. 25 are covered, the others empty.
    column = np.abs(canvas[:, 5, 0])
    assert np.all(column[6:26] > 0.5) and np.all(column[:6] < 1e-6) and np.all(column[26:] < 1e-6)


@pytest.mark.parametrize("chunk_size", [1, 3, 4096])
def test_windowed_stitching_equals_the_literal_definition(chunk_size: int) -> None:
    rng = np.random.default_rng(0)
    N, M, B = 32, 12, 9
    patches = rng.normal(size=(B, N, N, 1)) + 1j * rng.normal(size=(B, N, N, 1))
    # Sub-pixel offsets of both signs around the mean, incl. one at exactly +-pad.
    offsets = rng.uniform(40, 60, size=(B, 2))
    offsets[0] = [40.0, 60.0]
    got = reassemble_position(patches, offsets, M=M, chunk_size=chunk_size)
    want = _literal_reassembly(patches[..., 0], offsets, M)
    # Same float64 bilinear weights accumulated in a different order: 1e-12 relative.
    np.testing.assert_allclose(got[..., 0], want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_scan_point_lands_where_b9_says() -> None:
    N, M = 32, 20
    patches = np.zeros((3, N, N))
    patches[:, N // 2, N // 2] = 1.0  # a delta at each scan point
    # Crops more than M apart (each pixel covered by one crop), integer offsets from the mean.
    offsets = np.array([[0.0, 0.0], [30.0, 0.0], [15.0, 45.0]])
    image = reassemble_position(patches, offsets, M=M)
    geom = stitch_geometry(offsets, M)
    assert image.shape == (geom.size, geom.size) and image.dtype == np.float64
    for d_x, d_y in geom.offsets:
        row, col = geom.pad + M // 2 + d_y, geom.pad + M // 2 + d_x
        assert row == int(row) and col == int(col)  # offsets chosen to land on pixels
        # Each delta sits alone (weight 1): 1 / (1 + 1e-9) within 1e-8.
        assert abs(image[int(row), int(col)] - 1.0) < 1e-8
    assert np.count_nonzero(np.abs(image) > 1e-8) == 3


def test_real_single_precision_input_stays_single() -> None:
    patches = np.ones((2, 16, 16, 1), dtype=np.float32)
    image = reassemble_position(patches, np.array([[0.0, 0.0], [3.5, -1.25]]), M=8)
    assert image.dtype == np.float32 and image.shape[-1] == 1


def test_pad_is_rounded_up_to_even() -> None:
    geom = stitch_geometry(np.array([[0.0, 0.0], [5.0, 0.2]]), M=20)
    # max |d| = 2.5 -> ceil 3 -> even 4; S = 20 + 8.
    assert geom.pad == 4 and geom.size == 28


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="global_offsets"):
        reassemble_position(np.ones((2, 16, 16, 1)), np.ones((2, 3)), M=8)
    with pytest.raises(ValueError, match="crop size M"):
        reassemble_position(np.ones((2, 16, 16, 1)), np.ones((2, 2)), M=20)
    with pytest.raises(ValueError, match="2 patches but 3"):
        reassemble_position(np.ones((2, 16, 16, 1)), np.ones((3, 2)), M=8)


def test_stitch_options_flip_scale_and_transpose_without_touching_inputs() -> None:
    patches = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 1).astype(np.complex64)
    offsets = np.array([[[[1.0], [2.0]]], [[[-3.0], [4.0]]]])
    before_p, before_o = patches.copy(), offsets.copy()
    got_p, got_o = apply_stitch_options(
        patches, offsets, flip_x=True, flip_y=False, transpose=True, coord_scale=2.0
    )
    # Exact: sign changes, a factor of 2 and an axis swap are exact in floating point.
    np.testing.assert_array_equal(got_o[:, 0, :, 0], [[-2.0, 4.0], [6.0, 8.0]])
    np.testing.assert_array_equal(got_p[1, :, :, 0], patches[1, :, :, 0].T)
    _, flipped_y = apply_stitch_options(patches, offsets, flip_y=True)
    np.testing.assert_array_equal(flipped_y[:, 0, :, 0], [[1.0, -2.0], [-3.0, -4.0]])
    np.testing.assert_array_equal(patches, before_p)
    np.testing.assert_array_equal(offsets, before_o)


# Probe-weighted stitching (stitching.reassemble_weighted).


def _smooth_object(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    return 1.5 + np.sin(2 * np.pi * (3 * xx + rng.uniform())) * np.cos(
        2 * np.pi * (2 * yy + rng.uniform())
    ) * np.exp(1j * 0.3 * xx)


def test_weighted_support_is_the_object_box_with_the_parity_of_m() -> None:
    assert weighted_support(64, 20) == 32
    assert weighted_support(64, 21) == 33  # K - M must be even to share M's pixel grid
    assert weighted_support(64, 40) == 40
    assert weighted_support(64, 63) == 63
    assert weighted_support(128, 20) == 64
    with pytest.raises(ValueError, match="crop size M"):
        weighted_support(64, 65)


def test_illumination_window_of_one_position_is_the_normalised_probe_intensity() -> None:
    rng = np.random.default_rng(1)
    probe = rng.normal(size=(16, 16)) + 1j * rng.normal(size=(16, 16))
    window = illumination_window(probe, np.zeros((3, 1, 2, 1)), 8)
    intensity = np.abs(probe) ** 2
    expected = (intensity / intensity.max())[4:12, 4:12] + ILLUMINATION_FLOOR
    assert window.shape == (3, 8, 8)
    np.testing.assert_allclose(window, np.broadcast_to(expected, (3, 8, 8)), rtol=1e-12)


def test_illumination_window_puts_each_member_where_the_overlap_canvas_does() -> None:
    # A point probe; member offsets o = (+2, 0) and (0, -3) [x, y]. The overlap canvas moves
    # member c by -o_c (forward.overlap_canvas), so its light lands at column centre - 2 and at
    # row centre + 3 of the group's patch.
    probe = np.zeros((16, 16), dtype=np.complex64)
    probe[8, 8] = 1.0
    offsets = np.array([[[[2.0, 0.0], [0.0, -3.0]]]])  # (1, 1, 2, C=2)
    window = illumination_window(probe, offsets, 16)[0] - ILLUMINATION_FLOOR
    lit = {tuple(int(i) for i in ix) for ix in np.argwhere(window > 0.5)}
    assert lit == {(8, 6), (11, 8)}


def test_weighted_stitching_of_consistent_patches_returns_the_object() -> None:
    # Patches cut from one object at integer positions agree wherever they overlap, so any
    # weighted mean of them is the object itself: float32 patches, float64 sums -> 1e-5.
    obj = _smooth_object(96, seed=2)
    N, M = 32, 12
    rng = np.random.default_rng(3)
    # Mirrored about (48, 48): the mean position, and so every shift, is a whole pixel.
    half = rng.integers(N // 2 + 4, 96 - N // 2 - 4, size=(20, 2))
    positions = np.concatenate([half, 96 - half]).astype(np.float64)
    patches = np.stack(
        [
            obj[int(y) - N // 2 : int(y) + N // 2, int(x) - N // 2 : int(x) + N // 2]
            for x, y in positions
        ]
    ).astype(np.complex64)[..., None]
    probe = rng.normal(size=(N, N)) + 1j * rng.normal(size=(N, N))
    canvas = reassemble_weighted(patches, positions, probe, np.zeros((40, 1, 2, 1)), M)
    plain = reassemble_position(patches, positions, M)
    assert canvas.shape == plain.shape and canvas.dtype == np.complex64
    geom = stitch_geometry(positions, M)
    covered = np.abs(plain[..., 0]) > 0.1
    rows, cols = np.nonzero(covered)
    truth = obj[
        rows - geom.pad - M // 2 + int(geom.center[1]),
        cols - geom.pad - M // 2 + int(geom.center[0]),
    ]
    np.testing.assert_allclose(canvas[rows, cols, 0], truth, atol=1e-5)


def test_weighted_stitching_weighs_each_patch_by_its_illumination() -> None:
    # Two constant patches, 1 and 3, at the same position; the first group is lit by the probe
    # (weight 1 + floor), the second, whose member sits 40 px away, not at all (floor only):
    # the pixel is (1 * (1 + f) + 3 * f) / (1 + 2 f).
    N, M = 16, 8
    probe = np.ones((N, N), dtype=np.complex64)
    patches = np.stack([np.full((N, N, 1), 1.0), np.full((N, N, 1), 3.0)]).astype(np.complex64)
    positions = np.array([[50.0, 50.0], [50.0, 50.0]])
    local = np.array([[[[0.0], [0.0]]], [[[40.0], [0.0]]]])
    canvas = reassemble_weighted(patches, positions, probe, local, M)
    f = ILLUMINATION_FLOOR
    centre = canvas.shape[0] // 2
    assert canvas[centre, centre, 0].real == pytest.approx((1 + f + 3 * f) / (1 + 2 * f), rel=1e-6)


def test_a_flat_probe_gives_the_plain_mean_over_the_object_box() -> None:
    rng = np.random.default_rng(4)
    N, M, B = 32, 12, 9
    patches = rng.normal(size=(B, N, N, 1)) + 1j * rng.normal(size=(B, N, N, 1))
    offsets = rng.uniform(40, 60, size=(B, 2))
    flat = np.ones((N, N), dtype=np.complex64)
    got = reassemble_weighted(patches, offsets, flat, np.zeros((B, 1, 2, 1)), M, chunk_size=4)
    K = weighted_support(N, M)
    want = crop_margin(reassemble_position(patches, offsets, K), K, M)
    assert got.shape == reassemble_position(patches, offsets, M).shape
    # The constant window 1 + floor cancels in sum(w p) / sum(w) but not against the 1e-9
    # guard of the denominator, which matters only where a pixel's bilinear coverage is small:
    # 1e-9 relative.
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * np.abs(want).max())


def test_weighted_stitching_rejects_mismatched_inputs() -> None:
    patches = np.zeros((3, 16, 16, 1), dtype=np.complex64)
    offsets = np.zeros((3, 2))
    with pytest.raises(ValueError, match="local offsets for 2 groups"):
        reassemble_weighted(patches, offsets, np.ones((16, 16)), np.zeros((2, 1, 2, 1)), 8)
    with pytest.raises(ValueError, match="probe must be"):
        illumination_window(np.ones((16, 8)), np.zeros((3, 1, 2, 1)), 8)
    with pytest.raises(ValueError, match="local_offsets must be"):
        illumination_window(np.ones((16, 16)), np.zeros((3, 2)), 8)


def test_stitch_modes_are_named_in_errors() -> None:
    from ptycho_api.errors import ConfigError
    from ptycho_api.workflows import stitch_container, stitch_patches

    patches = np.zeros((2, 16, 16, 1), dtype=np.complex64)
    with pytest.raises(
        ConfigError, match=r"stitch: expected one of \['probe', 'crop'\]; found 'x'"
    ):
        stitch_container(None, patches, None, stitch="x")
    with pytest.raises(ValueError, match="probe weighting needs the groups' local_offsets"):
        stitch_patches(None, patches, np.zeros((2, 2)), M=8, probe=np.ones((16, 16)))
    assert stitch_support("probe", 64, 20) == 32 and stitch_support("crop", 64, 20) == 20
