"""Backends' log filters: the CLI applies what they register and knows no framework itself.

Fake backends are real distributions on disk (a ``*.dist-info`` folder with
``entry_points.txt``), as in ``test_backend.py``, registering under ``ptycho.backends`` and
``ptycho.log_filters``.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from ptycho_api.backend import LOG_FILTERS_GROUP, LogFilters, discover_log_filters
from ptycho_api.cli.console import framework_import_filtered, quiet_framework_start

_counter = itertools.count()

# Framework module, logger and native-library names, and environment variables of theirs: none
# may appear in the CLI's console or entry module (prose such as "TensorFlow" in help text may).
FRAMEWORK_WORDS = re.compile(
    r"tensorflow|keras|lightning|(?i:absl|onednn|cuda)|TF_CPP|(?<![\w-])torch\b"
)

BACKEND_MODULE = """
import logging, os, warnings
from ptycho_api.backend import LogFilters
os.write(2, b"NATIVE-NOTE oneDNN-like start-up chatter\\n")
os.write(2, b"native error kept\\n")
logging.getLogger("fakefw").setLevel(logging.INFO)

class FakeBackend:
    name = "{name}"
    log_filters = LogFilters()
    def framework_version(self): return "0.0-fake"
    def devices(self): return [os.environ.get("FAKEFW_LEVEL", "unset")]
"""

FILTERS_MODULE = """
from ptycho_api.backend import LogFilters
LOG_FILTERS = LogFilters(
    native_lines=(rb"NATIVE-NOTE",),
    quiet_loggers=("fakefw",),
    warning_modules=("fakefw",),
    environment=(("FAKEFW_LEVEL", "3"),),
)
NOT_FILTERS = {"native_lines": ()}
"""


def make_site(root: Path, backends: dict[str, str]) -> Path:
    """A site directory with one fake distribution per backend.

    Kinds: ``good`` (filters registered), ``stale`` (no ``ptycho.log_filters`` entry, as an old
    install), ``broken`` (the filters module fails to import), ``wrong`` (registers a non-filter).
    """
    site = root / f"site{next(_counter)}"
    site.mkdir()
    for name, kind in backends.items():
        mod = f"fake_fw_backend_{name}_{next(_counter)}"
        dist = f"fake-ptycho-{name}"
        info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
        entries = f"[ptycho.backends]\n{name} = {mod}:FakeBackend\n"
        target = {"good": "LOG_FILTERS", "broken": "LOG_FILTERS", "wrong": "NOT_FILTERS"}.get(kind)
        if target:
            entries += f"\n[{LOG_FILTERS_GROUP}]\n{name} = {mod}_logs:{target}\n"
        (info / "entry_points.txt").write_text(entries)
        (site / f"{mod}.py").write_text(BACKEND_MODULE.format(name=name))
        logs = "import framework_that_is_not_installed_xyz\n" if kind == "broken" else ""
        (site / f"{mod}_logs.py").write_text(logs + FILTERS_MODULE)
    return site


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install fake backends: ``installed({"tensorflow": "good"})``; nothing else is visible."""
    base = [p for p in sys.path if "site-packages" not in p and "dist-packages" not in p]

    def _install(backends: dict[str, str]) -> Path:
        site = make_site(tmp_path, backends)
        monkeypatch.setattr(sys, "path", [str(site), *base])
        return site

    return _install


@pytest.mark.parametrize("module", ["ptycho_api.cli.console", "ptycho_api.cli.main"])
def test_cli_console_and_main_know_no_framework(module):
    # (``ptycho_api.cli.main`` as an attribute is the function the package re-exports.)
    source = Path(importlib.import_module(module).__file__).read_text()
    assert not FRAMEWORK_WORDS.findall(source)


def test_filters_combine_without_duplicates():
    a = LogFilters(native_lines=(rb"x",), quiet_loggers=("a",), environment=(("E", "1"),))
    b = LogFilters(quiet_loggers=("a", "b"), warning_modules=("m",), environment=(("E", "2"),))
    both = a | b
    assert both == LogFilters((rb"x",), ("a", "b"), ("m",), (("E", "1"),))
    assert LogFilters() | a == a


