"""Archive semantics are one code path: both backends behave alike on the same archive (issue 13).

Each test runs the same steps for each backend (parametrised, never special-cased): a config.json
with a key this version does not know, a config/params gridsize mismatch, junk (NaN, datetime)
left in ``params.cfg`` before a save, and the intensity scale an archive records after training
with a trainable lambda.
"""

from __future__ import annotations

import datetime
import json
import math

import numpy as np
import pytest
from parity_helpers import TF, TORCH, simulated_container

from ptycho_api import params
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.errors import BundleError
from ptycho_api.probe import default_probe
from ptycho_api.workflows import train_cdi_model
from ptycho_bundle import load_bundle, save_bundle

BACKENDS = pytest.mark.parametrize("backend", [TF, TORCH], ids=["tensorflow", "pytorch"])
S = 988.2117688026185
MODEL = ModelConfig(N=64, gridsize=2, n_filters_scale=1)


def _saved(backend, target):
    model = backend.build_model(MODEL, default_probe(64), S, seed=2)
    config = TrainingConfig(model=MODEL, seed=2, output_dir="run")
    return backend.save_archive(model, target / backend.name, config)


def _with_config(path, tmp_path, edit):
    bundle = load_bundle(path)
    doc = json.loads(json.dumps(bundle.config))
    edit(doc)
    return save_bundle(
        tmp_path / "edited",
        backend=bundle.backend,
        config=doc,
        params=bundle.params,
        weights=bundle.weights,
    )


@BACKENDS
@pytest.mark.parametrize("writer", [TF, TORCH], ids=["tf-written", "torch-written"])
def test_unknown_model_key_loads_in_both(backend, writer, tmp_path, caplog):
    path = _with_config(
        _saved(writer, tmp_path), tmp_path, lambda d: d["model"].update(added_later=1)
    )
    model, snapshot = backend.load_archive(path)
    assert snapshot["gridsize"] == 2 and "added_later" in caplog.text


@BACKENDS
@pytest.mark.parametrize("writer", [TF, TORCH], ids=["tf-written", "torch-written"])
def test_gridsize_mismatch_is_refused_by_both(backend, writer, tmp_path):
    path = _with_config(_saved(writer, tmp_path), tmp_path, lambda d: d["model"].update(gridsize=1))
    with pytest.raises(BundleError, match="disagrees with params.json"):
        backend.load_archive(path)


@BACKENDS
def test_junk_in_params_cfg_neither_breaks_a_save_nor_reaches_the_archive(backend, tmp_path):
    clean = load_bundle(_saved(backend, tmp_path / "clean")).params
    params.cfg.update({"junk_nan": math.nan, "junk_when": datetime.datetime(2026, 12, 1)})
    try:
        dirty = load_bundle(_saved(backend, tmp_path / "dirty")).params
    finally:
        params.reset()
    assert dirty == clean and "junk_nan" not in dirty and "junk_when" not in dirty


@BACKENDS
def test_archive_records_the_data_scale_after_training_a_trainable_lambda(backend, tmp_path):
    container = simulated_container(MODEL, n_groups=16, seed=5)
    config = TrainingConfig(
        model=MODEL,
        nepochs=2,
        batch_size=8,
        seed=5,
        intensity_scale_trainable=True,
        output_dir=tmp_path,
    )
    results = train_cdi_model(container, None, config, backend=backend)
    s = results["intensity_scale"]
    assert s == pytest.approx(container.intensity_scale, rel=1e-15)
    trained_lambda = float(
        np.exp(backend.export_weights(results["model"])["physics/log_intensity_scale"])
    )
    assert not math.isclose(trained_lambda, s, rel_tol=1e-6)  # lambda moved: the check has teeth
    assert load_bundle(results["archive"]).intensity_scale == pytest.approx(s, rel=1e-12)
