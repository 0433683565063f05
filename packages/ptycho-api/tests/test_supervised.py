"""Supervised mode's backend-neutral pieces: the ground-truth check, the targets, the reference
loss, and the ``--model-type`` option of ``ptycho train``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_run import ptycho

from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.container import create_ptycho_data_container
from ptycho_api.errors import ConfigError, DataError
from ptycho_api.rawdata import RawData
from ptycho_api.simulation import simulate_dataset
from ptycho_api.supervised import require_ground_truth, supervised_loss, supervised_targets


@pytest.fixture(scope="module")
def raw() -> RawData:
    """24 simulated patterns, N 64, with a phase (``set_phi``), ``Y`` and ``objectGuess``."""
    return simulate_dataset(24, N=64, seed=5, set_phi=True)


def _without(raw: RawData, *, Y: bool = False, objectGuess: bool = False) -> RawData:
    """A copy of ``raw`` that keeps ``Y`` / ``objectGuess`` only when asked, read from a file."""
    return RawData(
        raw.xcoords,
        raw.ycoords,
        None,
        None,
        raw.diff3d,
        raw.probeGuess,
        None,
        objectGuess=raw.objectGuess if objectGuess else None,
        Y=raw.Y if Y else None,
        source="scan.npz",
    )


def _config(gridsize: int = 1, **model) -> TrainingConfig:
    cfg = ModelConfig(N=64, gridsize=gridsize, n_filters_scale=1, model_type="supervised", **model)
    return TrainingConfig(model=cfg, n_groups=24 // gridsize**2, seed=1)


def test_missing_ground_truth_names_the_file_and_both_keys(raw):
    bare = _without(raw)
    with pytest.raises(DataError) as info:
        require_ground_truth(bare)
    message = str(info.value)
    assert message.startswith("scan.npz: ") and "'Y'" in message and "'objectGuess'" in message
    assert "model_type='supervised'" in message
    # Grouped data and containers without ground truth are refused alike.
    container = create_ptycho_data_container(bare, _config())
    assert not container.has_ground_truth
    with pytest.raises(DataError, match="training data: .*supervised"):
        require_ground_truth(container)
    with pytest.raises(DataError, match="needs 'Y'"):
        supervised_targets(container, _config().model)


@pytest.mark.parametrize("keep", ["Y", "objectGuess"])
def test_either_Y_or_objectGuess_is_enough(raw, keep):
    data = _without(raw, **{keep: True})
    require_ground_truth(data)
    container = create_ptycho_data_container(data, _config())
    assert container.has_ground_truth
    targets = supervised_targets(container, _config().model)
    # objectGuess alone: the grouping cuts the patches from it at the positions (decision 3).
    assert targets.amplitude.shape == container.X.shape


def test_targets_are_amplitude_over_its_maximum_and_the_phase(raw):
    container = create_ptycho_data_container(raw, _config(2))
    targets = supervised_targets(container, _config(2).model)
    truth = container.Y
    a = float(np.max(np.abs(truth)))
    assert targets.amplitude_scale == pytest.approx(a, rel=1e-6)
    # The simulated object's amplitude reaches ~6: a sigmoid head could not reach it unscaled.
    assert a > 1.0
    # float32 division and angle: rel 1e-6 / abs 1e-6 rad are float32 rounding.
    np.testing.assert_allclose(targets.amplitude, np.abs(truth) / a, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(targets.phase, np.angle(truth), atol=1e-6)
    assert targets.amplitude.max() == pytest.approx(1.0, rel=1e-6)
    assert np.ptp(targets.phase) > 0.5  # set_phi: a phase to learn (measured range 0.98 rad)
    # A test container in the training units.
    other = supervised_targets(container, _config(2).model, amplitude_scale=2 * a)
    np.testing.assert_allclose(other.amplitude, targets.amplitude / 2, rtol=1e-6)


def test_one_patch_per_group_is_refused(raw):
    config = _config(2, object_big=False)
    container = create_ptycho_data_container(raw, config)
    with pytest.raises(ConfigError, match="model.object_big: .*needs true; found false"):
        supervised_targets(container, config.model)


def test_reference_loss_is_the_sum_of_two_mean_absolute_errors():
    rng = np.random.default_rng(0)
    a, b, c, d = (rng.normal(size=(2, 8, 8, 4)) for _ in range(4))
    expected = np.mean(np.abs(a - c)) + np.mean(np.abs(b - d))
    assert supervised_loss(a, b, c, d) == pytest.approx(expected, rel=1e-12)  # float64 both ways


def test_cli_model_type_option(tmp_path: Path):
    """Shown with its default in --help; a bad value is a usage error; supervised is accepted
    (no backend is installed in this session, so a valid command stops at backend selection)."""
    res = ptycho("train", "--help", cwd=tmp_path)
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "--model-type {pinn,supervised}" in text and "(default pinn)" in text
    res = ptycho("train", "--train-data", "x.npz", "--model-type", "gan", cwd=tmp_path)
    assert res.returncode == 2 and "invalid choice: 'gan'" in res.stderr
    res = ptycho("train", "--train-data", "x.npz", "--model-type", "supervised", cwd=tmp_path)
    assert res.returncode == 2 and "no PtychoPINN backend is installed" in res.stderr
