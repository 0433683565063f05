"""The ``ptycho`` command line: simulate, convert, train, reconstruct, evaluate, inspect,
backends, demo."""

from __future__ import annotations

from ptycho_api.cli.main import main

__all__ = ["main"]
