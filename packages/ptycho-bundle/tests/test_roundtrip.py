"""Writing and reading back a format-2 archive: content, manifest, targets and accepted locations."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import read_members, sample_params, sample_weights, write_zip

from ptycho_api.config import TrainingConfig, config_to_dict
from ptycho_bundle import ARCHIVE_NAME, MODELS, BundleError, load_bundle, save_bundle


def test_round_trip_is_identical(archive: Path, model_args: dict) -> None:
    bundle = load_bundle(archive)
    assert bundle.format_version == 2 and not bundle.legacy
    assert bundle.backend == "pytorch"
    assert bundle.models == MODELS
    assert set(bundle.weights) == set(model_args["weights"])
    for name, expected in model_args["weights"].items():
        got = bundle.weights[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert np.array_equal(got, expected), name
    expected_params = {k: v for k, v in model_args["params"].items() if k != "probe"}
    expected_params["intensity_scale"] = float(expected_params["intensity_scale"])
    assert bundle.params == expected_params
    assert all(type(v) in (int, float, str, bool, type(None)) for v in bundle.params.values())
    assert bundle.config == model_args["config"]
    assert bundle.history == model_args["history"]
    for model, files in model_args["native"].items():
        for filename, data in files.items():
            assert bundle.native(model, filename) == data
    assert bundle.native("diffraction_to_obj", "model.keras") is None
    assert (bundle.N, bundle.gridsize, bundle.intensity_scale) == (64, 2, 1234.5)


def test_manifest_checksums_and_fields_are_right(archive: Path) -> None:
    members = read_members(archive)
    manifest = json.loads(members.pop("manifest.json"))
    assert manifest["format"] == "ptycho-bundle" and manifest["format_version"] == 2
    assert (manifest["N"], manifest["gridsize"], manifest["intensity_scale"]) == (64, 2, 1234.5)
    assert manifest["backend"] == "pytorch" and manifest["models"] == list(MODELS)
    assert manifest["created"].endswith("+00:00")
    assert {"ptycho-api", "ptycho-bundle", "numpy", "python", "torch", "ptycho-torch"} <= set(
        manifest["versions"]
    )
    assert set(manifest["members"]) == set(members)
    for name, data in members.items():
        assert manifest["members"][name] == {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }, name


def test_legacy_members_are_plain_pickles(archive: Path) -> None:
    members = read_members(archive)
    assert pickle.loads(members["manifest.dill"]) == {
        "models": list(MODELS),
        "version": "2.0-pytorch",
        "backend": "pytorch",
    }
    params_json = json.loads(members["params.json"])
    for model in MODELS:
        assert pickle.loads(members[f"{model}/params.dill"]) == params_json


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("out", "out/wts.h5.zip"),
        ("out/model.zip", "out/model.zip"),
        ("out/wts.h5", "out/wts.h5.zip"),
    ],
)
def test_write_targets(tmp_path: Path, model_args: dict, target: str, expected: str) -> None:
    path = save_bundle(tmp_path / target, **model_args)
    assert path == tmp_path / expected and path.is_file()
    assert load_bundle(tmp_path / target).backend == "pytorch"


def test_write_target_that_is_a_file_is_refused(tmp_path: Path, model_args: dict) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BundleError, match="notes.txt"):
        save_bundle(tmp_path / "notes.txt", **model_args)


def test_reads_every_accepted_location(tmp_path: Path, archive: Path) -> None:
    renamed = shutil.copy(archive, tmp_path / "model.bin")
    extracted = tmp_path / "extracted"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(extracted)  # the test builds the layout; the library never extracts
    outer_dir = tmp_path / "outer"
    (outer_dir / "run42").mkdir(parents=True)
    shutil.copy(archive, outer_dir / "run42" / ARCHIVE_NAME)
    outer_layout = tmp_path / "outer2"
    shutil.copytree(extracted, outer_layout / "run7")
    outer_zip = write_zip(tmp_path / "outer.zip", [("run42/wts.h5.zip", archive.read_bytes())])
    for location in (
        archive.parent,
        archive,
        renamed,
        extracted,
        outer_dir,
        outer_layout,
        outer_zip,
    ):
        bundle = load_bundle(location)
        assert bundle.backend == "pytorch" and len(bundle.weights) == 5, location
    assert load_bundle(outer_zip).path == outer_zip


def test_several_archives_one_level_down_is_ambiguous(tmp_path: Path, archive: Path) -> None:
    for run in ("a", "b"):
        (tmp_path / "runs" / run).mkdir(parents=True)
        shutil.copy(archive, tmp_path / "runs" / run / ARCHIVE_NAME)
    with pytest.raises(BundleError, match="several model archives"):
        load_bundle(tmp_path / "runs")


def test_missing_location(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such model archive"):
        load_bundle(tmp_path / "nope" / "wts.h5")
    with pytest.raises(BundleError, match="no model archive found"):
        load_bundle(tmp_path)


def test_config_dataclass_and_dict_give_the_same_document(tmp_path: Path, model_args: dict) -> None:
    a = save_bundle(tmp_path / "a", **{**model_args, "config": TrainingConfig()})
    b = save_bundle(tmp_path / "b", **{**model_args, "config": config_to_dict(TrainingConfig())})
    assert read_members(a)["config.json"] == read_members(b)["config.json"]


def test_array_params_are_dropped_with_a_warning(
    tmp_path: Path, model_args: dict, caplog: pytest.LogCaptureFixture
) -> None:
    params = {**sample_params(), "mask": np.ones((4, 4))}
    with caplog.at_level(logging.WARNING, logger="ptycho_bundle"):
        save_bundle(tmp_path, **{**model_args, "params": params})
    assert "mask" in caplog.text and "'probe'" not in caplog.text
    assert {"mask", "probe"}.isdisjoint(load_bundle(tmp_path).params)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"N": 64, "gridsize": 1}, "intensity_scale"),
        ({"gridsize": 1, "intensity_scale": 1.0}, r"\['N'\]"),
        ({"N": 64, "gridsize": True, "intensity_scale": 1.0}, "gridsize"),
        ({"N": 64, "gridsize": 1, "intensity_scale": float("nan")}, "intensity_scale"),
        ({"N": 64, "gridsize": 1, "intensity_scale": 1.0, "fn": print}, r"params\.fn"),
        ({"N": 64, "gridsize": 1, "intensity_scale": 1.0, 3: "x"}, "key 3"),
    ],
)
def test_bad_params_are_refused(tmp_path: Path, model_args: dict, params: dict, match: str) -> None:
    with pytest.raises(BundleError, match=match):
        save_bundle(tmp_path, **{**model_args, "params": params})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"backend": "jax"}, "backend"),
        ({"config": "cfg.yaml"}, "config"),
        ({"weights": {"a/../b": np.zeros(2)}}, "a/../b"),
        ({"weights": {"a//b": np.zeros(2)}}, "a//b"),
        ({"weights": {"/a": np.zeros(2)}}, "/a"),
        ({"weights": {"a": np.zeros(2), "a/b": np.zeros(2)}}, "both a weight and a group"),
        ({"weights": {"a": np.array(["x"])}}, "not numeric"),
        ({"native": {"encoder": {"model.pth": b""}}}, "unknown model"),
        ({"native": {"autoencoder": {"../model.pth": b""}}}, "invalid artifact file name"),
        ({"native": {"autoencoder": {"params.dill": b""}}}, "invalid artifact file name"),
        ({"native": {"autoencoder": {"model.pth": "text"}}}, "expected bytes"),
    ],
)
def test_bad_arguments_are_refused(
    tmp_path: Path, model_args: dict, changes: dict, match: str
) -> None:
    with pytest.raises(BundleError, match=match):
        save_bundle(tmp_path, **{**model_args, **changes})


def test_backend_aliases_and_tensorflow_legacy_version(tmp_path: Path, model_args: dict) -> None:
    path = save_bundle(tmp_path, **{**model_args, "backend": "tf", "native": None, "history": None})
    members = read_members(path)
    assert "history.json" not in members
    assert pickle.loads(members["manifest.dill"])["version"] == "1.0"
    bundle = load_bundle(path)
    assert bundle.backend == "tensorflow" and bundle.history is None


def test_zero_filled_weights_do_not_trip_the_ratio_limit(tmp_path: Path, model_args: dict) -> None:
    weights = {**sample_weights(), "big/zeros": np.zeros((1024, 1024), np.float32)}
    path = save_bundle(tmp_path, **{**model_args, "weights": weights})
    assert np.array_equal(load_bundle(path).weights["big/zeros"], weights["big/zeros"])
