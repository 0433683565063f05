"""Archive semantics shared by both backends: written from config objects, read into a checked spec."""

from __future__ import annotations

import datetime
import json
import logging
import math

import numpy as np
import pytest
from bundle_helpers import read_members, rebuild

from ptycho_api import params
from ptycho_api.architecture import LOG_SCALE_KEY, PROBE_KEY, canonical_weight_shapes
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.errors import BundleError
from ptycho_bundle import legacy_params, load_bundle, read_model_archive, write_model_archive

S = 988.2118


def _weights(model: ModelConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    out = {}
    for name, (shape, dtype) in canonical_weight_shapes(model).items():
        if dtype == np.complex64:
            out[name] = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
        else:
            out[name] = rng.standard_normal(shape).astype(dtype)
    out[LOG_SCALE_KEY] = np.asarray(math.log(S) + 0.01, np.float32)  # trained lambda != log s
    return out


@pytest.fixture
def config(tmp_path) -> TrainingConfig:
    return TrainingConfig(
        model=ModelConfig(N=64, gridsize=2, n_filters_scale=1, probe_mask=True),
        nphotons=1e9,
        probe_trainable=True,
        seed=3,
        output_dir=tmp_path / "run",
    )


@pytest.fixture
def written(config, tmp_path):
    weights = _weights(config.model)
    path = write_model_archive(
        tmp_path / "model",
        backend="pytorch",
        config=config,
        intensity_scale=S,
        weights=weights,
        history={"loss": [1.0]},
    )
    return path, weights


def test_round_trip_gives_the_checked_spec(written, config):
    path, weights = written
    spec = read_model_archive(path)
    assert spec.backend == "pytorch" and spec.model_config == config.model
    assert spec.probe_trainable and spec.intensity_scale_trainable
    # s is the data scale passed in, not exp(trained lambda).
    assert spec.intensity_scale == S and spec.params["intensity_scale"] == S
    np.testing.assert_array_equal(spec.probe, weights[PROBE_KEY])
    for key, value in weights.items():
        np.testing.assert_array_equal(spec.weights[key], value)
    assert spec.params["probe.mask"] is True and spec.params["nphotons"] == 1e9


def test_archive_is_built_from_the_config_not_from_params_cfg(config, tmp_path):
    # Junk left in the global dict by earlier code must neither break a save nor reach the archive.
    weights = _weights(config.model)
    clean = write_model_archive(
        tmp_path / "a", backend="tensorflow", config=config, intensity_scale=S, weights=weights
    )
    params.cfg.update(
        {"junk_nan": float("nan"), "junk_when": datetime.datetime(2026, 1, 1), "gridsize": 7}
    )
    dirty = write_model_archive(
        tmp_path / "b", backend="tensorflow", config=config, intensity_scale=S, weights=weights
    )
    assert read_members(clean)["params.json"] == read_members(dirty)["params.json"]
    assert "junk_nan" not in load_bundle(dirty).params
    assert load_bundle(dirty).params == legacy_params(config, S)


def test_unknown_model_key_in_config_json_is_ignored_with_a_warning(written, tmp_path, caplog):
    path, _ = written
    doc = json.loads(read_members(path)["config.json"])
    doc["model"]["from_the_future"] = 3
    patched = rebuild(path, tmp_path / "x.zip", replace={"config.json": json.dumps(doc).encode()})
    with caplog.at_level(logging.WARNING, logger="ptycho_bundle"):
        spec = read_model_archive(patched)
    assert spec.model_config.gridsize == 2
    assert "from_the_future" in caplog.text


def test_gridsize_mismatch_between_config_and_params_is_refused(written, tmp_path):
    path, _ = written
    doc = json.loads(read_members(path)["config.json"])
    doc["model"]["gridsize"] = 1
    patched = rebuild(path, tmp_path / "x.zip", replace={"config.json": json.dumps(doc).encode()})
    with pytest.raises(BundleError, match=r"gridsize=1.*disagrees with params\.json.*gridsize=2"):
        read_model_archive(patched)


def test_missing_model_section_falls_back_to_legacy_params(written, tmp_path):
    path, _ = written
    patched = rebuild(path, tmp_path / "x.zip", replace={"config.json": b'{"nepochs": 1}'})
    spec = read_model_archive(patched)
    assert spec.model_config.probe_mask and spec.model_config.gridsize == 2
    assert spec.probe_trainable  # from the legacy key probe.trainable


def test_weights_that_do_not_fit_the_model_are_refused_before_any_build(config, tmp_path):
    weights = _weights(config.model)
    with pytest.raises(
        BundleError, match=r"canonical weight .encoder/block0/conv0/kernel.: expected shape"
    ):
        write_model_archive(
            tmp_path,
            backend="pytorch",
            config=TrainingConfig(model=ModelConfig(N=64, gridsize=2, n_filters_scale=2)),
            intensity_scale=S,
            weights=weights,
        )


def test_non_finite_weights_are_refused(config, tmp_path):
    from ptycho_bundle import save_bundle

    weights = _weights(config.model)
    weights["encoder/block0/conv0/bias"] = weights["encoder/block0/conv0/bias"].copy()
    weights["encoder/block0/conv0/bias"][0] = np.nan
    path = save_bundle(
        tmp_path,
        backend="pytorch",
        config={"model": {"N": 64, "gridsize": 2, "n_filters_scale": 1}},
        params=legacy_params(config, S),
        weights=weights,
    )
    with pytest.raises(BundleError, match=r"non-finite values .*encoder/block0/conv0/bias"):
        read_model_archive(path)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_data_scale_is_refused(config, tmp_path, scale):
    with pytest.raises(BundleError, match="intensity_scale"):
        write_model_archive(
            tmp_path,
            backend="pytorch",
            config=config,
            intensity_scale=scale,
            weights=_weights(config.model),
        )
