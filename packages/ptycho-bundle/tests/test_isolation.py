"""Importing and using ptycho_bundle loads no deep-learning framework (and dill only for trust=True)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

FRAMEWORKS = ("tensorflow", "keras", "torch", "lightning", "pytorch_lightning", "jax")

SCRIPT = textwrap.dedent(
    """
    import sys
    import importlib.abc

    FRAMEWORKS = {frameworks!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FRAMEWORKS:
                raise ImportError(f"blocked framework import: {{name}}")
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np
    import ptycho_bundle

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in FRAMEWORKS + ("dill",))
    assert not loaded, loaded
    path = ptycho_bundle.save_bundle(
        {tmp!r},
        backend="tensorflow",
        config={{"model": {{"N": 64}}}},
        params={{"N": 64, "gridsize": 1, "intensity_scale": 2.0}},
        weights={{"physics/probe": np.ones((4, 4), np.complex64)}},
    )
    ptycho_bundle.load_bundle(path)
    ptycho_bundle.format_inspection(ptycho_bundle.inspect(path))
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in FRAMEWORKS + ("dill",))
    assert not loaded, loaded
    print("isolated")
    """
)


def test_import_and_use_load_no_framework(tmp_path: Path) -> None:
    script = SCRIPT.format(frameworks=FRAMEWORKS, tmp=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "isolated"
