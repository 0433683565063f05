"""Simulated scans as Ptychodus hands them to a reconstructor: a ``ReconstructInput``.

The scan comes from ``ptycho_api.simulation`` (lines object, defocused probe, Poisson counts) and
is converted to what Ptychodus holds: raw uint16 detector counts, positions in metres about the
object centre, a ``(1, N, N)`` probe, the object (the ground truth, which Ptychodus exports as
``objectGuess``) with its pixel geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ptychodus.api.geometry import PixelGeometry
from ptychodus.api.object import Object, ObjectCenter
from ptychodus.api.probe import ProbeSequence
from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
from ptychodus.api.product import Product, ProductMetadata
from ptychodus.api.reconstruct import ReconstructInput

from ptycho_api.metrics import align_for_evaluation, eval_reconstruction
from ptycho_api.probe import builtin_probe
from ptycho_api.simulation import simulate_dataset

N = 64
PIXEL_M = 1e-8
# Photons per pattern: keeps the brightest pixel well below the uint16 limit (about 250 counts).
NPHOTONS = 1e5


@dataclass(frozen=True)
class Scan:
    """A Ptychodus input and the ground truth to score a reconstruction against."""

    reconstruct_input: ReconstructInput
    truth: np.ndarray
    """``(H, W)`` complex64 object."""
    positions_px: np.ndarray
    """``(K, 2)`` float64 [x, y] object pixels of the scan positions."""

    def amplitude_ssim(self, obj: Object) -> float:
        """Amplitude SSIM of a returned ``Object`` against the truth, over the scanned region."""
        canvas = np.asarray(obj.get_array())
        if canvas.ndim == 3:
            canvas = canvas[0]
        image, truth = align_for_evaluation(canvas, self.truth, self.positions_px, M=20)
        return float(eval_reconstruction(image, truth)["ssim"][0])


def make_scan(n_positions: int, seed: int, *, square: bool = True) -> Scan:
    """Simulate ``n_positions`` patterns and wrap them as Ptychodus objects (``square=False``: crop one column)."""
    raw = simulate_dataset(
        n_images=n_positions,
        N=N,
        nphotons=NPHOTONS,
        seed=seed,
        obj="lines",
        probe=builtin_probe("defocused", N),
    )
    s_sim = raw.metadata["simulation"]["s_sim"]
    counts = np.round((raw.diff3d.astype(np.float64) * s_sim) ** 2)
    if counts.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"simulated counts reach {counts.max()}, beyond uint16")
    patterns = counts.astype(np.uint16)
    if not square:
        patterns = patterns[:, :, :-1]
    height, width = raw.objectGuess.shape
    # Ptychodus maps metres to object pixels as x_px = (x_m - centre_x) / dx + (width - 1) / 2.
    points = [
        ProbePosition(
            index=i, x_m=(x - (width - 1) / 2) * PIXEL_M, y_m=(y - (height - 1) / 2) * PIXEL_M
        )
        for i, (x, y) in enumerate(zip(raw.xcoords, raw.ycoords, strict=True))
    ]
    geometry = PixelGeometry(PIXEL_M, PIXEL_M)
    metadata = ProductMetadata("simulated lines", "", 1.0, 8000.0, NPHOTONS, 0.1, 0.0, 0.0)
    product = Product(
        metadata,
        ProbePositionSequence(points),
        ProbeSequence(raw.probeGuess[None].astype(np.complex64), None, geometry),
        Object(raw.objectGuess.astype(np.complex64), geometry, ObjectCenter(0.0, 0.0)),
        [],
    )
    return Scan(
        ReconstructInput(patterns, None, product),
        raw.objectGuess,
        np.stack([raw.xcoords, raw.ycoords], axis=1),
    )
