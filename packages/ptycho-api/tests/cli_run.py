"""Run the real ``ptycho`` console script on these sources, as the CLI tests need it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ptycho_api.rawdata import MAX_LOAD_BYTES_ENV

SRC = str(Path(__file__).resolve().parents[1] / "src")
"""This checkout's sources, put first on the child's PYTHONPATH so it runs the code under test."""


def ptycho(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``ptycho ARGS`` in ``cwd`` (fall back to ``python -m``), without the user's backend or
    load-limit settings, plus ``env``."""
    exe = shutil.which("ptycho", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "ptycho_api.cli.main"]
    base = {k: v for k, v in os.environ.items() if k not in ("PTYCHO_BACKEND", MAX_LOAD_BYTES_ENV)}
    path = os.pathsep.join(p for p in (SRC, base.get("PYTHONPATH")) if p)
    return subprocess.run(
        [*cmd, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, "PYTHONPATH": path, **(env or {})},
    )
