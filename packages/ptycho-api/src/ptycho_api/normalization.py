"""Diffraction normalisation and the intensity scale (physics.md B 5.1, B 5.3; decision 11)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["normalization_factor", "normalize_data", "intensity_scale", "norm_from_data"]


_CHUNK = 1024
"""Groups processed at a time, so float64 working copies stay small for large grouped sets."""


def _pattern_energies(diffraction: np.ndarray) -> np.ndarray:
    """Sum of squares of every pattern of ``(B, N, N, C)`` amplitudes: ``(B, C)`` float64."""
    d = np.asarray(diffraction)
    energies = np.empty((d.shape[0], d.shape[3]), dtype=np.float64)
    for lo in range(0, d.shape[0], _CHUNK):
        part = d[lo : lo + _CHUNK].astype(np.float64)
        energies[lo : lo + _CHUNK] = np.sum(part * part, axis=(1, 2))
    return energies


def normalization_factor(diffraction: np.ndarray) -> float:
    """alpha of B 5.1 for grouped amplitudes ``(B, N, N, C)``: ``sqrt((N/2)^2 / mean_{b,c} sum X^2)``.

    The mean runs over all B*C patterns of the grouped set, duplicates included; float64.
    """
    N = np.asarray(diffraction).shape[1]
    mean_energy = float(np.mean(_pattern_energies(diffraction)))
    if not mean_energy > 0:
        raise ValueError("cannot normalise diffraction whose patterns are all zero")
    return math.sqrt((N / 2) ** 2 / mean_energy)


def normalize_data(diffraction: np.ndarray) -> np.ndarray:
    """Normalised amplitudes ``X = alpha * diffraction``: ``(B, N, N, C)`` -> ``(B, N, N, C)`` float32.

    Afterwards the mean over patterns of ``sum X^2`` is ``(N/2)^2``; the file's scale is lost.
    """
    d = np.asarray(diffraction)
    alpha = normalization_factor(d)
    out = np.empty(d.shape, dtype=np.float32)
    for lo in range(0, d.shape[0], _CHUNK):
        out[lo : lo + _CHUNK] = d[lo : lo + _CHUNK].astype(np.float64) * alpha
    return out


def intensity_scale(nphotons: float, N: int) -> float:
    """s = sqrt(nphotons) / (N/2) (decision 11): 988.2118 for 1e9 photons at N=64, 494.1059 at N=128.

    Units: sqrt(counts) per normalised amplitude unit, so ``mean sum (s X)^2 == nphotons``.
    """
    if not nphotons > 0:
        raise ValueError(f"nphotons must be > 0; found {nphotons!r}")
    return math.sqrt(nphotons) / (N / 2)


def norm_from_data(X: np.ndarray, nphotons: float) -> float:
    """``norm_Y_I`` of B 5.2: ``sqrt(nphotons / mean_{b,c} sum X^2)`` for ``(B, N, N, C)`` X, a float.

    Equals ``intensity_scale(nphotons, N)`` up to rounding once X is normalised.
    """
    return math.sqrt(nphotons / float(np.mean(_pattern_energies(X))))
