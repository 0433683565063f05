"""Synthetic test objects for simulation (physics.md B 11.1).

Each generator takes a ``numpy.random.Generator`` (decision 8) and returns a real, non-negative
``(size, size)`` float64 amplitude map (not normalised, as in the original); ``make_object``
turns it into a complex64 object with zero phase (or the ``set_phi`` phase).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from skimage.draw import line
from skimage.transform import resize

from ptycho_api.errors import ConfigError

__all__ = ["OBJECT_KINDS", "lines_object", "points_object", "grf_object", "make_object"]


def lines_object(size: int, rng: np.random.Generator, n_lines: int = 400) -> np.ndarray:
    """Random blurred line segments: ``(size, size)`` float64 amplitude.

    On a ``2*size`` canvas, ``n_lines`` segments with integer endpoints uniform in
    ``[0, 2*size)`` are set to 1; the image is ``gf(1) + 2 gf(5) + 5 gf(10)`` (Gaussian blurs
    with those sigmas, pixels) and its central ``size x size`` crop is kept.
    """
    canvas = np.zeros((2 * size, 2 * size))
    for r0, c0, r1, c1 in rng.integers(0, 2 * size, size=(n_lines, 4)):
        rows, cols = line(int(r0), int(c0), int(r1), int(c1))
        canvas[rows, cols] = 1.0
    image = (
        gaussian_filter(canvas, 1.0)
        + 2.0 * gaussian_filter(canvas, 5.0)
        + 5.0 * gaussian_filter(canvas, 10.0)
    )
    lo = size // 2
    return image[lo : lo + size, lo : lo + size]


def points_object(size: int, rng: np.random.Generator) -> np.ndarray:
    """Random blurred points: ``(size, size)`` float64 amplitude.

    ``int(0.1 * size^2)`` random pixel draws (with replacement) each add 1; ``b = gf(raw, 1)``;
    the image is ``b + 5 gf(b, 10)``.
    """
    raw = np.zeros((size, size))
    draws = rng.integers(0, size, size=(int(0.1 * size * size), 2))
    np.add.at(raw, (draws[:, 0], draws[:, 1]), 1.0)
    blurred = gaussian_filter(raw, 1.0)
    return blurred + 5.0 * gaussian_filter(blurred, 10.0)


def grf_object(size: int, rng: np.random.Generator, exponent: float = -0.4) -> np.ndarray:
    """Gaussian random field with power spectrum ``k^exponent``: ``(size, size)`` float64 in [0, 1]-ish.

    Generated on a ``size/2`` grid (white noise filtered in Fourier space, DC removed),
    normalised to [0, 1], bilinearly resized to ``size`` and blurred with sigma 1.
    """
    n = max(2, size // 2)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    amplitude = np.zeros_like(k)
    amplitude[k > 0] = k[k > 0] ** (exponent / 2.0)
    field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * amplitude).real
    field = (field - field.min()) / (np.ptp(field) or 1.0)
    return gaussian_filter(resize(field, (size, size), order=1), 1.0)


_GENERATORS = {"lines": lines_object, "points": points_object, "grf": grf_object}
OBJECT_KINDS = tuple(_GENERATORS)
"""Names accepted by ``make_object``."""


def make_object(
    kind: str, size: int, rng: np.random.Generator, set_phi: bool = False
) -> np.ndarray:
    """A synthetic object of ``kind`` (``OBJECT_KINDS``): ``(size, size)`` complex64.

    Amplitude A from the generator; phase 0, or with ``set_phi``
    ``pi * tanh((A - max(A)/2) / (3 mean(A)))`` radians (B 11.1).
    """
    if kind not in _GENERATORS:
        raise ConfigError(f"object kind: expected one of {list(OBJECT_KINDS)}; found {kind!r}")
    amplitude = _GENERATORS[kind](size, rng)
    phase = np.zeros_like(amplitude)
    if set_phi:
        phase = np.pi * np.tanh((amplitude - amplitude.max() / 2) / (3 * amplitude.mean()))
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)
