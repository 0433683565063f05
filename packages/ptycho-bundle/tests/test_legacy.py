"""Archives written by the original PtychoPINN: plain-data pickles are read, executable ones never run."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import dill
import numpy as np
import pytest
from bundle_helpers import write_zip

from ptycho_bundle import BundleError, format_inspection, inspect, load_bundle


class MarkerPickle:
    """Unpickling this runs code: it creates ``marker`` and returns a valid params dict."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        code = f"(open({str(self.marker)!r}, 'w').close(), {LEGACY_PARAMS!r})[1]"
        return (eval, (code,))


LEGACY_PARAMS = {
    "N": 64,
    "gridsize": 1,
    "intensity_scale": 812.5,
    "nphotons": 1e9,
    "_version": "1.0",
}


def _legacy_archive(
    path: Path,
    *,
    version: str = "1.0",
    params: bytes | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    params = params or dill.dumps(
        {
            **LEGACY_PARAMS,
            "intensity_scale": np.float32(812.5),
            "probe": np.ones((4, 4), np.complex64),
        }
    )
    members = {
        "manifest.dill": dill.dumps(
            {"models": ["autoencoder", "diffraction_to_obj"], "version": version}
        ),
        "autoencoder/params.dill": params,
        "autoencoder/model.keras": b"keras-autoencoder",
        "diffraction_to_obj/params.dill": params,
        "diffraction_to_obj/model.keras": b"keras-d2o",
        "diffraction_to_obj/model.h5": b"h5",
        **(extra or {}),
    }
    path.mkdir(parents=True, exist_ok=True)
    return write_zip(path / "wts.h5.zip", members.items())


def test_plain_legacy_tensorflow_archive_is_readable(tmp_path: Path) -> None:
    marker = tmp_path / "custom_objects_ran"
    evil = dill.dumps(MarkerPickle(marker))
    _legacy_archive(tmp_path / "m", extra={"diffraction_to_obj/custom_objects.dill": evil})
    bundle = load_bundle(tmp_path / "m" / "wts.h5")  # the original tools' base-path convention
    assert bundle.legacy and bundle.format_version == 1
    assert bundle.backend == "tensorflow"
    assert bundle.models == ("autoencoder", "diffraction_to_obj")
    assert (bundle.N, bundle.gridsize, bundle.intensity_scale) == (64, 1, 812.5)
    assert bundle.params["nphotons"] == 1e9 and bundle.params["_version"] == "1.0"
    np.testing.assert_array_equal(bundle.params["probe"], np.ones((4, 4), np.complex64))
    assert bundle.weights == {} and bundle.config is None
    assert bundle.native("diffraction_to_obj", "model.keras") == b"keras-d2o"
    assert bundle.native("diffraction_to_obj", "custom_objects.dill") is None
    assert not marker.exists()  # custom_objects.dill is never unpickled


def test_plain_legacy_pytorch_archive_reports_its_backend(tmp_path: Path) -> None:
    _legacy_archive(tmp_path, version="2.0-pytorch")
    assert load_bundle(tmp_path).backend == "pytorch"


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_plain_pickles_of_every_protocol(tmp_path: Path, protocol: int) -> None:
    data = {**LEGACY_PARAMS, "shape": (64, 64), "tags": {"a", "b"}, "blob": b"\x00\x01", "c": 1j}
    _legacy_archive(tmp_path, params=pickle.dumps(data, protocol=protocol))
    assert load_bundle(tmp_path).params == data


def test_executable_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    _legacy_archive(tmp_path / "m", params=dill.dumps(MarkerPickle(marker)))
    with pytest.raises(BundleError) as info:
        load_bundle(tmp_path / "m")
    message = str(info.value)
    assert "params.dill" in message and str(tmp_path / "m" / "wts.h5.zip") in message
    assert (
        "executable pickles" in message and "builtins.eval" in message and "trust=True" in message
    )
    assert not marker.exists()

    report = inspect(tmp_path / "m")
    assert not report["ok"] and "executable pickles" in report["errors"][0]
    assert "verification: FAILED" in format_inspection(report)
    assert not marker.exists()


def test_trust_takes_the_dill_path(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    _legacy_archive(tmp_path / "m", params=dill.dumps(MarkerPickle(marker)))
    bundle = load_bundle(tmp_path / "m", trust=True)
    assert marker.exists()  # documented: trust=True runs the archive's code
    assert bundle.params == LEGACY_PARAMS


def test_trust_reports_failing_pickles_as_bundle_errors(tmp_path: Path) -> None:
    _legacy_archive(tmp_path, params=b"\x80\x04c no_such_module\nthing\n.")
    with pytest.raises(BundleError, match="trusted unpickling failed"):
        load_bundle(tmp_path, trust=True)


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"manifest.dill": pickle.dumps(["autoencoder"])}, "'models'"),
        ({"manifest.dill": pickle.dumps({"models": ["a/b"]})}, "'models'"),
        ({"manifest.dill": pickle.dumps({"models": ["autoencoder"]})}, "no params.dill"),
        (
            {
                "manifest.dill": pickle.dumps({"models": ["autoencoder"]}),
                "autoencoder/params.dill": pickle.dumps({"N": 64, "gridsize": 1}),
            },
            "intensity_scale",
        ),
        (
            {
                "manifest.dill": pickle.dumps({"models": ["autoencoder"]}),
                "autoencoder/params.dill": pickle.dumps([1, 2]),
            },
            "expected a dict",
        ),
        ({"manifest.dill": b"not a pickle"}, "not a readable pickle"),
    ],
)
def test_malformed_legacy_archives(tmp_path: Path, members: dict[str, bytes], match: str) -> None:
    write_zip(tmp_path / "wts.h5.zip", members.items())
    with pytest.raises(BundleError, match=match):
        load_bundle(tmp_path)


