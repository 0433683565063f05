"""Backend discovery through entry points and the selection ladder (DESIGN.md section 4).

Fake backends are real distributions on disk: a ``*.dist-info`` folder with ``entry_points.txt``
in a temporary site directory that replaces ``site-packages`` on ``sys.path``, so discovery runs
through ``importlib.metadata`` exactly as for installed packages.
"""

from __future__ import annotations

import itertools
import logging
import sys
from pathlib import Path

import pytest

from ptycho_api.backend import (
    ENV_VAR,
    Backend,
    discover_backends,
    list_backends,
    load_backend,
    resolve_backend,
    select_backend,
)
from ptycho_api.config import InferenceConfig, TrainingConfig
from ptycho_api.errors import BackendError, BackendNotInstalledError

_counter = itertools.count()

GOOD_MODULE = """
from ptycho_api.backend import LogFilters
class FakeBackend:
    name = "{name}"
    options = None
    log_filters = LogFilters()
    def framework_version(self): return "0.0-fake"
    def devices(self): return ["cpu"]
    def apply_execution(self, options): raise NotImplementedError
    def auto_batch_size(self, N): return 64
    def build_model(self, model_config, probe, intensity_scale, *, seed=None, probe_trainable=False, intensity_scale_trainable=True): raise NotImplementedError
    def train(self, model, train, test, config, *, progress=None, should_stop=None): raise NotImplementedError
    def predict(self, model, x_scaled, local_offsets, *, batch_size=64): raise NotImplementedError
    def reassemble_position(self, patches, global_offsets, M=20): raise NotImplementedError
    def export_weights(self, model): raise NotImplementedError
    def import_weights(self, model, weights): raise NotImplementedError
    def save_archive(self, model, target, config, *, history=None): raise NotImplementedError
    def load_archive(self, path): raise NotImplementedError
"""

BROKEN_MODULE = "import framework_that_is_not_installed_xyz  # noqa\nclass FakeBackend: pass\n"


def make_site(root: Path, backends: dict[str, str]) -> Path:
    """A site directory holding one fake distribution per backend; kind is 'good' or 'broken'."""
    site = root / f"site{next(_counter)}"
    site.mkdir()
    for name, kind in backends.items():
        mod = f"fake_backend_{name}_{next(_counter)}"
        dist = f"fake-ptycho-{name}"
        info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
        (info / "entry_points.txt").write_text(f"[ptycho.backends]\n{name} = {mod}:FakeBackend\n")
        body = GOOD_MODULE.format(name=name) if kind == "good" else BROKEN_MODULE
        (site / f"{mod}.py").write_text(body)
    return site


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install fake backends: ``installed({"tensorflow": "good"})``; nothing else is visible."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    base = [p for p in sys.path if "site-packages" not in p and "dist-packages" not in p]

    def _install(backends: dict[str, str]) -> Path:
        site = make_site(tmp_path, backends)
        monkeypatch.setattr(sys, "path", [str(site), *base])
        return site

    return _install


BOTH = {"tensorflow": "good", "pytorch": "good"}


def test_discovery_reads_metadata_without_importing(installed):
    installed(BOTH)
    found = discover_backends()
    assert sorted(found) == ["pytorch", "tensorflow"]
    assert not [m for m in sys.modules if m.startswith("fake_backend_")]


def test_rung1_explicit_argument_beats_config_and_env(installed, monkeypatch):
    installed(BOTH)
    monkeypatch.setenv(ENV_VAR, "tensorflow")
    sel = resolve_backend("torch", TrainingConfig(backend="tensorflow"))
    assert (sel.name, sel.reason) == ("pytorch", "requested explicitly")


def test_rung2_config_beats_env(installed, monkeypatch):
    installed(BOTH)
    monkeypatch.setenv(ENV_VAR, "tensorflow")
    sel = resolve_backend(None, InferenceConfig(backend="pytorch"))
    assert sel.name == "pytorch" and "config field backend='pytorch'" in sel.reason
    # "auto" in the argument and the config falls through to the next rung.
    sel = resolve_backend("auto", TrainingConfig(backend="auto"))
    assert sel.name == "tensorflow" and ENV_VAR in sel.reason


