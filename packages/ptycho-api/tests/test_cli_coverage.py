"""The ``coverage`` mask that ``reconstruction.npz`` holds beside the stitched image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptycho_api.cli.outputs import coverage_mask, write_reconstruction
from ptycho_api.stitching import (
    reassemble_position,
    reassemble_weighted,
    stitch_geometry,
    weighted_support,
)


def test_coverage_is_true_on_the_scan_and_false_outside(tmp_path: Path) -> None:
    M, N = 8, 16
    # two scan points far apart: the canvas between and around their crops is uncovered
    offsets = np.array([[0.0, 0.0], [40.0, 40.0]])
    patches = np.ones((2, N, N), dtype=np.complex64)
    canvas = reassemble_position(patches, offsets, M)
    written = write_reconstruction(tmp_path, canvas, offsets, M)
    with np.load(written["npz"]) as data:
        coverage, image = data["coverage"], data["object"]
    assert coverage.dtype == np.bool_
    assert coverage.shape == image.shape
    geom = stitch_geometry(offsets, M)
    assert coverage.shape == (geom.size, geom.size)
    # each crop lands at pad + d (d = offset - mean), M x M pixels
    for d in geom.offsets:
        lo = (geom.pad + d).astype(int)
        assert coverage[lo[1] : lo[1] + M, lo[0] : lo[0] + M].all()
    assert not coverage[0, -1] and not coverage[-1, 0]
    assert not coverage.all()
    np.testing.assert_array_equal(np.abs(image[~coverage]), 0)
    np.testing.assert_allclose(np.abs(image[coverage]), 1, atol=1e-5)


def test_probe_weighted_coverage_spans_each_patch_s_object_box(tmp_path: Path) -> None:
    M, N = 8, 32
    K = weighted_support(N, M)  # 16: the network's object box, N / 2
    offsets = np.array([[0.0, 0.0], [40.0, 40.0]])
    patches = np.ones((2, N, N), dtype=np.complex64)
    canvas = reassemble_weighted(patches, offsets, np.ones((N, N)), np.zeros((2, 1, 2, 1)), M)
    written = write_reconstruction(tmp_path, canvas, offsets, M, support=K)
    with np.load(written["npz"]) as data:
        coverage, image = data["coverage"], data["object"]
    geom = stitch_geometry(offsets, M)
    assert coverage.shape == image.shape == (geom.size, geom.size)
    # On the crop-M canvas a K box around scan point d starts (K - M) / 2 before the M crop.
    for d in geom.offsets:
        lo = (geom.pad + d).astype(int) - (K - M) // 2
        assert coverage[max(lo[1], 0) : lo[1] + K, max(lo[0], 0) : lo[0] + K].all()
    assert coverage.sum() > coverage_mask(offsets, M).sum()
    np.testing.assert_array_equal(np.abs(image[~coverage]), 0)
    np.testing.assert_allclose(np.abs(image[coverage]), 1, atol=1e-5)
