"""The ``wts.h5.zip`` archive: round trip, CONFIG-001 restore, native and canonical weights,
archives written by the TensorFlow backend (bundle.md part 1, parity.md section 1)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from ptycho_api import params
from ptycho_api.backend import Backend, select_backend
from ptycho_api.config import ModelConfig, TrainingConfig, config_to_dict
from ptycho_api.normalization import intensity_scale
from ptycho_api.probe import default_probe
from ptycho_api.workflows import load_inference_bundle
from ptycho_bundle import legacy_params, load_bundle, save_bundle
from ptycho_torch.archive import load_archive, save_archive
from ptycho_torch.model import PtychoPINN, build_model
from ptycho_torch.model_manager import load_torch_bundle, save_torch_bundle
from ptycho_torch.modules import DiffractionToObject
from ptycho_torch.weights import export_weights

ROUND_TRIP_TOL = 1e-6
"""Done-when bound; the weights are bit-identical, so predictions agree to float32 exactly."""


@pytest.fixture
def trained_like(tmp_path):
    """A model with perturbed lambda and probe (as after training) and its config."""
    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=2, n_filters_scale=1, probe_mask=True),
        nphotons=1e8,
        probe_trainable=True,
        seed=3,
        output_dir=tmp_path / "out",
    )
    s = intensity_scale(config.nphotons, 64)
    model = build_model(config.model, default_probe(64), s, seed=3, probe_trainable=True)
    with torch.no_grad():
        model.log_intensity_scale.add_(0.05)
        model.probe_imag.add_(0.02)
    return model, config, s


def _inputs(seed: int = 0, C: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.uniform(0, 2, (5, 64, 64, C)) * 300).astype(np.float32)
    offsets = rng.uniform(-2, 2, (5, 1, 2, C)).astype(np.float32)
    return x, offsets


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_round_trip_predictions_and_params_restore(trained_like):
    model, config, s = trained_like
    backend = select_backend("pytorch")
    x, offsets = _inputs()
    before = backend.predict(model, x, offsets)
    path = save_archive(model, config.output_dir, config, history={"loss": [1.0]})
    assert path == config.output_dir / "wts.h5.zip"
    params.reset()
    assert params.cfg["gridsize"] != 2 and params.cfg["nphotons"] == 1e9
    loaded, snapshot = load_inference_bundle(config.output_dir, backend=backend)
    assert _rel(backend.predict(loaded, x, offsets), before) <= ROUND_TRIP_TOL
    # CONFIG-001: the snapshot is back in params.cfg.
    for key in ("N", "gridsize", "nphotons", "probe.mask", "probe.trainable", "n_filters_scale"):
        assert params.cfg[key] == snapshot[key]
    assert (params.cfg["gridsize"], params.cfg["nphotons"], params.cfg["probe.mask"]) == (
        2,
        1e8,
        True,
    )
    assert params.cfg["intensity_scale"] == pytest.approx(s, rel=1e-12)
    assert loaded.probe_trainable and loaded.intensity_scale_trainable


def test_archive_members_and_native_state_dicts(trained_like):
    model, config, s = trained_like
    path = save_archive(model, config.output_dir, config)
    bundle = load_bundle(path)
    assert bundle.backend == "pytorch" and bundle.config == config_to_dict(config)
    assert bundle.N == 64 and bundle.gridsize == 2
    names = set(zipfile.ZipFile(path).namelist())
    assert {"autoencoder/model.pth", "diffraction_to_obj/model.pth", "weights.h5"} <= names
    # Native state_dicts hold plain tensors: loadable with weights_only=True.
    state = torch.load(io.BytesIO(bundle.native("autoencoder", "model.pth")), weights_only=True)
    assert set(state) == set(model.state_dict())
    d2o = torch.load(
        io.BytesIO(bundle.native("diffraction_to_obj", "model.pth")), weights_only=True
    )
    assert set(d2o) == set(DiffractionToObject(model).state_dict())


def test_native_and_canonical_loading_give_identical_models(trained_like):
    model, config, s = trained_like
    save_archive(model, config.output_dir, config)
    native, _ = load_archive(config.output_dir, native=True)
    canonical, _ = load_archive(config.output_dir, native=False)
    for key, value in export_weights(native).items():
        np.testing.assert_array_equal(value, export_weights(canonical)[key])  # bit-identical


def test_canonical_export_import_gives_identical_outputs(trained_like):
    model, config, s = trained_like
    backend = select_backend("pytorch")
    fresh = backend.build_model(config.model, np.ones((64, 64), np.complex64), 1.0)
    backend.import_weights(fresh, backend.export_weights(model))
    x, offsets = _inputs(1)
    with torch.no_grad():
        for a, b in zip(
            model(torch.from_numpy(x), torch.from_numpy(offsets)),
            fresh(torch.from_numpy(x), torch.from_numpy(offsets)),
            strict=True,
        ):
            assert torch.equal(a, b)  # same float32 weights and arithmetic: identical


def test_loads_an_archive_written_by_the_tensorflow_backend(trained_like, tmp_path):
    """Only weights.h5 + config.json + params.json, as the TF backend writes them (no model.pth)."""
    model, config, s = trained_like
    target = tmp_path / "tf_model"
    save_bundle(
        target,
        backend="tensorflow",
        config=config_to_dict(config),
        params=legacy_params(config, s),
        weights=export_weights(model),
        native={"diffraction_to_obj": {"model.keras": b"not read by the torch backend"}},
    )
    loaded, snapshot = load_archive(target, native=True)
    x, offsets = _inputs(2)
    backend = select_backend("pytorch")
    assert (
        _rel(backend.predict(loaded, x, offsets), backend.predict(model, x, offsets))
        <= ROUND_TRIP_TOL
    )
    assert snapshot["gridsize"] == 2


def test_model_config_falls_back_to_params_when_config_lacks_model(trained_like, tmp_path):
    model, config, s = trained_like
    save_bundle(
        tmp_path,
        backend="tensorflow",
        config={"nepochs": 1},
        params=legacy_params(config, s),
        weights=export_weights(model),
    )
    loaded, _ = load_archive(tmp_path)
    assert loaded.model_config.probe_mask and loaded.model_config.gridsize == 2


def test_original_api_save_and_load_torch_bundle(trained_like, tmp_path):
    model, config, s = trained_like
    path = save_torch_bundle(
        {"autoencoder": model, "diffraction_to_obj": DiffractionToObject(model)},
        tmp_path / "wts.h5",
        config,
    )
    assert path == tmp_path / "wts.h5.zip"
    models, snapshot = load_torch_bundle(tmp_path / "wts.h5")
    assert isinstance(models["autoencoder"], PtychoPINN)
    assert isinstance(models["diffraction_to_obj"], DiffractionToObject)
    assert snapshot["intensity_scale"] == pytest.approx(s, rel=1e-12)


def test_backend_implements_the_whole_protocol(trained_like, tmp_path):
    model, config, s = trained_like
    backend = select_backend("pytorch")
    assert isinstance(backend, Backend)
    path = backend.save_archive(model, tmp_path, config, history={"loss": [2.0]})
    assert load_bundle(path).history == {"loss": [2.0]}
    x, offsets = _inputs(3)
    patches = backend.predict(model, x, offsets, batch_size=2)
    centres = np.array(
        [
            [[[30.0], [31.0]]],
            [[[33.5], [30.0]]],
            [[[36.0], [38.25]]],
            [[[29.0], [35.0]]],
            [[[31.0], [33.0]]],
        ]
    )
    image = backend.reassemble_position(patches, centres, M=20)
    assert image.dtype == np.complex64 and image.ndim == 3 and image.shape[-1] == 1
