"""Archive round trip through ``ptycho_bundle`` (spec/bundle.md part 1; issue 5 item 6)."""

from __future__ import annotations

import io
import zipfile

import keras
import numpy as np
import pytest
from conftest import rel

from ptycho_api import params
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.probe import default_probe
from ptycho_api.workflows import load_inference_bundle
from ptycho_bundle import load_bundle, save_bundle
from ptycho_tf.backend import Backend as TFBackend
from ptycho_tf.model_manager import ModelManager

S64 = 988.2118


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    backend = TFBackend()
    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=2, n_filters_scale=1, probe_mask=True),
        nphotons=1e9,
        seed=11,
        output_dir=tmp_path_factory.mktemp("out"),
    )
    models = backend.build_model(config.model, default_probe(64), S64, seed=11)
    # Move lambda off its initial value so the round trip must carry the weight, not the config.
    models.scaler.log_scale.assign(np.log(S64) + 0.25)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 900, size=(6, 64, 64, 4)).astype(np.float32)
    offsets = rng.uniform(-3, 3, size=(6, 1, 2, 4)).astype(np.float32)
    before = backend.predict(models, x, offsets)
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, float("nan")], "lr": [1e-3, 1e-3]}
    path = backend.save_archive(models, config.output_dir, config, history=history)
    return backend, models, config, path, x, offsets, before


def test_archive_layout_and_manifest(saved):
    _, _, config, path, *_ = saved
    assert path == config.output_dir / "wts.h5.zip"
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    assert {"manifest.json", "params.json", "config.json", "weights.h5", "history.json"} <= names
    assert {"autoencoder/model.keras", "diffraction_to_obj/model.keras"} <= names
    bundle = load_bundle(path)
    assert bundle.backend == "tensorflow"
    assert (bundle.N, bundle.gridsize, bundle.intensity_scale) == (64, 2, pytest.approx(S64))
    assert bundle.config["model"]["probe_mask"] is True


def test_round_trip_predictions_and_params(saved):
    backend, _, config, path, x, offsets, before = saved
    params.cfg["nphotons"] = 5.0  # CONFIG-001 must restore the saved value
    loaded, snapshot = load_inference_bundle(path, backend=backend)
    after = backend.predict(loaded, x, offsets)
    assert rel(after, before) <= 1e-6  # issue 5 bound; same weights and graph give equality
    assert params.cfg["nphotons"] == 1e9
    assert params.cfg["gridsize"] == 2 and params.cfg["probe.mask"] is True
    assert params.cfg["intensity_scale"] == pytest.approx(S64)
    assert snapshot["seed"] == 11


@pytest.mark.parametrize("name", ["autoencoder", "diffraction_to_obj"])
def test_native_model_keras_loads_in_safe_mode(saved, tmp_path, name):
    _, models, _, path, x, offsets, _ = saved
    data = load_bundle(path).native(name, "model.keras")
    target = tmp_path / "model.keras"
    target.write_bytes(data)
    model = keras.models.load_model(target, safe_mode=True)
    want = getattr(models, name).predict([x, offsets], verbose=0)
    got = model.predict([x, offsets], verbose=0)
    if name == "diffraction_to_obj":
        got, want = [got], [want]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)  # same weights, same graph, same batch: exact


def test_loads_an_archive_written_by_the_pytorch_backend(saved, tmp_path):
    """A PyTorch archive carries only canonical weights; they are enough (bundle.md 1)."""
    backend, models, config, _, x, offsets, before = saved
    bundle = load_bundle(saved[3])
    path = save_bundle(
        tmp_path,
        backend="pytorch",
        config=bundle.config,
        params=bundle.params,
        weights=bundle.weights,
    )
    with zipfile.ZipFile(path) as archive:
        assert not [n for n in archive.namelist() if n.endswith(".keras")]
    loaded, _ = backend.load_archive(path)
    assert rel(backend.predict(loaded, x, offsets), before) <= 1e-6


def test_model_manager_save_and_load(saved, tmp_path):
    backend, models, config, _, x, offsets, before = saved
    params.cfg.update({"N": 64, "gridsize": 2, "n_filters_scale": 1, "probe.mask": True})
    path = ModelManager.save_multiple_models(
        {"autoencoder": models.autoencoder, "diffraction_to_obj": models.diffraction_to_obj},
        tmp_path / "wts.h5",
        intensity_scale=S64,
    )
    assert path.name == "wts.h5.zip"
    loaded = ModelManager.load_multiple_models(tmp_path)
    assert sorted(loaded) == ["autoencoder", "diffraction_to_obj"]
    got = loaded["diffraction_to_obj"].predict([x, offsets], verbose=0)
    assert rel(got, before) <= 1e-5  # Keras predict vs the backend's step: float32 reordering


def test_keras_bytes_are_zip_files(saved):
    data = load_bundle(saved[3]).native("autoencoder", "model.keras")
    assert zipfile.is_zipfile(io.BytesIO(data))
