"""The ``coverage`` mask that ``reconstruction.npz`` holds beside the stitched image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptycho_api.cli.outputs import write_reconstruction
from ptycho_api.stitching import reassemble_position, stitch_geometry


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
