"""Ptychodus 1.7.0's "PtychoPINN" library trains and reconstructs through our `ptycho` package.

Everything runs through Ptychodus's own ``SubprocessReconstructor``: every train and reconstruct
call pickles a payload, spawns a child process that imports Ptychodus's child entry points, which
call `ptycho` (this repository's `ptychopinn` package), and streams the result back. Nothing in
Ptychodus is patched. The backend is whichever one the session installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    CONCURRENT_TRAINING,
    EPOCHS,
    EXPECTED_BACKEND,
    FIGURES,
    MODEL,
    TRAINING,
    build_library,
    reconstructor,
)
from ptychodus.api.reconstruct import ReconstructOutput, TrainOutput
from ptychodus.model.processing._subprocess_protocol import ChildError
from ptychodus_scan import Scan, make_scan

from ptycho_bundle.model_archive import read_model_archive

RECONSTRUCTORS = ("PINN", "Supervised")

# Amplitude SSIM the trained model must gain over the untrained network it started from (same
# seed). On this object a constant image scores about 0.26 and the untrained network about
# 0.23; learning the density of lines (what 640 steps give) scores about 0.38 here. A gain of
# 0.05 is five times the spread of SSIM between training seeds at this budget (about 0.01),
# and no image that has not learnt the object reaches it.
SSIM_GAIN = 0.05


def _reconstruct(rec: Any, scan: Scan) -> ReconstructOutput:
    outputs = list(rec.reconstruct(scan.reconstruct_input))
    assert len(outputs) == 1, f"expected one ReconstructOutput; found {len(outputs)}"
    return outputs[0]


@pytest.fixture(scope="session")
def training_data(
    tmp_path_factory: pytest.TempPathFactory, train_scan: Scan, test_scan: Scan
) -> Path:
    """``train_data.npz`` and ``test_data.npz`` written by Ptychodus's own export."""
    directory = tmp_path_factory.mktemp("training-data")
    rec = reconstructor(build_library(), "PINN")
    rec.export_training_data(directory / "train_data.npz", train_scan.reconstruct_input)
    rec.export_training_data(directory / "test_data.npz", test_scan.reconstruct_input)
    return directory


@pytest.fixture(scope="session")
def untrained_ssim(
    tmp_path_factory: pytest.TempPathFactory, train_scan: Scan, test_scan: Scan
) -> float:
    """Amplitude SSIM of the untrained network (seed 0, as training starts) through Ptychodus."""
    from ptycho_api.backend import select_backend
    from ptycho_api.config import ModelConfig, TrainingConfig
    from ptycho_api.normalization import intensity_scale

    directory = tmp_path_factory.mktemp("untrained")
    backend = select_backend(None, None)
    model_config = ModelConfig(N=64, **MODEL)
    probe = train_scan.reconstruct_input.product.probes.get_probe_no_opr().get_array()[0]
    model = backend.build_model(
        model_config, probe, intensity_scale(TRAINING["nphotons"], 64), seed=0
    )
    archive = backend.save_archive(
        model, directory, TrainingConfig(model=model_config, nphotons=TRAINING["nphotons"])
    )
    rec = reconstructor(build_library(), "PINN")
    rec.load_model_from_file(archive)
    ssim = test_scan.amplitude_ssim(_reconstruct(rec, test_scan).product.object_)
    for name in RECONSTRUCTORS:
        FIGURES.setdefault(name, {})["untrained"] = ssim
    return ssim


def _train(name: str, out: Path, training_data: Path) -> dict[str, Any]:
    """Train reconstructor ``name`` through Ptychodus, keeping the log records of this thread.

    Ptychodus re-emits the child's records in the thread that iterates ``train``, so a handler
    that keeps only this thread's records separates two trainings that run at once.
    """
    rec = reconstructor(build_library(EPOCHS[name]), name)
    records: list[logging.LogRecord] = []
    thread = threading.get_ident()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if threading.get_ident() == thread:
                records.append(record)

    handler = Keep(level=logging.INFO)
    logging.getLogger().addHandler(handler)
    try:
        start = time.perf_counter()
        outputs = list(rec.train(training_data, out))
        seconds = time.perf_counter() - start
    finally:
        logging.getLogger().removeHandler(handler)
    FIGURES.setdefault(name, {})["train_s"] = seconds
    return {"name": name, "rec": rec, "out": out, "outputs": outputs, "logs": records}


@pytest.fixture(scope="session")
def trainings(
    tmp_path_factory: pytest.TempPathFactory, training_data: Path
) -> dict[str, dict[str, Any]]:
    """Both reconstructors trained, each in its own Ptychodus child process; at once with
    ``PTYCHODUS_CONCURRENT_TRAINING=1``, else one after the other.

    At once, two children share the CPU (the figures table's training times are then under that
    load) and the session takes the longer training's time rather than the sum.
    """
    outs = {name: tmp_path_factory.mktemp(f"trained-{name}") for name in RECONSTRUCTORS}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)  # the children forward records at the parent's level
    try:
        workers = len(RECONSTRUCTORS) if CONCURRENT_TRAINING else 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {
                name: pool.submit(_train, name, outs[name], training_data)
                for name in RECONSTRUCTORS
            }
            return {name: future.result() for name, future in futures.items()}
    finally:
        root.setLevel(level)