def test_rung3_env_beats_only_installed(installed, monkeypatch):
    installed(BOTH)
    monkeypatch.setenv(ENV_VAR, "torch")
    sel = resolve_backend()
    assert sel.name == "pytorch" and sel.reason == f"environment variable {ENV_VAR}='torch'"


def test_rung4_only_installed_backend(installed):
    installed({"pytorch": "good"})
    sel = resolve_backend(None, TrainingConfig())
    assert (sel.name, sel.reason) == ("pytorch", "the only installed backend")


def test_rung5_tensorflow_when_both_installed(installed):
    installed(BOTH)
    sel = resolve_backend()
    assert sel.name == "tensorflow" and "several backends are installed" in sel.reason


def test_select_backend_imports_instantiates_and_logs(installed, caplog):
    installed(BOTH)
    with caplog.at_level(logging.INFO, logger="ptycho_api.backend"):
        backend = select_backend(config=TrainingConfig(backend="tf"))
    assert backend.name == "tensorflow" and isinstance(backend, Backend)
    assert backend.selection_reason == "config field backend='tf'"
    assert "backend tensorflow selected: config field backend='tf'" in caplog.text


def test_unknown_name_lists_valid_ones(installed):
    installed(BOTH)
    with pytest.raises(BackendError) as err:
        select_backend("jax")
    msg = str(err.value)
    assert "unknown backend 'jax'" in msg
    assert "'pytorch', 'tensorflow', 'auto'" in msg and "'tf' = 'tensorflow'" in msg
    assert not isinstance(err.value, BackendNotInstalledError)


def test_unknown_name_from_env_says_so(installed, monkeypatch):
    installed(BOTH)
    monkeypatch.setenv(ENV_VAR, "caffe")
    with pytest.raises(
        BackendError, match=f"unknown backend 'caffe' \\(from environment variable {ENV_VAR}\\)"
    ):
        resolve_backend()


@pytest.mark.parametrize(
    ("present", "wanted", "hint"),
    [
        ("tensorflow", "pytorch", "pip install ptycho-torch"),
        ("pytorch", "tf", "pip install ptycho-tf"),
    ],
)
def test_known_but_missing_backend_gives_install_hint(installed, present, wanted, hint):
    installed({present: "good"})
    with pytest.raises(BackendNotInstalledError) as err:
        select_backend(wanted)
    msg = str(err.value)
    assert "is not installed" in msg and hint in msg and f"installed backends: ['{present}']" in msg


def test_no_backend_installed_says_how_to_install_either(installed):
    installed({})
    with pytest.raises(BackendNotInstalledError) as err:
        select_backend()
    msg = str(err.value)
    assert "no PtychoPINN backend is installed" in msg
    assert "pip install ptycho-tf" in msg and "pip install ptycho-torch" in msg


def test_framework_import_failure_reports_import_error(installed):
    installed({"tensorflow": "broken", "pytorch": "good"})
    with pytest.raises(BackendError) as err:
        select_backend("tensorflow")
    msg = str(err.value)
    assert "installed but failed to import" in msg
    assert "No module named 'framework_that_is_not_installed_xyz'" in msg
    assert "fake-ptycho-tensorflow" in msg


def test_list_backends_reports_distribution_version_and_importability(installed):
    installed({"tensorflow": "broken", "pytorch": "good"})
    infos = {i.name: i for i in list_backends()}
    assert infos["pytorch"].importable is True and infos["pytorch"].error is None
    assert infos["pytorch"].distribution == "fake-ptycho-pytorch"
    assert infos["pytorch"].version == "0.1.0"
    assert infos["tensorflow"].importable is False
    assert "framework_that_is_not_installed_xyz" in infos["tensorflow"].error
    lazy = {i.name: i for i in list_backends(check_import=False)}
    assert lazy["tensorflow"].importable is None


def test_load_backend_by_alias(installed):
    installed(BOTH)
    assert load_backend("torch").name == "pytorch"
