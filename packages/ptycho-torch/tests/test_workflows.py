"""Seed-compatible entry points end to end on simulated data (DESIGN.md section 4, B 8, B 9)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho_api import params
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.simulation import simulate_dataset
from ptycho_bundle import load_bundle
from ptycho_torch.config import ExecutionConfig
from ptycho_torch.workflows.components import (
    _reassemble_cdi_image_torch,
    load_inference_bundle_torch,
    run_cdi_example_torch,
)
from ptycho_torch.wrapper import TorchModelWrapper


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """run_cdi_example_torch(train, test, config): 64 training and 48 test patterns, 2 epochs."""
    train = simulate_dataset(n_images=64, N=64, seed=21)
    test = simulate_dataset(n_images=48, N=64, seed=22)
    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=1, n_filters_scale=1),
        nepochs=2,
        batch_size=16,
        n_groups=64,
        seed=4,
        output_dir=tmp_path_factory.mktemp("workflow"),
    )
    execution = ExecutionConfig(accelerator="cpu", enable_progress_bar=False)
    amp, phase, results = run_cdi_example_torch(train, test, config, execution_config=execution)
    legacy = dict(params.cfg)  # the autouse fixture resets params.cfg before each test
    return {"amp": amp, "phase": phase, "results": results, "config": config, "legacy": legacy}


def test_run_cdi_example_returns_images_and_results(run):
    amp, phase, results = run["amp"], run["phase"], run["results"]
    assert amp.ndim == 2 and amp.shape == phase.shape and amp.shape[0] == amp.shape[1]
    assert np.all(np.isfinite(amp)) and np.all(np.abs(phase) <= np.pi) and amp.max() > 0
    for key in ("history", "train_container", "test_container", "intensity_scale"):
        assert key in results
    assert len(results["history"]["loss"]) == 2
    assert results["patches"].shape == (48, 64, 64, 1)
    # CONFIG-001 ran first: the legacy dict reflects the config.
    legacy = run["legacy"]
    assert (legacy["N"], legacy["gridsize"], legacy["n_filters_scale"], legacy["nepochs"]) == (
        64,
        1,
        1,
        2,
    )
    assert legacy["intensity_scale"] == results["intensity_scale"]


def test_run_cdi_example_writes_the_archive(run):
    path = run["config"].output_dir / "wts.h5.zip"
    assert run["results"]["archive"] == path and path.is_file()
    bundle = load_bundle(path)
    assert (
        bundle.backend == "pytorch" and bundle.history["loss"] == run["results"]["history"]["loss"]
    )
    assert bundle.intensity_scale == pytest.approx(run["results"]["intensity_scale"], rel=1e-12)


def test_load_inference_bundle_predicts_like_the_trained_model(run):
    params.reset()
    model, snapshot = load_inference_bundle_torch(run["config"].output_dir)
    assert isinstance(model, TorchModelWrapper) and snapshot["N"] == 64
    container = run["results"]["test_container"]
    patches = model.predict(
        [container.X * np.float32(params.cfg["intensity_scale"]), container.local_offsets]
    )
    # Bit-identical weights from weights.h5; same batches: identical float32 results (1e-6 bound).
    want = run["results"]["patches"]
    assert np.max(np.abs(patches - want)) <= 1e-6 * np.max(np.abs(want))
    amp, phase, stitched_patches = _reassemble_cdi_image_torch(
        container, run["config"], model=model
    )
    np.testing.assert_allclose(amp, run["amp"], rtol=1e-6, atol=1e-6 * run["amp"].max())


def test_reassemble_options_flip_transpose_and_scale(run):
    container = run["results"]["test_container"]
    model = run["results"]["model"]
    amp, _, patches = _reassemble_cdi_image_torch(container, run["config"], model=model)
    flipped, _, _ = _reassemble_cdi_image_torch(container, run["config"], flip_x=True, model=model)
    transposed, _, t_patches = _reassemble_cdi_image_torch(
        container, run["config"], transpose=True, model=model
    )
    scaled, _, _ = _reassemble_cdi_image_torch(
        container, run["config"], coord_scale=2.0, model=model
    )
    np.testing.assert_array_equal(t_patches, np.swapaxes(patches, 1, 2))
    assert flipped.shape == amp.shape and not np.allclose(flipped, amp)
    assert transposed.shape == amp.shape
    assert scaled.shape[0] > amp.shape[0]
