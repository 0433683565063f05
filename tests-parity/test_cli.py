"""The ``ptycho`` command with both real backends installed: every subcommand as a subprocess.

Archives written by one backend are reconstructed by the other, so the CLI path of the
cross-loading promise is exercised too. Data are tiny (N=64, a few dozen patterns, one epoch):
these tests check plumbing, files and exit codes, not reconstruction quality.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptycho_bundle import load_bundle

BACKENDS = ("tensorflow", "pytorch")


def ptycho(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ptycho", path=str(Path(sys.executable).parent))
    assert exe, "the ptycho console script is not installed next to this interpreter"
    env = {k: v for k, v in os.environ.items() if k != "PTYCHO_BACKEND"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    res = ptycho(
        "simulate",
        "--pair",
        "--output-dir",
        "data",
        "--n-images",
        "64",
        "--n-test",
        "32",
        "--seed",
        "5",
        cwd=root,
    )
    assert res.returncode == 0, res.stderr
    return root


@pytest.fixture(scope="module")
def trained(workdir) -> dict[str, Path]:
    runs = {}
    for backend in BACKENDS:
        out = f"run-{backend}"
        res = ptycho(
            "train",
            "--train-data",
            "data/train_data.npz",
            "--test-data",
            "data/test_data.npz",
            "--backend",
            backend,
            "--epochs",
            "1",
            "--n-filters-scale",
            "1",
            "--batch-size",
            "16",
            "--seed",
            "1",
            "--output-dir",
            out,
            "-q",
            cwd=workdir,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        assert f"| backend: {backend} (requested explicitly)" in res.stdout.splitlines()[0]
        runs[backend] = workdir / out
    return runs


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_writes_every_output(trained, backend):
    run = trained[backend]
    for name in (
        "wts.h5.zip",
        "history.json",
        "history.csv",
        "loss.png",
        "config.yaml",
        "reconstruction.npz",
        "reconstruction.png",
        "metrics.json",
    ):
        assert (run / name).is_file(), name
    assert load_bundle(run).backend == backend
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 1 and "val_loss" in history and "lr" in history
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"mae", "mse", "psnr", "psnr255", "ssim", "ms_ssim", "frc50"}


@pytest.mark.parametrize(
    ("writer", "reader"), [("tensorflow", "pytorch"), ("pytorch", "tensorflow")]
)
def test_reconstruct_with_the_other_backend(workdir, trained, writer, reader):
    out = f"recon-{writer}-by-{reader}"
    res = ptycho(
        "reconstruct",
        "--model",
        str(trained[writer]),
        "--data",
        "data/test_data.npz",
        "--backend",
        reader,
        "--output-dir",
        out,
        cwd=workdir,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    with np.load(workdir / out / "reconstruction.npz") as npz:
        image = npz["object"]
        assert image.dtype == np.complex64 and image.ndim == 2 and np.isfinite(image).all()
    assert (workdir / out / "reconstruction.png").is_file() and (
        workdir / out / "metrics.json"
    ).is_file()
    res = ptycho(
        "evaluate",
        "--reconstruction",
        f"{out}/reconstruction.npz",
        "--ground-truth",
        "data/test_data.npz",
        cwd=workdir,
    )
    assert res.returncode == 0 and "ssim" in res.stdout


def test_inspect_and_backends(workdir, trained):
    res = ptycho("inspect", str(trained["pytorch"] / "wts.h5.zip"), cwd=workdir)
    assert res.returncode == 0 and "verification: all members ok" in res.stdout
    res = ptycho("backends", cwd=workdir)
    assert res.returncode == 0
    assert "tensorflow" in res.stdout and "pytorch" in res.stdout
    assert "selected:   tensorflow (default when several backends are installed" in res.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_runs_end_to_end(workdir, backend):
    res = ptycho(
        "demo",
        "--backend",
        backend,
        "--n-images",
        "64",
        "--n-test",
        "32",
        "--epochs",
        "1",
        "--output-dir",
        f"demo-{backend}",
        cwd=workdir,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "[3/3] done." in res.stdout and "ssim" in res.stdout
    assert "simulating 64 + 32 patterns" in res.stdout and "training for 1 epoch ..." in res.stdout
    # Native framework start-up notes are held back without -v (ptycho_api.cli.console).
    assert "absl::InitializeLog" not in res.stderr
    assert not re.search(r"^[IW]\d{4} \d\d:\d\d:", res.stderr, re.MULTILINE), res.stderr
    # Lightning's device notes and tips stay out, and no per-batch bar goes into a pipe.
    assert "GPU available" not in res.stderr and "Tip:" not in res.stderr, res.stderr
    assert "it/s" not in res.stdout, res.stdout
    assert (workdir / f"demo-{backend}" / "reconstruction.png").is_file()


def test_corrupt_archive_and_bad_data_exit_2(workdir, trained):
    bad = workdir / "corrupt"
    bad.mkdir(exist_ok=True)
    (bad / "wts.h5.zip").write_bytes((trained["pytorch"] / "wts.h5.zip").read_bytes()[:2000])
    res = ptycho(
        "reconstruct",
        "--model",
        str(bad),
        "--data",
        "data/test_data.npz",
        "--output-dir",
        "x",
        cwd=workdir,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "wts.h5.zip" in res.stderr
    np.savez(
        workdir / "noprobe.npz",
        diff3d=np.ones((4, 64, 64), np.float32),
        xcoords=np.zeros(4),
        ycoords=np.zeros(4),
    )
    res = ptycho("train", "--train-data", "noprobe.npz", "--backend", "tf", cwd=workdir)
    assert res.returncode == 2 and "probeGuess" in res.stderr and "Traceback" not in res.stderr
