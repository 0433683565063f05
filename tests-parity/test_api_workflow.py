"""``ptycho_api.workflows.train_cdi_model`` (the path the CLI takes) with each backend.

DESIGN.md section 3: one ``seed`` fixes grouping, weight initialisation and shuffling, so the same
seed on the same backend and machine gives the same model. The comparison is exact (tolerance 0):
both backends make seeded runs deterministic (TensorFlow op determinism, Lightning's
seed_everything), so any difference means a source of randomness escaped the seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.simulation import simulate_dataset
from ptycho_api.workflows import train_cdi_model

BACKENDS = ["tensorflow", "pytorch"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scan():
    return simulate_dataset(n_images=64, N=64, seed=31)


def _train(scan, backend: str, out: Path, **fields) -> tuple[dict, dict, dict]:
    settings = {"nepochs": 1, "batch_size": 16, "n_groups": 64, **fields}
    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=1, n_filters_scale=1),
        output_dir=out,
        backend=backend,
        **settings,
    )
    results = train_cdi_model(scan, None, config, save=False)
    return results["backend"].export_weights(results["model"]), results["history"], results


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_model(scan, backend, tmp_path):
    first, history, _ = _train(scan, backend, tmp_path / "a", seed=3)
    again, history_again, _ = _train(scan, backend, tmp_path / "b", seed=3)
    other, _, _ = _train(scan, backend, tmp_path / "c", seed=4)
    assert history == history_again
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    assert any(not np.array_equal(first[k], other[k]) for k in first if k.startswith("encoder"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_progress_reaches_the_backend(scan, backend, tmp_path):
    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=1, n_filters_scale=1),
        output_dir=tmp_path,
        backend=backend,
        nepochs=2,
        batch_size=16,
        n_groups=64,
        seed=3,
    )
    calls = []
    results = train_cdi_model(
        scan, None, config, save=False, progress=lambda *args: calls.append(args)
    )
    assert [call[:2] for call in calls] == [(1, 2), (2, 2)]
    assert [call[2]["loss"] for call in calls] == results["history"]["loss"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_trainable_flags_reach_the_model(scan, backend, tmp_path):
    trained, _, results = _train(
        scan,
        backend,
        tmp_path / "flags",
        seed=5,
        probe_trainable=True,
        intensity_scale_trainable=False,
    )
    impl = results["backend"]
    # The untrained model of the same seed and inputs: what training started from.
    start = impl.export_weights(
        impl.build_model(
            ModelConfig(N=64, gridsize=1, n_filters_scale=1),
            results["train_container"].probe,
            results["intensity_scale"],
            seed=5,
        )
    )
    assert not np.array_equal(trained["physics/probe"], start["physics/probe"])
    np.testing.assert_array_equal(
        trained["physics/log_intensity_scale"], start["physics/log_intensity_scale"]
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_single_pattern_scan_trains_without_validation(backend, tmp_path):
    # Issue 17: TensorFlow refused a 1-pattern scan (Keras' validation split left no training
    # data) while PyTorch trained it; one group now trains on both, with nothing held out.
    one = simulate_dataset(n_images=1, N=64, seed=31)
    _, history, _ = _train(one, backend, tmp_path, nepochs=2, n_groups=1, seed=0)
    assert len(history["loss"]) == 2 and np.all(np.isfinite(history["loss"])), history
    # The second epoch's step lowers the loss: the one pattern was trained on, not held out.
    assert history["loss"][1] < history["loss"][0], history
    # Both backends write NaN where there is no validation set.
    assert np.all(np.isnan(history["val_loss"])), history