def test_inspect_legacy_archive(tmp_path: Path) -> None:
    _legacy_archive(tmp_path)
    report = inspect(tmp_path)
    assert report["ok"] and report["legacy"] and report["backend"] == "tensorflow"
    assert report["native"] == [
        "autoencoder/model.keras",
        "diffraction_to_obj/model.h5",
        "diffraction_to_obj/model.keras",
    ]
    assert all("unverified" in m["status"] for m in report["members"])
    text = format_inspection(report)
    assert "legacy PtychoPINN archive" in text and "N=64" in text


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (pickle.dumps({**LEGACY_PARAMS, "probe": np.ones(3)}), "pickled by the standard library"),
        (dill.dumps({**LEGACY_PARAMS, "probe": np.array(["a"])}), "not numeric"),
        (dill.dumps({**LEGACY_PARAMS, "probe": np.zeros(2, "f4,i4")}), "structured"),
        (dill.dumps({**LEGACY_PARAMS, "probe": np.ma.masked_array([1.0])}), "executable pickles"),
    ],
)
def test_numpy_data_beyond_plain_arrays_is_refused(
    tmp_path: Path, params: bytes, match: str
) -> None:
    _legacy_archive(tmp_path, params=params)
    with pytest.raises(BundleError, match=match):
        load_bundle(tmp_path)


def test_dill_arrays_of_every_numeric_kind(tmp_path: Path) -> None:
    arrays = {
        "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "big_endian": np.arange(4, dtype=">i4"),
        "c": np.full((2, 2), 1 - 1j, np.complex64),
        "b": np.array([True, False]),
        "u": np.zeros((0, 3), np.uint8),
        "scalar": np.float16(1.5),
    }
    _legacy_archive(tmp_path, params=dill.dumps({**LEGACY_PARAMS, **arrays}))
    params = load_bundle(tmp_path).params
    for key, value in arrays.items():
        assert params[key].dtype == value.dtype and params[key].shape == value.shape, key
        np.testing.assert_array_equal(params[key], value)
