"""``ptycho inspect`` as a real subprocess (ptycho-api's CLI with only ptycho-bundle installed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bundle_helpers import rebuild


def ptycho(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ptycho", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "ptycho_api.cli.main"]
    return subprocess.run(
        [*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


def test_inspect_prints_and_verifies(archive, tmp_path):
    res = ptycho("inspect", str(archive.parent), "--json", "report.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "backend:   pytorch" in res.stdout
    assert "verification: all members ok" in res.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is True and report["backend"] == "pytorch"


def test_inspect_tampered_archive_exits_2(archive, tmp_path):
    bad = rebuild(
        archive, tmp_path / "bad.zip", replace={"params.json": b"{}"}, fix_checksums=False
    )
    res = ptycho("inspect", str(bad), cwd=tmp_path)
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "verification failed" in errors[0] and "params.json" in errors[0]


def test_inspect_not_an_archive_exits_2(tmp_path):
    junk = tmp_path / "wts.h5.zip"
    junk.write_bytes(b"this is not a zip file")
    res = ptycho("inspect", str(junk), cwd=tmp_path)
    assert res.returncode == 2 and str(junk) in res.stderr and "Traceback" not in res.stderr