@pytest.fixture(scope="session", params=RECONSTRUCTORS)
def trained(request: pytest.FixtureRequest, trainings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One reconstructor trained through Ptychodus: its object, outputs, time and child logs."""
    return trainings[request.param]


def test_library_finds_ptycho_and_reports_our_version() -> None:
    library = build_library()
    names = [r.name for r in library]
    assert names == list(RECONSTRUCTORS)
    for rec in library:
        assert type(rec).__name__ == "SubprocessReconstructor", names
        assert rec.is_trainable
    assert importlib.metadata.version("ptychopinn") == __import__("ptycho").__version__


def test_only_the_sessions_backend_is_installed() -> None:
    if EXPECTED_BACKEND is None:
        pytest.skip("PTYCHO_EXPECT_BACKEND is set by `nox -s ptychodus`; not in this run")
    other = {"tensorflow": "torch", "pytorch": "tensorflow"}[EXPECTED_BACKEND]
    assert importlib.util.find_spec(other) is None, f"{other} must not be installed here"


def test_parent_imports_no_framework() -> None:
    """Ptychodus's parent process builds the configs: `ptycho.config.config` must not load a framework."""
    code = (
        "import sys\n"
        "from ptychodus.model.ptychopinn.core import PtychoPINNReconstructorLibrary\n"
        "from ptycho.config.config import ModelConfig, TrainingConfig\n"
        "import pickle\n"
        "c = TrainingConfig(model=ModelConfig(N=0, model_type='supervised'))\n"
        "c.model.N = 64\n"
        "assert pickle.loads(pickle.dumps(c)).model.N == 64\n"
        "print(sorted(m for m in ('tensorflow', 'torch', 'keras', 'lightning') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_training_writes_our_archive(trained: dict[str, Any]) -> None:
    rec, out = trained["rec"], trained["out"]
    assert [type(o) for o in trained["outputs"]] == [TrainOutput]
    archive = out / "wts.h5.zip"
    assert rec.is_model_loaded() and archive.is_file()
    spec = read_model_archive(archive)
    assert spec.model_config.model_type == trained["name"].lower()
    assert spec.model_config.n_filters_scale == MODEL["n_filters_scale"]
    if EXPECTED_BACKEND is not None:
        assert spec.backend == EXPECTED_BACKEND
    # The working directory gets nothing: training side files stay out of the caller's way.
    assert not (Path.cwd() / "checkpoints").exists()


def test_epoch_losses_reach_ptychodus(trained: dict[str, Any]) -> None:
    """The TF library's protocol carries no losses; the child's per-epoch log records reach the parent."""
    epochs = [r.getMessage() for r in trained["logs"] if r.getMessage().startswith("epoch ")]
    nepochs = EPOCHS[trained["name"]]
    assert len(epochs) == nepochs, [r.getMessage() for r in trained["logs"]][-20:]
    assert epochs[-1].startswith(f"epoch {nepochs}/{nepochs}: loss ")


def test_reconstruction_beats_the_untrained_network(
    trained: dict[str, Any], test_scan: Scan, untrained_ssim: float
) -> None:
    output = _reconstruct(trained["rec"], test_scan)
    obj = output.product.object_
    assert np.iscomplexobj(obj.get_array())
    geometry = test_scan.reconstruct_input.product.object_.get_pixel_geometry()
    assert obj.get_pixel_geometry() == geometry
    ssim = test_scan.amplitude_ssim(obj)
    FIGURES[trained["name"]]["ssim"] = ssim
    assert ssim >= untrained_ssim + SSIM_GAIN, (
        f"{trained['name']}: amplitude SSIM {ssim:.3f}; untrained {untrained_ssim:.3f}; "
        f"expected a gain of at least {SSIM_GAIN}"
    )
    trained["object"] = obj.get_array()


def test_saved_model_reloads_and_reconstructs_the_same(
    trained: dict[str, Any], test_scan: Scan, tmp_path: Path
) -> None:
    """Ptychodus saves the model as an outer zip and loads it back; the image repeats exactly."""
    saved = tmp_path / "model.zip"
    trained["rec"].save_model(saved)
    rec = reconstructor(build_library(), trained["name"])
    rec.load_model_from_file(saved)
    # The image the trained reconstructor gave (kept by the SSIM test; made here if that one
    # did not run): one child process fewer per reconstructor.
    first = trained.get("object")
    if first is None:
        first = _reconstruct(trained["rec"], test_scan).product.object_.get_array()
    again = _reconstruct(rec, test_scan).product.object_.get_array()
    # The same archive, inputs and grouping seed on the same machine: bit-identical.
    np.testing.assert_array_equal(again, first)


def test_non_square_patterns_take_ptychodus_error_path(trained: dict[str, Any]) -> None:
    scan = make_scan(16, seed=3, square=False)
    with pytest.raises(ValueError, match="square"):
        _reconstruct(trained["rec"], scan)


def test_reconstruct_without_a_model_is_refused(test_scan: Scan) -> None:
    rec = reconstructor(build_library(), "PINN")
    with pytest.raises(RuntimeError, match="no PtychoPINN model"):
        _reconstruct(rec, test_scan)


def test_corrupt_model_is_a_bundle_error_in_the_child(tmp_path: Path, test_scan: Scan) -> None:
    corrupt = tmp_path / "wts.h5.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not a model archive")
    rec = reconstructor(build_library(), "PINN")
    rec.load_model_from_file(corrupt)
    with pytest.raises(ChildError) as caught:
        _reconstruct(rec, test_scan)
    assert caught.value.child_exception_type == "BundleError", caught.value.child_traceback


def test_missing_training_file_is_a_data_error_in_the_child(tmp_path: Path) -> None:
    rec = reconstructor(build_library(), "PINN")
    with pytest.raises(ChildError) as caught:
        list(rec.train(tmp_path, tmp_path / "out"))
    assert caught.value.child_exception_type == "DataError", caught.value.child_traceback
    assert "test_data.npz" in str(caught.value.child_traceback)
