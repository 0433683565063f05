"""The `ptycho` modules Ptychodus and the original's callers use, framework-free parts."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import ptycho
import ptycho.loader
import ptycho.params
import ptycho.probe
import ptycho.tf_helper
import pytest
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig, update_legacy_dict
from ptycho.raw_data import RawData
from ptycho.workflows.components import save_outputs

from ptycho_api import params as api_params
from ptycho_api.probe import normalize_probe
from ptycho_api.simulation import simulate_dataset


@pytest.fixture(autouse=True)
def _fresh_params():
    ptycho.params.reset()
    yield
    ptycho.params.reset()


def _counts_scan(n: int = 32, seed: int = 0) -> tuple[RawData, np.ndarray, np.ndarray]:
    """A simulated scan as Ptychodus passes it: uint16 counts and a (1, N, N) probe."""
    raw = simulate_dataset(n_images=n, N=64, nphotons=1e5, seed=seed)
    counts = np.round((raw.diff3d.astype(np.float64) * raw.metadata["simulation"]["s_sim"]) ** 2)
    return raw, counts.astype(np.uint16), raw.probeGuess[None]


def test_configs_pickle_and_model_n_is_assignable():
    config = TrainingConfig(model=ModelConfig(N=0, gridsize=1, model_type="supervised"))
    config.model.N = 64
    again = pickle.loads(pickle.dumps(config))
    assert again.model.N == 64 and again.model.model_type == "supervised"


def test_params_is_the_api_dict():
    assert ptycho.params.cfg is api_params.cfg
    update_legacy_dict(ptycho.params.cfg, InferenceConfig(model=ModelConfig(N=128, gridsize=2)))
    assert ptycho.params.get("N") == 128 and api_params.get("gridsize") == 2


def test_inference_config_with_ptychodus_placeholder_paths_validates():
    # Ptychodus passes Path() ("not used") for model_path, test_data_file and output_dir.
    config = InferenceConfig(
        model=ModelConfig(N=64), model_path=Path(), test_data_file=Path(), output_dir=Path()
    )
    assert config.validate() is config


def test_counts_and_mode_probe_become_amplitudes_and_one_mode():
    raw, counts, probe = _counts_scan()
    data = RawData.from_coords_without_pc(
        raw.xcoords, raw.ycoords, counts, probe, np.zeros(len(counts), int), raw.objectGuess
    )
    # Integer counts are square-rooted: exact for these integers up to float32 rounding.
    np.testing.assert_allclose(data.diff3d, np.sqrt(counts.astype(np.float64)), rtol=1e-6)
    assert data.probeGuess.shape == (64, 64)


def test_set_probe_guess_stores_the_normalised_probe():
    _, _, probe = _counts_scan(4)
    stored = ptycho.probe.set_probe_guess(None, probe)
    assert stored.shape == (64, 64, 1)
    np.testing.assert_array_equal(stored[..., 0], normalize_probe(probe[0], 4.0))
    assert ptycho.params.cfg["probe"] is stored
    with pytest.raises(ValueError, match="probe_guess is required"):
        ptycho.probe.set_probe_guess(np.ones((4, 64, 64, 1)), None)


def test_loader_packages_grouped_data_for_the_model():
    raw, counts, probe = _counts_scan()
    data = RawData.from_coords_without_pc(raw.xcoords, raw.ycoords, counts, probe, None)
    update_legacy_dict(ptycho.params.cfg, InferenceConfig(model=ModelConfig(N=64, gridsize=1)))
    grouped = data.generate_grouped_data(64, K=7, nsamples=len(counts), gridsize=1)
    container = ptycho.loader.load(lambda: grouped, data.probeGuess, which=None, create_split=False)
    assert container.X.shape == (len(counts), 64, 64, 1)
    assert container.local_offsets.shape == (len(counts), 1, 2, 1)
    assert container.global_offsets.shape == (len(counts), 1, 2, 1)
    # X is normalised (B 5.2): the mean over patterns of sum X^2 is (N / 2)^2.
    np.testing.assert_allclose(np.mean(np.sum(container.X**2, axis=(1, 2, 3))), 32.0**2, rtol=1e-4)
    with pytest.raises(ValueError, match="create_split"):
        ptycho.loader.load(lambda: grouped, data.probeGuess, which="train", create_split=True)


def test_reassemble_position_is_the_numpy_stitcher():
    patches = np.ones((3, 64, 64, 1), np.complex64)
    offsets = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]).reshape(3, 1, 2, 1)
    canvas = ptycho.tf_helper.reassemble_position(patches, offsets, M=20)
    assert canvas.ndim == 3 and canvas.shape[-1] == 1 and canvas.dtype == np.complex64
    # Ones stitched anywhere they land are ones: the canvas is a weighted average.
    covered = np.abs(canvas[..., 0]) > 0.5
    np.testing.assert_allclose(canvas[..., 0][covered], 1.0, atol=1e-6)


def test_save_outputs_writes_history_and_images(tmp_path):
    amplitude = np.random.default_rng(0).random((40, 40, 1)).astype(np.float32)
    phase = np.zeros((40, 40), np.float32)
    history = {"loss": [3.0, 2.0], "val_loss": [float("nan"), float("nan")], "lr": [1e-3, 1e-3]}
    written = save_outputs(amplitude, phase, {"history": history}, str(tmp_path / "run"))
    names = sorted(p.name for p in written)
    assert names == [
        "history.csv",
        "history.json",
        "loss.png",
        "reconstruction.npz",
        "reconstruction.png",
    ]
    with np.load(tmp_path / "run" / "reconstruction.npz") as saved:
        np.testing.assert_array_equal(saved["amplitude"], amplitude[..., 0])


def test_model_manager_save_without_a_model_says_so(tmp_path):
    import ptycho.model_manager

    with pytest.raises(RuntimeError, match="no model has been trained or loaded"):
        ptycho.model_manager.save(tmp_path)


def test_version_is_the_distributions():
    from importlib.metadata import version

    assert ptycho.__version__ == version("ptychopinn")
