"""Network structure, canonical weights and batched prediction of the TF model (B 7, B 15)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ptycho_api.architecture import canonical_weight_shapes
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.errors import ConfigError
from ptycho_api.probe import default_probe
from ptycho_tf.backend import Backend as TFBackend
from ptycho_tf.layers import CUSTOM_LAYERS
from ptycho_tf.model import build_model, create_model_with_gridsize

S64 = 988.2118


def _conv_weight_count(model: keras.Model) -> int:
    return sum(
        int(np.prod(w.shape))
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
        for w in layer.weights
    )


@pytest.mark.parametrize(
    ("N", "gridsize", "expected"),
    [(64, 1, 2_331_772), (64, 2, 2_340_208), (128, 1, 4_661_212)],
)
def test_conv_weight_counts_match_b15(N, gridsize, expected):
    models = build_model(
        ModelConfig(N=N, gridsize=gridsize, n_filters_scale=2), default_probe(N), S64, seed=0
    )
    assert _conv_weight_count(models.autoencoder) == expected
    # The probe (2 N^2) and lambda (1) are the only other weights.
    assert models.autoencoder.count_params() == expected + 2 * N * N + 1


def test_both_models_share_weights_and_have_documented_outputs():
    models = build_model(ModelConfig(N=64, gridsize=2, n_filters_scale=1), default_probe(64), S64)
    ae, d2o = models.autoencoder, models.diffraction_to_obj
    assert [t.shape for t in ae.outputs] == [
        (None, 64, 64, 1),
        (None, 64, 64, 4),
        (None, 64, 64, 4),
    ]
    assert [t.dtype for t in ae.outputs] == ["complex64", "float32", "float32"]
    assert d2o.outputs[0].dtype == "complex64"
    assert {id(w) for w in d2o.weights} <= {id(w) for w in ae.weights}


def test_unsupported_n_is_a_config_error():
    with pytest.raises(ConfigError, match="model.N"):
        build_model(ModelConfig(N=96), default_probe(96), S64)


def test_no_lambda_layers_only_registered_ones():
    models = build_model(ModelConfig(N=64, n_filters_scale=1), default_probe(64), S64)
    for layer in models.autoencoder.layers:
        assert not isinstance(layer, keras.layers.Lambda)
        if type(layer).__module__.startswith("ptycho_tf"):
            assert type(layer) in CUSTOM_LAYERS
            assert keras.saving.get_registered_name(type(layer)).startswith("ptycho>")


def test_seeded_init_is_glorot_with_zero_biases_and_reproducible():
    cfg = ModelConfig(N=64, n_filters_scale=1)
    a = TFBackend().export_weights(build_model(cfg, default_probe(64), S64, seed=5))
    b = TFBackend().export_weights(build_model(cfg, default_probe(64), S64, seed=5))
    c = TFBackend().export_weights(build_model(cfg, default_probe(64), S64, seed=6))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    kernel = a["encoder/block1/conv0/kernel"]
    limit = np.sqrt(6.0 / (9 * (kernel.shape[2] + kernel.shape[3])))  # Glorot-uniform bound
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    assert not np.any(a["encoder/block1/conv0/bias"])
    assert not np.array_equal(a["encoder/block1/conv0/kernel"], c["encoder/block1/conv0/kernel"])


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(N=64, gridsize=1, n_filters_scale=1),
        ModelConfig(N=64, gridsize=2, n_filters_scale=1, object_big=False, probe_big=False),
        ModelConfig(N=64, gridsize=2, n_filters_scale=1, pad_object=False),
    ],
)
def test_canonical_export_import_round_trip(cfg):
    backend = TFBackend()
    rng = np.random.default_rng(0)
    C = cfg.gridsize**2
    x = rng.uniform(0, 900, size=(4, 64, 64, C)).astype(np.float32)
    offsets = rng.uniform(-3, 3, size=(4, 1, 2, C)).astype(np.float32)
    source = backend.build_model(cfg, default_probe(64), S64, seed=1)
    weights = backend.export_weights(source)
    expected = canonical_weight_shapes(cfg)
    assert list(weights) == list(expected)
    assert {k: (v.shape, v.dtype) for k, v in weights.items()} == expected
    fresh = backend.build_model(cfg, default_probe(64) * 2.0, 17.0, seed=2)
    backend.import_weights(fresh, weights)
    for got, want in zip(
        fresh.autoencoder.predict([x, offsets], verbose=0),
        source.autoencoder.predict([x, offsets], verbose=0),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)  # identical weights, identical graph: exact


def test_import_is_strict():
    backend = TFBackend()
    cfg = ModelConfig(N=64, n_filters_scale=1)
    models = backend.build_model(cfg, default_probe(64), S64)
    weights = backend.export_weights(models)
    missing = {k: v for k, v in weights.items() if k != "decoder_amp/head/bias"}
    with pytest.raises(ConfigError, match="decoder_amp/head/bias"):
        backend.import_weights(models, missing)
    with pytest.raises(ConfigError, match="extra/thing"):
        backend.import_weights(models, {**weights, "extra/thing": np.zeros(1, np.float32)})
    wrong = {**weights, "encoder/block0/conv0/kernel": np.zeros((3, 3, 1, 5), np.float32)}
    with pytest.raises(ConfigError, match="encoder/block0/conv0/kernel"):
        backend.import_weights(models, wrong)


def test_trainable_flags_decide_which_physics_weights_train():
    cfg = ModelConfig(N=64, n_filters_scale=1)
    frozen = build_model(cfg, default_probe(64), S64, intensity_scale_trainable=False)
    names = {w.path.split("/")[-1] for w in frozen.autoencoder.trainable_weights}
    assert "log_intensity_scale" not in names and "probe_real" not in names
    trained = build_model(
        cfg, default_probe(64), S64, intensity_scale_trainable=True, probe_trainable=True
    )
    names = {w.path.split("/")[-1] for w in trained.autoencoder.trainable_weights}
    assert {"log_intensity_scale", "probe_real", "probe_imag"} <= names


def test_predict_is_batched_and_matches_keras_predict():
    backend = TFBackend()
    models = backend.build_model(
        ModelConfig(N=64, gridsize=2, n_filters_scale=1), default_probe(64), S64, seed=3
    )
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 900, size=(11, 64, 64, 4)).astype(np.float32)
    offsets = rng.uniform(-3, 3, size=(11, 1, 2, 4)).astype(np.float32)
    got = backend.predict(models, x, offsets, batch_size=4)
    assert got.shape == (11, 64, 64, 1) and got.dtype == np.complex64
    want = models.predict([x, offsets], verbose=0)
    # Same graph, different batch composition: oneDNN may reorder float32 sums (~1e-7).
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_create_model_with_gridsize_uses_config_and_params():
    cfg = TrainingConfig(
        model=ModelConfig(n_filters_scale=1), intensity_scale_trainable=False, seed=4
    )
    autoencoder, d2o = create_model_with_gridsize(2, 64, cfg)
    assert autoencoder.inputs[0].shape == (None, 64, 64, 4)
    assert d2o.outputs[0].shape == (None, 64, 64, 1)
    scaler = autoencoder.get_layer("intensity_scaler")
    assert not scaler.log_scale.trainable
    assert np.isclose(float(scaler.log_scale.numpy()), np.log(S64), rtol=1e-6)
