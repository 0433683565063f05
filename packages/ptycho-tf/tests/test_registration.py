"""The ``tensorflow`` backend is registered, selected automatically, and needs no PyTorch."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from importlib import metadata

import numpy as np
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


def test_torch_is_not_importable_in_this_environment():
    assert importlib.util.find_spec("torch") is None
    assert importlib.util.find_spec("lightning") is None


def test_auto_selection_picks_tensorflow():
    assert sorted(discover_backends()) == ["tensorflow"]
    backend = select_backend()
    assert backend.name == "tensorflow"
    assert backend.selection_reason == "the only installed backend"
    assert isinstance(backend, Backend)


def test_backend_reports_framework_version_and_devices():
    import tensorflow as tf

    backend = select_backend("tf")
    assert backend.framework_version() == tf.__version__
    assert any("CPU" in d for d in backend.devices())
    info = list_backends()
    assert [(i.name, i.distribution, i.importable) for i in info] == [
        ("tensorflow", "ptycho-tf", True)
    ]


def test_importing_ptycho_tf_loads_no_torch():
    code = "import json, sys, ptycho_tf.backend; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "lightning")]
    assert "tensorflow" in loaded


def test_backend_implements_the_whole_protocol():
    backend = select_backend("tensorflow")
    for name in (
        "build_model",
        "train",
        "predict",
        "reassemble_position",
        "export_weights",
        "import_weights",
        "save_archive",
        "load_archive",
        "framework_version",
        "devices",
    ):
        method = getattr(type(backend), name)
        assert callable(method) and method.__module__ == "ptycho_tf.backend"
    assert backend.reassemble_position(
        np.ones((1, 64, 64, 1), np.complex64), np.zeros((1, 1, 2, 1))
    ).shape == (20, 20, 1)


def test_log_filters_are_registered_and_on_the_backend_class():
    from ptycho_tf.backend import Backend as BackendClass
    from ptycho_tf.logs import LOG_FILTERS

    (ep,) = [e for e in metadata.entry_points(group=LOG_FILTERS_GROUP) if e.name == "tensorflow"]
    assert ep.value == "ptycho_tf.logs:LOG_FILTERS"
    assert isinstance(LOG_FILTERS, LogFilters)
    assert discover_log_filters("tensorflow") == LOG_FILTERS
    assert BackendClass.log_filters is LOG_FILTERS


def test_importing_the_log_filters_module_loads_no_framework():
    code = "import json, sys, ptycho_tf.logs; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    frameworks = ("tensorflow", "keras", "torch", "lightning", "absl", "jax")
    assert not [m for m in loaded if m.split(".")[0] in frameworks]


def test_log_filters_drop_tensorflows_start_up_chatter():
    code = (
        "from ptycho_api.cli.console import framework_import_filtered\n"
        "from ptycho_tf.logs import LOG_FILTERS\n"
        "with framework_import_filtered(LOG_FILTERS):\n"
        "    import tensorflow as tf\n"
        "    tf.constant(1.0) + 1.0\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert "absl::InitializeLog" not in res.stderr
    assert not re.search(r"^[IW]\d{4} \d\d:\d\d:", res.stderr, re.MULTILINE), res.stderr
