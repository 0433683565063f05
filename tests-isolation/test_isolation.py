"""With only the ptycho-api, ptycho-bundle and ptychopinn wheels installed: no framework, clear errors.

Run by ``nox -s isolation`` from a temporary directory, against built wheels (not the source
tree), so these facts hold for what users ``pip install``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

FRAMEWORKS = ("tensorflow", "keras", "torch", "lightning", "pytorch_lightning", "jax")


def _modules_after_import(*modules: str) -> list[str]:
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_packages_come_from_installed_wheels():
    for name in ("ptycho_api", "ptycho_bundle", "ptycho"):
        origin = Path(importlib.util.find_spec(name).origin)
        assert "site-packages" in origin.parts, f"{name} imported from {origin}, not a wheel"


@pytest.mark.parametrize(
    "modules",
    [
        ("ptycho_api",),
        ("ptycho_bundle",),
        (
            "ptycho_api",
            "ptycho_api.config",
            "ptycho_api.params",
            "ptycho_api.backend",
            "ptycho_bundle",
        ),
        (
            "ptycho",
            "ptycho.config.config",
            "ptycho.params",
            "ptycho.raw_data",
            "ptycho.probe",
            "ptycho.loader",
            "ptycho.tf_helper",
            "ptycho.workflows.components",
            "ptycho.model_manager",
        ),
    ],
)
def test_importing_loads_no_framework(modules):
    loaded = _modules_after_import(*modules)
    leaked = [m for m in loaded if m.split(".")[0] in FRAMEWORKS]
    assert leaked == [], f"importing {modules} loaded framework modules: {leaked[:10]}"


def test_no_framework_is_installed_here():
    # Without this the test above could pass only because a framework is never imported lazily.
    assert [f for f in FRAMEWORKS if importlib.util.find_spec(f) is not None] == []


def test_select_backend_says_none_installed_with_install_hints():
    from ptycho_api.backend import discover_backends, select_backend
    from ptycho_api.errors import BackendNotInstalledError

    assert discover_backends() == {}
    with pytest.raises(BackendNotInstalledError) as err:
        select_backend()
    msg = str(err.value)
    assert "no PtychoPINN backend is installed" in msg
    assert "pip install ptycho-tf" in msg and "pip install ptycho-torch" in msg


@pytest.mark.parametrize(("name", "dist"), [("tensorflow", "ptycho-tf"), ("torch", "ptycho-torch")])
def test_asking_for_a_backend_names_the_package_to_install(name, dist):
    from ptycho_api.backend import select_backend
    from ptycho_api.errors import BackendNotInstalledError

    with pytest.raises(BackendNotInstalledError, match=f"pip install {dist}"):
        select_backend(name)


def test_ptycho_training_without_a_backend_names_the_packages():
    """The `ptycho` compatibility package imports without a framework and says what to install."""
    code = (
        "from ptycho.config.config import ModelConfig, TrainingConfig\n"
        "from ptycho.workflows.components import train_cdi_model\n"
        "train_cdi_model(None, None, TrainingConfig(model=ModelConfig(N=64)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert "ptycho-tf" in done.stderr and "ptycho-torch" in done.stderr, done.stderr[-2000:]
