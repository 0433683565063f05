"""With both real backends installed in one environment: discovery, selection and isolation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ptycho_api.backend import ENV_VAR, discover_backends, list_backends, select_backend


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_both_backends_registered_and_importable():
    assert sorted(discover_backends()) == ["pytorch", "tensorflow"]
    infos = {i.name: i for i in list_backends()}
    assert infos["tensorflow"].distribution == "ptycho-tf" and infos["tensorflow"].importable
    assert infos["pytorch"].distribution == "ptycho-torch" and infos["pytorch"].importable


def test_tensorflow_is_the_default_when_both_are_installed(monkeypatch):
    backend = select_backend()
    assert backend.name == "tensorflow"
    assert "several backends are installed" in backend.selection_reason
    monkeypatch.setenv(ENV_VAR, "torch")
    assert select_backend().name == "pytorch"


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [("ptycho_tf.backend", "torch"), ("ptycho_torch.backend", "tensorflow")],
)
def test_each_backend_imports_without_the_other_framework(module, forbidden):
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert not [m for m in json.loads(out.stdout) if m.split(".")[0] == forbidden]
