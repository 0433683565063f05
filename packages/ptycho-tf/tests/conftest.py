"""Shared fixtures: small simulated scans and a clean ``params.cfg`` for every test."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from ptycho_api import params
from ptycho_api.simulation import simulate_dataset


@pytest.fixture(autouse=True)
def _clean_params():
    params.reset()
    yield
    params.reset()


@pytest.fixture(scope="session")
def raw_train():
    """256 simulated patterns, N=64, lines object, Poisson noise (seed 3)."""
    return simulate_dataset(256, N=64, seed=3)


@pytest.fixture(scope="session")
def raw_test():
    """128 simulated patterns of another object (seed 4)."""
    return simulate_dataset(128, N=64, seed=4)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a - b| / max|b|`` (parity.md section 2)."""
    a = np.asarray(a)
    b = np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
