"""Stitching by scan position, ``reassemble_position`` (B 9, decision 13)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_api import reassemble_position
from ptycho_api.physics import translate
from ptycho_api.stitching import STITCH_DENOMINATOR_EPS, apply_stitch_options, stitch_geometry


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
