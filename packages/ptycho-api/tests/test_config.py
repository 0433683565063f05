"""Config dataclasses, validation, config files and the CONFIG-001 bridge (physics.md B 3)."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import pytest

from ptycho_api.config import (
    KEY_MAPPINGS,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    config_from_dict,
    config_to_dict,
    dataclass_to_legacy_dict,
    load_config,
    normalize_backend_name,
    require_supported_n,
    save_config,
    update_legacy_dict,
)
from ptycho_api.errors import ConfigError, PtychoError


def test_defaults_follow_part_a_decision_5():
    m = ModelConfig()
    assert (m.N, m.gridsize, m.n_filters_scale) == (64, 1, 2)
    assert (m.probe_big, m.probe_mask, m.probe_scale, m.object_big) == (True, False, 4.0, True)
    t = TrainingConfig()
    assert (t.nepochs, t.batch_size, t.nphotons, t.n_groups) == (50, 16, 1e9, 512)
    assert (t.probe_trainable, t.intensity_scale_trainable) == (False, True)
    assert (t.backend, t.seed) == ("auto", 0)  # seeded by default: runs repeat
    i = InferenceConfig()
    assert i.n_groups is None and i.backend == "auto"


def test_model_n_assignable_after_construction():
    # Ptychodus builds ModelConfig(N=0) and fills N in once it knows the pattern width.
    m = ModelConfig(N=0)
    m.N = 64
    assert m.N == 64
    t = TrainingConfig(model=ModelConfig(N=0))
    t.model.N = 128
    assert dataclass_to_legacy_dict(t)["N"] == 128


@pytest.mark.parametrize(
    "obj",
    [
        ModelConfig(N=128, gridsize=2),
        TrainingConfig(model=ModelConfig(gridsize=2), nepochs=3, seed=7, output_dir=Path("x")),
        InferenceConfig(model_path=Path("m"), test_data_file=Path("t.npz"), n_groups=9),
    ],
)
def test_pickle_round_trip(obj):
    assert pickle.loads(pickle.dumps(obj)) == obj


def test_every_key_mapping_is_applied():
    t = TrainingConfig(train_data_file=Path("a.npz"), test_data_file=Path("b.npz"))
    flat = dataclass_to_legacy_dict(t)
    for new, old in KEY_MAPPINGS.items():
        assert old in flat, f"{new} should appear as {old}"
        assert new not in flat, f"{new} should have been renamed to {old}"
    assert flat["object.big"] is True
    assert flat["probe.big"] is True
    assert flat["probe.mask"] is False
    assert flat["probe.trainable"] is False
    assert flat["intensity_scale.trainable"] is True
    assert flat["positions.provided"] is True
    assert flat["output_prefix"] == "training_outputs"
    assert flat["train_data_file_path"] == "a.npz"
    assert flat["test_data_file_path"] == "b.npz"


def test_unmapped_fields_keep_their_names():
    flat = dataclass_to_legacy_dict(TrainingConfig(neighbor_count=5, backend="tf"))
    assert flat["n_groups"] == 512
    assert flat["neighbor_count"] == 5
    assert flat["backend"] == "tf"
    assert flat["nepochs"] == 50


def test_paths_become_strings():
    flat = dataclass_to_legacy_dict(
        InferenceConfig(model_path=Path("/m/dir"), output_dir=Path("out"))
    )
    assert flat["model_path"] == "/m/dir" and isinstance(flat["model_path"], str)
    assert flat["output_prefix"] == "out" and isinstance(flat["output_prefix"], str)
    assert not any(isinstance(v, Path) for v in flat.values())


def test_nested_model_is_flattened():
    flat = dataclass_to_legacy_dict(TrainingConfig(model=ModelConfig(N=128, gridsize=2)))
    assert "model" not in flat
    assert flat["N"] == 128 and flat["gridsize"] == 2 and flat["n_filters_scale"] == 2


def test_none_never_overwrites():
    cfg = {"n_subsample": 7, "subsample_seed": 3, "seed": 11}
    update_legacy_dict(cfg, TrainingConfig(seed=None))
    assert cfg["n_subsample"] == 7
    assert cfg["subsample_seed"] == 3
    assert cfg["seed"] == 11
    assert cfg["N"] == 64  # non-None values do overwrite


def test_bridge_validates_before_writing():
    cfg: dict = {}
    with pytest.raises(ConfigError, match="batch_size"):
        update_legacy_dict(cfg, TrainingConfig(batch_size=3))
    assert cfg == {}


def test_n_images_alias_warns_and_copies():
    with pytest.warns(DeprecationWarning, match="n_images is deprecated"):
        t = TrainingConfig(n_images=100)
    assert t.n_groups == 100
    with pytest.warns(DeprecationWarning):
        t2 = TrainingConfig(n_images=100, n_groups=50)
    assert t2.n_groups == 50
    with pytest.warns(DeprecationWarning):
        i = InferenceConfig(n_images=10)
    assert i.n_groups == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrainingConfig().n_groups == 512
        assert InferenceConfig().n_groups is None


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    t = TrainingConfig(
        model=ModelConfig(N=128, gridsize=2, probe_mask=True, probe_scale=3.5),
        train_data_file=Path("train.npz"),
        nepochs=7,
        nphotons=1e6,
        seed=3,
        backend="pytorch",
    )
    path = save_config(t, tmp_path / f"cfg{suffix}")
    assert load_config(path, TrainingConfig) == t
    i = InferenceConfig(model=ModelConfig(gridsize=2), n_groups=5, output_dir=Path("o"))
    path = save_config(i, tmp_path / f"inf{suffix}")
    assert load_config(path, InferenceConfig) == i


def test_yaml_reads_nested_model_and_exponent_floats(tmp_path):
    p = tmp_path / "c.yaml"
    # PyYAML reads 1e6 (no dot) as a string; float fields accept it.
    p.write_text("model:\n  N: 128\n  gridsize: 2\nnphotons: 1e6\nnepochs: 3\nbackend: tf\n")
    t = load_config(p)
    assert (t.model.N, t.model.gridsize, t.nphotons, t.nepochs) == (128, 2, 1e6, 3)
    assert normalize_backend_name(t.backend) == "tensorflow"


def test_unknown_key_error_suggests_close_match(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"nepoch": 3}))
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert str(p) in msg
    assert "unknown key 'nepoch'" in msg
    assert "did you mean 'nepochs'?" in msg


def test_unknown_nested_key_names_section():
    with pytest.raises(
        ConfigError, match=r"TrainingConfig\.model: unknown key 'gridsz'; did you mean 'gridsize'"
    ):
        config_from_dict({"model": {"gridsz": 2}})


def test_unknown_key_without_close_match_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'zzz' \(valid keys: .*nepochs"):
        config_from_dict({"zzz": 1})


def test_file_type_errors(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("nepochs: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"must end in \.yaml, \.yml or \.json"):
        load_config(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    wrong = tmp_path / "w.json"
    wrong.write_text(json.dumps({"nepochs": "many"}))
    with pytest.raises(ConfigError, match=r"nepochs: expected an integer; found 'many'"):
        load_config(wrong)


def test_config_to_dict_is_json_safe():
    data = config_to_dict(TrainingConfig(train_data_file=Path("a.npz")))
    json.dumps(data)
    assert data["model"]["N"] == 64 and "n_images" not in data


M = ModelConfig
T = TrainingConfig
INVALID = [
    (lambda: M(N=-64), "model.N", "integer >= 0"),
    (lambda: M(N=63), "model.N", "even number"),
    (lambda: M(N=64.0), "model.N", "an integer"),
    (lambda: M(gridsize=0), "model.gridsize", ">= 1"),
    (lambda: M(n_filters_scale=0), "model.n_filters_scale", ">= 1"),
    (lambda: M(model_type="gan"), "model.model_type", "one of ['pinn', 'supervised']"),
    (lambda: M(architecture="fno"), "model.architecture", "one of ['cnn']"),
    (lambda: M(amp_activation="tanh"), "model.amp_activation", "sigmoid"),
    (lambda: M(object_big=1), "model.object_big", "true or false"),
    (lambda: M(probe_big="yes"), "model.probe_big", "true or false"),
    (lambda: M(probe_mask=None), "model.probe_mask", "true or false"),
    (lambda: M(pad_object=0), "model.pad_object", "true or false"),
    (lambda: M(probe_scale=0.0), "model.probe_scale", "> 0.0"),
    (lambda: M(gaussian_smoothing_sigma=-1.0), "model.gaussian_smoothing_sigma", ">= 0.0"),
    (lambda: T(batch_size=0), "training.batch_size", ">= 1"),
    (lambda: T(batch_size=24), "training.batch_size", "power of two"),
    (lambda: T(nepochs=0), "training.nepochs", ">= 1"),
    (lambda: T(mae_weight=1.5), "training.mae_weight", "[0.0, 1.0]"),
    (lambda: T(nll_weight=-0.1), "training.nll_weight", ">= 0.0"),
    (lambda: T(realspace_mae_weight=-1.0), "training.realspace_mae_weight", ">= 0.0"),
    (lambda: T(realspace_weight=float("nan")), "training.realspace_weight", "finite"),
    (lambda: T(nphotons=0.0), "training.nphotons", "> 0.0"),
    (lambda: T(n_groups=0), "training.n_groups", ">= 1"),
    (lambda: T(n_subsample=0), "training.n_subsample", ">= 1"),
    (lambda: T(subsample_seed=-1), "training.subsample_seed", ">= 0"),
    (lambda: T(neighbor_count=0), "training.neighbor_count", ">= 1"),
    (
        lambda: T(model=M(gridsize=2), neighbor_count=3),
        "training.neighbor_count",
        "gridsize**2 = 4",
    ),
    (lambda: T(model=M(gridsize=2), neighbor_pool_size=2), "training.neighbor_pool_size", ">= 4"),
    (lambda: T(enable_oversampling="no"), "training.enable_oversampling", "true or false"),
    (lambda: T(probe_trainable=1), "training.probe_trainable", "true or false"),
    (
        lambda: T(intensity_scale_trainable=None),
        "training.intensity_scale_trainable",
        "true or false",
    ),
    (lambda: T(positions_provided=0), "training.positions_provided", "true or false"),
    (lambda: T(sequential_sampling=1), "training.sequential_sampling", "true or false"),
    (lambda: T(train_data_file=3), "training.train_data_file", "path"),
    (lambda: T(output_dir=None), "training.output_dir", "path"),
    (lambda: T(backend="jax"), "training.backend", "'tensorflow', 'pytorch'"),
    (lambda: T(seed=-3), "training.seed", ">= 0"),
    (lambda: T(seed=1.5), "training.seed", "an integer"),
    (lambda: T(model="big"), "model", "a ModelConfig"),
    (lambda: InferenceConfig(n_groups=0), "inference.n_groups", ">= 1"),
    (lambda: InferenceConfig(backend="mxnet"), "inference.backend", "one of"),
    (lambda: InferenceConfig(debug="x"), "inference.debug", "true or false"),
    (
        lambda: InferenceConfig(model_path=Path("/nonexistent/model")),
        "inference.model_path",
        "existing model",
    ),
]


@pytest.mark.parametrize(("factory", "field_name", "allowed"), INVALID)
def test_validate_rejects_bad_values(factory, field_name, allowed):
    with pytest.raises(ConfigError) as err:
        factory().validate()
    msg = str(err.value)
    assert msg.startswith(f"{field_name}: expected"), msg
    assert allowed in msg, msg
    assert "found" in msg
    assert isinstance(err.value, PtychoError)


def test_validate_accepts_defaults_and_aliases(tmp_path):
    assert TrainingConfig().validate().backend == "auto"
    for alias in ("tf", "torch", "TensorFlow", "pytorch"):
        TrainingConfig(backend=alias).validate()
    (tmp_path / "wts.h5.zip").write_bytes(b"")
    InferenceConfig(model_path=tmp_path).validate()
    InferenceConfig(model_path=tmp_path / "wts.h5").validate()  # original base-path convention


def test_model_n_supported_only_at_build_time():
    ModelConfig(N=32).validate()  # decision 6: a dataclass with N=32 is fine...
    with pytest.raises(
        ConfigError, match=r"model.N: the network supports patch sizes \[64, 128, 256\]; found 32"
    ):
        require_supported_n(32)  # ...until a model is built from it
    assert require_supported_n(128) == 128


@pytest.mark.parametrize("field", ["realspace_weight", "realspace_mae_weight"])
def test_realspace_loss_weights_are_refused_by_validate(field):
    # Neither backend trains a real-space term: a non-zero weight would be silently ignored.
    config = TrainingConfig(**{field: 0.5})
    with pytest.raises(
        ConfigError, match=rf"training\.{field}: realspace losses are not supported yet"
    ):
        config.validate()
    assert TrainingConfig(**{field: 0.0}).validate()


def test_model_config_from_legacy_dict_reads_mapped_keys():
    from ptycho_api.config import model_config_from_legacy_dict

    cfg = {"N": 128, "gridsize": 2, "object.big": False, "probe.mask": True, "unrelated": 1}
    model = model_config_from_legacy_dict(cfg)
    assert (model.N, model.gridsize, model.object_big, model.probe_mask) == (128, 2, False, True)
    with pytest.raises(ConfigError, match="N"):
        model_config_from_legacy_dict({"N": 65})


def test_early_stopping_is_on_by_default_and_read_from_a_config_file(tmp_path):
    assert TrainingConfig().early_stopping is True
    p = tmp_path / "c.yaml"
    p.write_text("early_stopping: false\n")
    assert load_config(p).early_stopping is False


def test_early_stopping_must_be_a_bool():
    with pytest.raises(ConfigError, match=r"training\.early_stopping.*'no'"):
        TrainingConfig(early_stopping="no").validate()
