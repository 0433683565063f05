"""Output directories (issue 17): an output that cannot be written stops ``simulate``, ``train``,
``reconstruct`` and ``demo`` with exit 2 and one line naming the directory, before a backend is
imported or data are read; a write that fails later (a full disk) gives the same kind of line.

Real ``ptycho`` subprocesses on real directories. No backend is installed in this session, so
``train``/``reconstruct``/``demo`` reaching the backend would stop with "no backend installed":
seeing the directory's message instead proves the check comes first.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_run import ptycho

from ptycho_api.cli.outputs import output_errors, prepare_output_dir
from ptycho_api.errors import OutputError


def _assert_output_error(res: subprocess.CompletedProcess[str], directory: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, res.stderr
    assert f"error: {directory}: output directory" in errors[0], res.stderr
    assert "backend" not in errors[0] and "Traceback" not in res.stderr


@pytest.fixture
def blocked(tmp_path: Path) -> str:
    """An output directory below a regular file: it cannot be created, even by root."""
    (tmp_path / "somefile").write_text("not a directory\n")
    return "somefile/out"


COMMANDS = {
    "simulate": ["simulate", "--pair", "--output-dir", "{out}", "--n-images", "8"],
    "simulate-output": ["simulate", "--output", "{out}/scan.npz", "--n-images", "8"],
    "train": ["train", "--train-data", "scan.npz", "--output-dir", "{out}"],
    "reconstruct": [
        "reconstruct",
        "--model",
        "run1",
        "--data",
        "scan.npz",
        "--output-dir",
        "{out}",
    ],
    "demo": ["demo", "--output-dir", "{out}"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_uncreatable_output_dir_exits_2_first(tmp_path: Path, blocked: str, command: str) -> None:
    (tmp_path / "run1").mkdir()  # reconstruct checks that the model exists before the outputs
    args = [a.format(out=blocked) for a in COMMANDS[command]]
    res = ptycho(*args, cwd=tmp_path)
    _assert_output_error(res, blocked)
    assert "Not a directory" in res.stderr or "File exists" in res.stderr
    assert not (tmp_path / "somefile").is_dir()


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root writes into a chmod 0o555 directory; the uncreatable-directory cases cover root",
)
@pytest.mark.parametrize("command", ["simulate", "train"])
def test_read_only_output_dir_exits_2(tmp_path: Path, command: str) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        args = [a.format(out="ro") for a in COMMANDS[command]]
        res = ptycho(*args, cwd=tmp_path)
    finally:
        read_only.chmod(0o755)
    _assert_output_error(res, "ro")
    assert "Permission denied" in res.stderr
    assert list(read_only.iterdir()) == []


def test_prepare_output_dir_creates_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert prepare_output_dir(target) == target
    assert target.is_dir() and list(target.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (always ENOSPC)")
def test_full_disk_during_writes_becomes_one_line(tmp_path: Path) -> None:
    # /dev/full refuses every write with ENOSPC, as a full disk does.
    with pytest.raises(OutputError) as info:
        with output_errors(tmp_path), open("/dev/full", "wb", buffering=0) as fh:
            fh.write(b"x")
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: cannot write the outputs")
    assert "No space left on device" in message and "\n" not in message


def test_unrelated_os_errors_are_not_called_output_errors(tmp_path: Path) -> None:
    elsewhere = tmp_path.parent / f"{tmp_path.name}-missing" / "input.npz"
    with pytest.raises(FileNotFoundError), output_errors(tmp_path / "out"):
        elsewhere.read_bytes()


def test_evaluate_unwritable_metrics_exits_2(tmp_path: Path) -> None:
    # A real scan and a 64 x 64 reconstruction at the object's centre (one offset, M = 64, so
    # the stitched canvas is 64 x 64): evaluation runs, then the write fails.
    res = ptycho("simulate", "--output", "scan.npz", "--n-images", "16", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    with np.load(tmp_path / "scan.npz") as scan:
        centre = scan["objectGuess"].shape[0] / 2
    np.savez(
        tmp_path / "reconstruction.npz",
        object=np.ones((64, 64), np.complex64),
        global_offsets=np.full((1, 1, 2, 1), centre),
        M=np.int64(64),
    )
    (tmp_path / "somefile").write_text("not a directory\n")
    res = ptycho(
        "evaluate",
        "--reconstruction",
        "reconstruction.npz",
        "--ground-truth",
        "scan.npz",
        "--output",
        "somefile/metrics.json",
        cwd=tmp_path,
    )
    assert res.returncode == 2, (res.stdout, res.stderr)
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "error: somefile: cannot write the outputs" in errors[0]
    assert "Traceback" not in res.stderr
