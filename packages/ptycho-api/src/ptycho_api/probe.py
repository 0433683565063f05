"""Probe helpers (physics.md B 6.3): support mask, default probe, model normalisation."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["probe_support_mask", "default_probe", "normalize_probe", "DEFAULT_PROBE_SCALE"]

DEFAULT_PROBE_SCALE = 0.7
"""Width parameter of the default disk probe (legacy ``default_probe_scale``)."""


def probe_support_mask(N: int) -> np.ndarray:
    """Circular probe support: ``(N, N)`` float32, 1 where ``hypot(i-N/2+0.5, j-N/2+0.5) < N//4``.

    812 pixels at N=64 and 3228 at N=128 (B 15).
    """
    idx = np.arange(N, dtype=np.float64) - N / 2 + 0.5
    radius = np.hypot(idx[:, None], idx[None, :])
    return (radius < N // 4).astype(np.float32)


def default_probe(N: int, default_probe_scale: float = DEFAULT_PROBE_SCALE) -> np.ndarray:
    """The built-in real disk probe of B 6.3: ``(N, N)`` complex64 with zero phase.

    A 1-D symmetric Gaussian window (std ``N / (default_probe_scale * pi^2)``, max-normalised)
    gives the disk ``outer(w, w) > 0.5`` (376 px at N=64); it is blurred with a Gaussian of
    sigma 1 px and offset by 1e-9 so that it is nowhere exactly zero. Un-normalised: simulation
    uses it as is, the model normalises it with ``normalize_probe``.
    """
    # scipy.signal.windows.gaussian(N, std, sym=True), written out: scipy.signal is slow to import.
    std = N / (default_probe_scale * np.pi**2)
    n = np.arange(N) - (N - 1) / 2
    window = np.exp(-(n**2) / (2 * std**2))
    window = window / window.max()
    disk = (np.outer(window, window) > 0.5).astype(np.float64)
    return (gaussian_filter(disk, sigma=1.0) + 1e-9).astype(np.complex64)


def normalize_probe(probe: np.ndarray, probe_scale: float = 4.0) -> np.ndarray:
    """Model probe of B 6.3: ``P / (probe_scale * mean|mask * P|)``, ``(N, N)`` -> ``(N, N)`` complex64.

    The mean runs over all N^2 pixels, so afterwards ``mean|mask * P| == 1 / probe_scale``.
    For the default probe at N=64 with probe_scale 4: max |P| 2.7234, sum |P|^2 2505.119.
    """
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1]:
        raise ValueError(f"normalize_probe: probe must be (N, N); found shape {probe.shape}")
    if not probe_scale > 0:
        raise ValueError(f"normalize_probe: probe_scale must be > 0; found {probe_scale!r}")
    p = probe.astype(np.complex128)
    denominator = probe_scale * np.mean(np.abs(probe_support_mask(probe.shape[0]) * p))
    if denominator == 0:
        raise ValueError("normalize_probe: the probe is zero everywhere inside its support mask")
    return (p / denominator).astype(np.complex64)
