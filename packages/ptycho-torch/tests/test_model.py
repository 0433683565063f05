"""Network structure, initialisation and canonical weights (B 7, B 15, parity.md section 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ptycho_api.architecture import canonical_weight_shapes, conv_weight_count
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.errors import ConfigError
from ptycho_api.probe import default_probe
from ptycho_torch.model import PtychoPINN, build_model, create_model_with_gridsize
from ptycho_torch.modules import DiffractionToObject
from ptycho_torch.weights import export_weights, import_weights


@pytest.mark.parametrize(
    ("N", "gridsize", "expected"),
    [(64, 1, 2_331_772), (64, 2, 2_340_208), (128, 1, 4_661_212)],
)
def test_conv_weight_counts_equal_b15(N, gridsize, expected):
    # B 15 golden values (n_filters_scale 2, HEAD); lambda and the probe are not conv weights.
    cfg = ModelConfig(N=N, gridsize=gridsize, n_filters_scale=2)
    model = build_model(cfg, default_probe(N), 1.0)
    n_conv = sum(c.weight.numel() + c.bias.numel() for c in model.convs().values())
    assert n_conv == expected == conv_weight_count(cfg)
    # Trainable by default: conv weights + lambda (scalar); the probe is a buffer.
    assert sum(p.numel() for p in model.parameters()) == expected + 1


def test_kernels_are_glorot_uniform_and_biases_zero():
    model = build_model(ModelConfig(N=64, n_filters_scale=1), default_probe(64), 1.0, seed=0)
    for name, conv in model.convs().items():
        out_c, in_c, kh, kw = conv.weight.shape
        limit = math.sqrt(6.0 / (in_c * kh * kw + out_c * kh * kw))
        w = conv.weight.detach()
        assert w.abs().max() <= limit, name
        assert torch.count_nonzero(conv.bias) == 0, name
        if w.numel() >= 10_000:
            # Uniform on [-limit, limit] has std limit/sqrt(3); 10k draws: within 5 %.
            assert math.isclose(float(w.std()), limit / math.sqrt(3), rel_tol=0.05), name


def test_same_seed_gives_same_initial_weights():
    cfg = ModelConfig(N=64, n_filters_scale=1)
    a = export_weights(build_model(cfg, default_probe(64), 1.0, seed=5))
    b = export_weights(build_model(cfg, default_probe(64), 1.0, seed=5))
    c = export_weights(build_model(cfg, default_probe(64), 1.0, seed=6))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["encoder/block0/conv0/kernel"], c["encoder/block0/conv0/kernel"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"N": 64, "gridsize": 1},
        {"N": 64, "gridsize": 2},
        {"N": 128, "gridsize": 1},
        {"N": 64, "gridsize": 2, "object_big": False},
        {"N": 64, "gridsize": 1, "probe_big": False},
        {"N": 64, "gridsize": 2, "pad_object": False},
    ],
)
def test_export_has_exactly_the_canonical_keys_shapes_and_dtypes(overrides):
    cfg = ModelConfig(n_filters_scale=1, **overrides)
    weights = export_weights(build_model(cfg, default_probe(cfg.N), 988.2))
    expected = canonical_weight_shapes(cfg)
    assert list(weights) == list(expected)
    for key, (shape, dtype) in expected.items():
        assert weights[key].shape == shape and weights[key].dtype == dtype, key


def test_kernels_are_exported_in_hwio_layout():
    model = build_model(ModelConfig(N=64, n_filters_scale=1), default_probe(64), 1.0, seed=1)
    conv = model.convs()["encoder/block1/conv0"]
    kernel = export_weights(model)["encoder/block1/conv0/kernel"]
    # (out, in, kh, kw) -> (kh, kw, in, out): one element checked by index, exactly.
    assert kernel[2, 0, 5, 7] == conv.weight[7, 5, 2, 0].item()


def test_export_import_round_trip_reproduces_outputs_exactly():
    cfg = ModelConfig(N=64, gridsize=2, n_filters_scale=1)
    source = build_model(cfg, default_probe(64), 988.2, seed=1, probe_trainable=True)
    with torch.no_grad():
        source.probe_imag.add_(0.01)  # a non-trivial probe phase must survive the round trip
        source.log_intensity_scale.sub_(0.2)
    target = build_model(cfg, np.ones((64, 64), np.complex64), 1.0, seed=2)
    import_weights(target, export_weights(source))
    x = torch.rand(2, 64, 64, 4) * 500
    offsets = torch.rand(2, 1, 2, 4) * 4 - 2
    for a, b in zip(source(x, offsets), target(x, offsets), strict=True):
        assert torch.equal(a, b)  # identical float32 weights, identical arithmetic
    assert all(
        np.array_equal(v, export_weights(target)[k]) for k, v in export_weights(source).items()
    )


def test_import_is_strict_and_names_the_offending_key():
    cfg = ModelConfig(N=64, n_filters_scale=1)
    model = build_model(cfg, default_probe(64), 1.0)
    weights = export_weights(model)
    missing = dict(weights)
    del missing["decoder_phase/head/bias"]
    with pytest.raises(ConfigError, match="decoder_phase/head/bias"):
        import_weights(model, missing)
    with pytest.raises(ConfigError, match="extra/thing"):
        import_weights(model, {**weights, "extra/thing": np.zeros(1, np.float32)})
    wrong = {**weights, "encoder/block0/conv0/bias": np.zeros(3, np.float32)}
    with pytest.raises(ConfigError, match="encoder/block0/conv0/bias"):
        import_weights(model, wrong)
    wrong_dtype = {**weights, "physics/probe": weights["physics/probe"].astype(np.complex128)}
    with pytest.raises(ConfigError, match="physics/probe"):
        import_weights(model, wrong_dtype)


def test_unsupported_patch_size_is_a_config_error():
    with pytest.raises(ConfigError, match="N"):
        build_model(ModelConfig(N=96, n_filters_scale=1), default_probe(96), 1.0)


def test_create_model_with_gridsize_returns_both_models_sharing_weights():
    cfg = TrainingConfig(model=ModelConfig(n_filters_scale=1), seed=3, probe_trainable=True)
    autoencoder, d2o = create_model_with_gridsize(2, 64, cfg)
    assert isinstance(autoencoder, PtychoPINN) and isinstance(d2o, DiffractionToObject)
    assert autoencoder.model_config.gridsize == 2 and autoencoder.probe_trainable
    x = torch.rand(3, 64, 64, 4) * 900
    offsets = torch.rand(3, 1, 2, 4) - 0.5
    obj = d2o(x, offsets)
    assert obj.shape == (3, 64, 64, 1) and obj.dtype == torch.complex64
    assert torch.equal(obj, autoencoder(x, offsets)[0])
