"""The ``pytorch`` backend is registered, selected automatically, and needs no TensorFlow."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from ptycho_api.backend import ENV_VAR, Backend, discover_backends, list_backends, select_backend


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_tensorflow_is_not_importable_in_this_environment():
    assert importlib.util.find_spec("tensorflow") is None
    assert importlib.util.find_spec("keras") is None


def test_auto_selection_picks_pytorch():
    assert sorted(discover_backends()) == ["pytorch"]
    backend = select_backend()
    assert backend.name == "pytorch"
    assert backend.selection_reason == "the only installed backend"
    assert isinstance(backend, Backend)


def test_backend_reports_framework_version_and_devices():
    import lightning  # noqa: F401 - the backend's other framework must import too
    import torch

    backend = select_backend("torch")
    assert backend.framework_version() == str(torch.__version__)
    assert backend.devices()[0] == "cpu"
    info = list_backends()
    assert [(i.name, i.distribution, i.importable) for i in info] == [
        ("pytorch", "ptycho-torch", True)
    ]


def test_importing_ptycho_torch_loads_no_tensorflow():
    code = "import json, sys, ptycho_torch.backend; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert not [m for m in loaded if m.split(".")[0] in ("tensorflow", "keras")]
    assert "torch" in loaded


def test_unimplemented_operations_say_which_issue_brings_them():
    backend = select_backend("pytorch")
    with pytest.raises(NotImplementedError, match="arrives with the PyTorch backend issue"):
        backend.build_model(None, None, 1.0)
