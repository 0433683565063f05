"""Honest ``ptycho inspect``: "verified" only when checked, escaped archive strings, quiet on a closed pipe.

``ptycho inspect`` runs as a real subprocess (ptycho-api's CLI with ptycho-bundle installed) on
real archive files.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

from bundle_helpers import rebuild, write_zip

from ptycho_bundle import format_inspection, inspect

# Starting the CLI (numpy, h5py) takes 1-3 s on a loaded machine; inspecting these archives
# takes milliseconds. 60 s only guards against a hang.
TIMEOUT_S = 60
LEGACY_PARAMS = {"N": 64, "gridsize": 1, "intensity_scale": 812.5}
ESC = "\x1b"


def _command() -> list[str]:
    exe = shutil.which("ptycho", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "ptycho_api.cli.main"]


def ptycho(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def _legacy(path: Path, params: dict | None = None, **extra: bytes) -> Path:
    members = {
        "manifest.dill": pickle.dumps({"models": ["diffraction_to_obj"], "version": "1.0"}),
        "diffraction_to_obj/params.dill": pickle.dumps(params or LEGACY_PARAMS),
        **extra,
    }
    path.mkdir(parents=True, exist_ok=True)
    return write_zip(path / "wts.h5.zip", members.items())


def test_verified_only_with_a_matching_manifest(archive: Path, tmp_path: Path) -> None:
    report = inspect(archive)
    assert report["verified"] and report["verification"].startswith("manifest.json valid; ")
    assert "verification: OK (manifest.json valid; " in format_inspection(report)
    res = ptycho("inspect", str(archive), cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.endswith("verification: all members ok\n")


def test_legacy_archive_is_not_verified(tmp_path: Path) -> None:
    path = _legacy(tmp_path / "m")
    report = inspect(path)
    assert report["ok"] and not report["verified"]
    res = ptycho("inspect", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "verification: OK" not in res.stdout and "all members ok" not in res.stdout
    last = res.stdout.strip().splitlines()[-1]
    assert last == "verification: not verified (legacy archive: no manifest.json, no checksums)"


def test_format_2_archive_without_its_manifest_is_not_verified(
    archive: Path, tmp_path: Path
) -> None:
    stripped = rebuild(archive, tmp_path / "stripped.zip", drop=["manifest.json"])
    res = ptycho("inspect", str(stripped), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "all members ok" not in res.stdout and "verification: OK" not in res.stdout
    assert "not verified (manifest.json missing" in res.stdout.strip().splitlines()[-1]


def test_archive_strings_are_escaped(tmp_path: Path) -> None:
    # A member name, the pickled backend and a params value carrying terminal escape sequences
    # (clear screen, set window title, right-to-left override).
    path = _legacy(
        tmp_path / "m",
        params={**LEGACY_PARAMS, "note": f"{ESC}[2Jhi", f"key{ESC}[31m": 1},
        **{f"diffraction_to_obj/evil{ESC}[2J\u202e.txt": b"x"},
    )
    members = {
        "manifest.dill": pickle.dumps(
            {"models": ["diffraction_to_obj"], "backend": f"{ESC}]0;pwned\a"}
        ),
    }
    path = rebuild(path, tmp_path / "evil.zip", replace=members)
    res = ptycho("inspect", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for bad in (ESC, "\a", "\u202e"):
        assert bad not in res.stdout and bad not in res.stderr
    assert "backend:   \\x1b]0;pwned\\x07" in res.stdout
    assert "evil\\x1b[2J\\u202e.txt" in res.stdout and "key\\x1b[31m = 1" in res.stdout


def test_closed_stdout_exits_quietly(archive: Path, tmp_path: Path) -> None:
    # A pipe whose reader has already gone: what `ptycho inspect X | head -1` leaves once head
    # has its line, made deterministic (the first write fails).
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        res = subprocess.run(
            [*_command(), "inspect", str(archive)],
            cwd=tmp_path,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TIMEOUT_S,
        )
    finally:
        os.close(write_end)
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_pipe_into_head(tmp_path: Path) -> None:
    # 10,000 params lines (about 300 kB) cannot all fit in a pipe (64 kB) before `head -1` exits,
    # so later writes meet a closed pipe.
    params = {**LEGACY_PARAMS, **{f"key_{i:05d}": "x" * 10 for i in range(10_000)}}
    path = _legacy(tmp_path / "m", params=params)
    writer = subprocess.Popen(
        [*_command(), "inspect", str(path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    head = subprocess.run(
        ["head", "-1"], stdin=writer.stdout, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    writer.stdout.close()  # only head reads the pipe now
    _, err = writer.communicate(timeout=TIMEOUT_S)
    assert head.stdout.startswith("ptycho inspect | ")
    assert writer.returncode == 0 and err == b"", err


def _address_space_2gib() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_weights_declaring_gigabytes_exit_2_under_a_2_gib_limit(
    archive: Path, tmp_path: Path
) -> None:
    """Issue 17: a 7 KB weights.h5 declaring 1.86 GiB (checksums re-signed) ended in MemoryError."""
    import io

    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.create_dataset("a", shape=(1900 * 2**20,), dtype="u1")  # never written
    (tmp_path / "m").mkdir()
    path = rebuild(
        archive, tmp_path / "m" / "wts.h5.zip", replace={"weights.h5": buffer.getvalue()}
    )
    res = subprocess.run(
        [*_command(), "inspect", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=_address_space_2gib,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "unwritten or forged" in res.stderr, res.stderr


def test_a_fifo_is_named_as_not_an_archive(tmp_path: Path) -> None:
    """A FIFO is neither read (it would block) nor called missing (it exists)."""
    fifo = tmp_path / "wts.h5.zip"
    os.mkfifo(fifo)
    res = ptycho("inspect", str(fifo), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "found something else (a pipe, socket or device)" in res.stderr, res.stderr
