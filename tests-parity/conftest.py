"""Parity-suite options: ``--fast`` deselects tests marked ``slow``; the default runs everything.

At the end of a run the worst measured value of every tolerance-table row (parity.md section 2)
is printed, so the README table can be refreshed from one run.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        default=False,
        help="parity suite: skip tests marked slow (training runs, archives, CLI subprocesses)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: trains models or runs subprocesses (deselected by --fast)"
    )


SLOW_MODULES = ("test_cli.py",)
"""Modules whose every test is slow (CLI subprocesses that train), marked here."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    if not config.getoption("--fast"):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("slow") is not None else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    try:
        from parity_helpers import RESULTS
    except ImportError:
        return
    if not RESULTS:
        return
    terminalreporter.section("parity: worst measured value per check")
    width = max(len(k) for k in RESULTS)
    for row, entry in RESULTS.items():
        terminalreporter.write_line(
            f"{row:<{width}}  worst {entry['worst']:.3g}  tolerance {entry['tolerance']:g}"
        )
