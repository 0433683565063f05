"""Shared fixtures: small simulated scans and a clean legacy params dict for every test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptycho_api import params
from ptycho_api.rawdata import RawData
from ptycho_api.simulation import simulate_dataset

# One intra-op thread: CI machines have 2 cores shared with other sessions, and oversubscribed
# OpenMP threads made small element-wise ops ~50x slower there (measured 7.8 ms vs 0.15 ms for a
# 64x74x74 multiply). Results do not depend on it; run time does.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _clean_state():
    """Each test starts from the default ``params.cfg`` and fixed global RNG seeds."""
    params.reset()
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    params.reset()


@pytest.fixture(scope="session")
def scan_256() -> RawData:
    """256 simulated patterns, N=64, lines object, seed 1 (training smoke data)."""
    return simulate_dataset(n_images=256, N=64, seed=1)


@pytest.fixture(scope="session")
def scan_64() -> RawData:
    """64 simulated patterns, N=64, seed 2 (quick training and archive tests)."""
    return simulate_dataset(n_images=64, N=64, seed=2)


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.max(np.abs(got.astype(np.complex128) - want)) / np.max(np.abs(want)))


@pytest.fixture
def rel():
    """``rel(got, want) = max|got - want| / max|want|`` (parity.md section 2), shapes must agree."""
    return _rel_err