def test_discovery_by_name_and_of_all(installed):
    installed({"tensorflow": "good", "pytorch": "stale"})
    filters = discover_log_filters("tf")
    assert filters.quiet_loggers == ("fakefw",) and filters.environment == (("FAKEFW_LEVEL", "3"),)
    assert discover_log_filters() == filters
    assert discover_log_filters("pytorch") == LogFilters()
    # Only the small filters modules were imported, never a backend module.
    assert not [m for m in sys.modules if m.startswith("fake_fw_backend_") and "_logs" not in m]


@pytest.mark.parametrize("kind", ["stale", "broken", "wrong"])
def test_missing_or_bad_registrations_mean_no_filters(installed, kind):
    installed({"tensorflow": kind})
    assert discover_log_filters() == LogFilters()
    assert discover_log_filters("tensorflow") == LogFilters()


def test_quiet_start_sets_environment_defaults_and_hides_notices(monkeypatch):
    monkeypatch.delenv("FAKEFW_LEVEL", raising=False)
    monkeypatch.setenv("FAKEFW_OTHER", "mine")
    filters = LogFilters(
        warning_modules=("fakefw",), environment=(("FAKEFW_LEVEL", "3"), ("FAKEFW_OTHER", "0"))
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_framework_start(filters)
        for module in ("fakefw", "fakefw.sub", "fakefwx", "other"):
            warnings.warn_explicit("old", DeprecationWarning, "f.py", 1, module=module)
        warnings.warn_explicit("later", FutureWarning, "f.py", 1, module="fakefw.sub")
        warnings.warn_explicit("real", UserWarning, "f.py", 1, module="fakefw")
    assert os.environ["FAKEFW_LEVEL"] == "3" and os.environ["FAKEFW_OTHER"] == "mine"
    assert [(str(w.message), w.category) for w in caught] == [
        ("old", DeprecationWarning),
        ("old", DeprecationWarning),
        ("real", UserWarning),
    ]


def test_loggers_are_quieted_after_the_import_unless_inactive():
    log = logging.getLogger("fakefw.quiet_test")
    filters = LogFilters(quiet_loggers=("fakefw.quiet_test",))
    try:
        with framework_import_filtered(filters, active=False):
            log.setLevel(logging.INFO)
        assert log.level == logging.INFO
        with framework_import_filtered(filters):
            log.setLevel(logging.INFO)  # as a framework does when imported
        assert log.level == logging.WARNING
    finally:
        log.setLevel(logging.NOTSET)


def _ptycho_backends(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        f"""
        import sys
        from ptycho_api.cli.main import main
        # Only the fake distributions are visible (the installed ones stay hidden).
        sys.path[:] = [{str(site)!r}] + [
            p for p in sys.path if "site-packages" not in p and "dist-packages" not in p
        ]
        sys.exit(main(["backends", *{list(args)!r}]))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PTYCHO_BACKEND", "FAKEFW_LEVEL")}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )


def test_cli_applies_the_registered_filters_and_v_shows_everything(tmp_path):
    site = make_site(tmp_path, {"tensorflow": "good"})
    res = _ptycho_backends(site)
    assert res.returncode == 0, res.stderr
    assert "NATIVE-NOTE" not in res.stderr and "native error kept" in res.stderr
    assert "devices 3" in res.stdout  # the environment was set before the import

    res = _ptycho_backends(site, "-v")
    assert res.returncode == 0, res.stderr
    assert "NATIVE-NOTE" in res.stderr and "native error kept" in res.stderr
    assert "devices unset" in res.stdout


def test_cli_with_stale_registrations_filters_nothing_and_works(tmp_path):
    site = make_site(tmp_path, {"tensorflow": "stale", "pytorch": "broken"})
    res = _ptycho_backends(site)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("NATIVE-NOTE") == 2 and "devices unset" in res.stdout
