"""Shared fixtures for the data-pipeline tests: small valid scans and NPZ writers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ptycho_api.rawdata import RawData


def make_scan_arrays(n: int = 40, N: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """A small, valid scan as the NPZ contract's arrays (float32 amplitudes, complex probe)."""
    rng = np.random.default_rng(seed)
    obj = (rng.uniform(0.5, 1.5, (64, 64)) * np.exp(1j * rng.uniform(-1, 1, (64, 64)))).astype(
        np.complex64
    )
    return {
        "diff3d": rng.uniform(0.0, 2.0, (n, N, N)).astype(np.float32),
        "probeGuess": (rng.normal(size=(N, N)) + 1j * rng.normal(size=(N, N))).astype(np.complex64),
        "xcoords": rng.uniform(N / 2, 64 - N / 2, n),
        "ycoords": rng.uniform(N / 2, 64 - N / 2, n),
        "scan_index": np.zeros(n, dtype=np.int64),
        "objectGuess": obj,
    }


@pytest.fixture
def scan_arrays() -> dict[str, np.ndarray]:
    """Arrays of a valid 40-position scan with 16 x 16 patterns."""
    return make_scan_arrays()


@pytest.fixture
def raw(scan_arrays: dict[str, np.ndarray]) -> RawData:
    """A valid RawData built from ``scan_arrays``."""
    a = scan_arrays
    return RawData.from_coords_without_pc(
        a["xcoords"], a["ycoords"], a["diff3d"], a["probeGuess"], a["scan_index"], a["objectGuess"]
    )


@pytest.fixture
def write_npz(tmp_path: Path) -> Callable[..., Path]:
    """Write keyword arrays to ``tmp_path/<name>`` with ``numpy.savez`` and return the path."""

    def write(name: str = "scan.npz", **arrays: Any) -> Path:
        path = tmp_path / name
        np.savez(path, **arrays)
        return path

    return write
