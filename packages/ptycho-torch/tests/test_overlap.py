"""Overlap within a group: gridsize 2 reconstructs a held-out object better than gridsize 1.

The published grid protocol (392 px ``lines`` objects, groups of 2 x 2 patterns 4 px apart,
groups 8 px apart for training and 20 px apart for testing, 1e9 photons, N 64) with the
idealised disk probe. That probe is real and centro-symmetric, so a single pattern cannot tell
the object from its twin (complex conjugate, point-reflected); the known offsets between the
members of a group break the ambiguity. This is the method's central claim: the published
table (60 epochs) gives gridsize 2 an amplitude SSIM of 0.952 against 0.620 for gridsize 1.

A short schedule (10 epochs of 1,024 groups, batch 8, n_filters_scale 1) is about the smallest
that shows the gap: measured on the development machine (torch 2.13, CPU, seeds 1 / 2 / 3),
amplitude SSIM of the held-out object 0.436 / 0.418 / 0.466 (gridsize 1) against 0.585 / 0.589 /
0.608 (gridsize 2), a lead of 0.14 to 0.17; amplitude MAE 0.048 / 0.050 / 0.049 against 0.037 /
0.035 / 0.038. With half the samples in as many steps (5 epochs of 1,024 groups at batch 4)
gridsize 2 is still behind (0.343 against 0.367). The asserted lead, 0.03 amplitude SSIM, is the
one the quality protocol asks of gridsize 2 over gridsize 1, a fifth of the lead measured here.
"""

from __future__ import annotations

import os

import pytest
import torch

from ptycho_api.backend import select_backend
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.grid import simulate_grid_pair
from ptycho_api.grid_quality import score_grid_training
from ptycho_api.probe import builtin_probe, prepare_probe

MARGIN_SSIM = 0.03
"""The quality protocol's required lead of gridsize 2 over gridsize 1 (amplitude SSIM)."""


@pytest.fixture
def two_threads():
    """Training here is long enough to gain from both cores (the suite pins one thread), unless
    ``OMP_NUM_THREADS`` says otherwise (CI runs two suites at once, one thread each)."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    yield
    torch.set_num_threads(before)


def _score(gridsize: int) -> tuple[float, float]:
    probe = prepare_probe(builtin_probe("disk", 64), 64, 0.0)
    train, test = simulate_grid_pair(gridsize, probe, seed=1, n_objects_test=1)
    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=gridsize, object_big=False, n_filters_scale=1),
        nepochs=10,
        batch_size=8,
        n_groups=1024,
        nphotons=1e9,
        seed=1,
    )
    results = score_grid_training(select_backend("pytorch"), train, test, config)
    # The protocol's figures are the original's crop stitching; the probe-weighted one of the
    # same patches is scored beside it.
    assert set(results["metrics_by_stitch"]) == {"crop", "probe"}
    metrics = results["metrics"]
    assert metrics is results["metrics_by_stitch"]["crop"]
    return float(metrics["ssim"][0]), float(metrics["mae"][0])


def test_gridsize_2_reconstructs_better_than_gridsize_1(two_threads):
    ssim_1, mae_1 = _score(1)
    ssim_2, mae_2 = _score(2)
    assert ssim_2 >= ssim_1 + MARGIN_SSIM, (ssim_1, ssim_2)
    assert mae_2 < mae_1, (mae_1, mae_2)
