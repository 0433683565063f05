"""The ``pytorch`` backend is registered, selected automatically, and needs no TensorFlow."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from importlib import metadata

import pytest

from ptycho_api.backend import (
    ENV_VAR,
    LOG_FILTERS_GROUP,
    Backend,
    LogFilters,
    discover_backends,
    discover_log_filters,
    list_backends,
    select_backend,
)


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
    code = (
        "import json, sys, ptycho_torch.backend, ptycho_torch.workflows.components, "
        "ptycho_torch.model_manager; print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert not [m for m in loaded if m.split(".")[0] in ("tensorflow", "keras")]
    assert "torch" in loaded and "lightning" in loaded


def test_backend_implements_every_protocol_operation():
    import numpy as np

    from ptycho_api.config import ModelConfig
    from ptycho_api.probe import default_probe

    backend = select_backend("pytorch")
    model = backend.build_model(ModelConfig(N=64, n_filters_scale=1), default_probe(64), 988.2)
    weights = backend.export_weights(model)
    backend.import_weights(model, weights)
    patches = backend.predict(
        model, np.ones((2, 64, 64, 1), np.float32), np.zeros((2, 1, 2, 1), np.float32)
    )
    assert patches.shape == (2, 64, 64, 1) and patches.dtype == np.complex64
    image = backend.reassemble_position(patches, np.zeros((2, 1, 2, 1)), M=20)
    assert image.shape == (20, 20, 1)


def test_log_filters_are_registered_and_on_the_backend_class():
    from ptycho_torch.backend import Backend as BackendClass
    from ptycho_torch.logs import LOG_FILTERS

    (ep,) = [e for e in metadata.entry_points(group=LOG_FILTERS_GROUP) if e.name == "pytorch"]
    assert ep.value == "ptycho_torch.logs:LOG_FILTERS"
    assert isinstance(LOG_FILTERS, LogFilters)
    assert discover_log_filters("pytorch") == LOG_FILTERS
    assert BackendClass.log_filters is LOG_FILTERS


def test_importing_the_log_filters_module_loads_no_framework():
    code = "import json, sys, ptycho_torch.logs; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    frameworks = ("tensorflow", "keras", "torch", "lightning", "absl", "jax")
    assert not [m for m in loaded if m.split(".")[0] in frameworks]


def test_log_filters_quiet_lightnings_loggers_after_import():
    code = (
        "import logging\n"
        "from ptycho_api.cli.console import framework_import_filtered\n"
        "from ptycho_torch.logs import LOG_FILTERS\n"
        "with framework_import_filtered(LOG_FILTERS):\n"
        "    import lightning.pytorch\n"
        "print(logging.getLogger('lightning.pytorch').getEffectiveLevel())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(logging.WARNING)]
