"""Fixtures for driving Ptychodus 1.7.0's "PtychoPINN" library headless, and the figures table."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ptychodus_scan import Scan, make_scan  # noqa: E402

# The backend the session installed (nox sets it); the tests check that it is the one used.
EXPECTED_BACKEND = os.environ.get("PTYCHO_EXPECT_BACKEND")
# Train PINN and Supervised at the same time (nox sets it per backend: measured on 2 cores,
# TensorFlow's batch-4 steps leave a core idle, so two trainings at once take 204 s of session
# instead of 288 s; PyTorch's OpenMP threads fill both cores, and two at once took 343 s
# instead of 251 s).
CONCURRENT_TRAINING = os.environ.get("PTYCHODUS_CONCURRENT_TRAINING") == "1"

# Sizes: enough optimisation steps (5 epochs x 512 patterns, batch 4: 640 steps) for the
# network to learn the density of lines, small enough for a CPU session within minutes.
N_TRAIN = 512
N_TEST = 256
TRAINING = {"batch_size": 4, "nepochs": 5, "nphotons": 1e5}
# The supervised network learns the object from the labels alone, without the forward model's
# help: after 640 steps it still predicts the mean amplitude (SSIM 0.233, the untrained
# network's), after 1,920 steps (15 epochs) it resolves the lines (SSIM about 0.31, PyTorch).
EPOCHS = {"PINN": TRAINING["nepochs"], "Supervised": 15}
MODEL = {"gridsize": 1, "n_filters_scale": 1}

FIGURES: dict[str, dict[str, Any]] = {}
"""Per reconstructor: training time and amplitude SSIM, printed at the end of the run."""


@pytest.fixture(scope="session")
def train_scan() -> Scan:
    return make_scan(N_TRAIN, seed=1)


@pytest.fixture(scope="session")
def test_scan() -> Scan:
    return make_scan(N_TEST, seed=2)


def build_library(nepochs: int | None = None) -> Any:
    """A fresh ``PtychoPINNReconstructorLibrary`` with the test's settings (``nepochs`` overrides)."""
    from ptychodus.api.settings import SettingsRegistry
    from ptychodus.model.ptychopinn.core import PtychoPINNReconstructorLibrary

    library = PtychoPINNReconstructorLibrary(SettingsRegistry(), is_developer_mode_enabled=False)
    for name, value in MODEL.items():
        getattr(library.model_settings, name).set_value(value)
    for name, value in {**TRAINING, **({} if nepochs is None else {"nepochs": nepochs})}.items():
        getattr(library.training_settings, name).set_value(value)
    # Ptychodus's default reconstructs a single group; reconstruct every test position.
    library.inference_settings.n_samples.set_value(N_TEST)
    return library


def reconstructor(library: Any, name: str) -> Any:
    """The reconstructor called ``name`` in ``library``."""
    found = {r.name: r for r in library}
    return found[name]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    backend = EXPECTED_BACKEND or "selected by the ladder"
    terminalreporter.section(f"Ptychodus 1.7.0 figures (backend: {backend})")
    terminalreporter.write_line(
        f"{'reconstructor':<14} {'train s':>8} {'amp SSIM':>9} {'untrained':>10}"
    )
    for name, row in sorted(FIGURES.items()):
        terminalreporter.write_line(
            f"{name:<14} {row.get('train_s', float('nan')):>8.1f} "
            f"{row.get('ssim', float('nan')):>9.3f} {row.get('untrained', float('nan')):>10.3f}"
        )
