"""``train`` and ``reconstruct`` refuse to mix a new run with a previous one unless --overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import ptycho


def _previous_train_run(directory: Path) -> None:
    (directory / "checkpoints").mkdir(parents=True)
    (directory / "checkpoints" / "last.ckpt").write_bytes(b"ckpt")
    (directory / "lightning_logs").mkdir()
    for name in ("wts.h5.zip", "history.json", "history.csv", "reconstruction.npz"):
        (directory / name).write_bytes(b"old")
    (directory / "notes.txt").write_text("mine")


@pytest.mark.parametrize("marker", ["wts.h5.zip", "checkpoints"])
def test_train_refuses_a_directory_with_a_previous_run(tmp_path: Path, marker: str) -> None:
    out = tmp_path / "run1"
    out.mkdir()
    if marker == "checkpoints":
        (out / marker).mkdir()
    else:
        (out / marker).write_bytes(b"old")
    res = ptycho("train", "--train-data", "missing.npz", "--output-dir", str(out), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert str(out) in lines[0] and "--overwrite" in lines[0] and marker in lines[0]
    assert (out / marker).exists()


def test_train_overwrite_removes_only_the_previous_runs_files(tmp_path: Path) -> None:
    out = tmp_path / "run1"
    _previous_train_run(out)
    res = ptycho(
        "train",
        "--train-data",
        "missing.npz",
        "--output-dir",
        str(out),
        "--overwrite",
        cwd=tmp_path,
    )
    # the run goes on past the check and stops later (missing data, or no backend installed)
    assert res.returncode == 2, res.stderr
    assert "already holds" not in res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_train_into_a_fresh_or_unrelated_directory_is_not_refused(tmp_path: Path) -> None:
    out = tmp_path / "run1"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    res = ptycho("train", "--train-data", "missing.npz", "--output-dir", str(out), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "already holds" not in res.stderr
    assert (out / "notes.txt").exists()


def test_reconstruct_refuses_then_overwrites(tmp_path: Path) -> None:
    model = tmp_path / "wts.h5.zip"
    model.write_bytes(b"not read before the check")
    out = tmp_path / "recon"
    out.mkdir()
    for name in ("reconstruction.npz", "reconstruction.png", "metrics.json", "notes.txt"):
        (out / name).write_bytes(b"old")
    args = ("reconstruct", "--model", str(model), "--data", "missing.npz", "--output-dir", str(out))
    res = ptycho(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert str(out) in res.stderr and "--overwrite" in res.stderr
    assert (out / "reconstruction.npz").exists()
    res = ptycho(*args, "--overwrite", cwd=tmp_path)
    assert res.returncode == 2 and "already holds" not in res.stderr, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_help_documents_overwrite_and_the_reconstruct_seed(tmp_path: Path) -> None:
    for command in ("train", "reconstruct"):
        res = ptycho(command, "--help", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "--overwrite" in res.stdout
    assert "(default 0)" in ptycho("reconstruct", "--help", cwd=tmp_path).stdout
