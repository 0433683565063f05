"""Under an address-space limit too small for TensorFlow, a run stops at once with exit 2 (issue 17).

Before this check, ``ptycho train --backend tensorflow`` under a 2 GiB ``RLIMIT_AS`` died with
SIGSEGV inside oneDNN (or stalled), and a 3 GiB limit aborted it with ``std::bad_alloc``, on
valid data. The limits used here are the contract's 2 GiB and the 3 GiB that is enough to
reconstruct but not to train (``ptycho_tf.address_space.NEEDS``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.workflows import train_cdi_model
from ptycho_tf.address_space import GIB

TIMEOUT_S = 60
"""The contract's ceiling for an exit-2 message; the refusal takes TensorFlow's import time."""


def _ptycho_limited(limit: int, *args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    start = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ptycho_api.cli import main; sys.exit(main())",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=apply,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    return done, time.monotonic() - start


def _refused(done: subprocess.CompletedProcess, limit_gib: str, task: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    # TensorFlow's own start-up notices (e.g. a failed cuInit) may precede ours.
    errors = [line for line in done.stderr.splitlines() if line.startswith("ptycho ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    for needle in (f"limited to {limit_gib} GiB", f"to {task}", "--backend pytorch"):
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory, raw_train) -> Path:
    path = tmp_path_factory.mktemp("scan") / "scan.npz"
    raw_train.to_file(path)
    return path


@pytest.mark.parametrize(("limit_gib", "task"), [(2, "run"), (3, "train")])
def test_training_under_the_limit_is_refused_before_it_starts(
    limit_gib: int, task: str, scan: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done, seconds = _ptycho_limited(
        limit_gib * GIB,
        *("train", "--backend", "tensorflow", "--train-data", str(scan), "--epochs", "1"),
        *("--n-groups", "16", "--output-dir", str(out)),
        cwd=tmp_path,
    )
    assert seconds < TIMEOUT_S
    _refused(done, str(limit_gib), task)
    assert not list(out.glob("*.zip"))


def test_reconstruction_under_2_gib_is_refused(scan: Path, raw_train, tmp_path: Path) -> None:
    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=1, n_filters_scale=1),
        nepochs=1,
        n_groups=16,
        output_dir=tmp_path / "model",
        seed=0,
    )
    train_cdi_model(raw_train, None, config, backend="tensorflow")
    done, seconds = _ptycho_limited(
        2 * GIB,
        "reconstruct",
        "--model",
        str(tmp_path / "model"),
        "--data",
        str(scan),
        "--output-dir",
        str(tmp_path / "recon"),
        cwd=tmp_path,
    )
    assert seconds < TIMEOUT_S
    _refused(done, "2", "run")
