"""The OpenMP spin default that keeps PyTorch on CPU from starving under load (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = "import os, ptycho_torch, torch; print(os.environ['GOMP_SPINCOUNT'])"


def _spincount(env: dict[str, str]) -> str:
    res = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_importing_the_backend_sets_the_spin_count_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    assert _spincount(env) == "10000"


def test_a_spin_count_the_user_set_is_kept():
    assert _spincount({**os.environ, "GOMP_SPINCOUNT": "123"}) == "123"
