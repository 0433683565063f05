"""Terminal output, logging set-up, the header line and result files shared by subcommands."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api.atomic import atomic_write_text
from ptycho_api.backend import Selection, load_backend, resolve_backend
from ptycho_api.config import InferenceConfig, TrainingConfig

__all__ = [
    "echo",
    "configure_logging",
    "header",
    "announce",
    "native_log_filtered",
    "package_versions",
    "write_json",
    "write_history",
    "format_metrics_table",
]

DISTRIBUTIONS = ("ptycho-api", "ptycho-bundle", "ptycho-tf", "ptycho-torch")
FRAMEWORK_INFO_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
"""Framework loggers held to warnings unless ``-v`` (names only: nothing is imported here)."""
FRAMEWORK_MODULES = r"(lightning|torch|keras|tensorflow)(\.|$)"
"""Modules whose deprecation notices (meant for developers) the CLI hides unless ``-v``."""


def echo(message: str = "", *, err: bool = False) -> None:
    """Write one line for the user (stdout, or stderr with ``err``)."""
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{message}\n")
    stream.flush()


def configure_logging(verbosity: int) -> None:
    """Route library logging to stderr: -q -> warnings, default -> info, -v -> debug."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity < 2 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(levelname)s %(name)s: %(message)s" if verbosity >= 2 else "%(message)s"
        )
    )
    # Handlers go on the project's loggers only: frameworks keep their own logging set-up, and
    # nothing is printed twice through the root logger.
    for name in ("ptycho_api", "ptycho_bundle", "ptycho_tf", "ptycho_torch"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level)
        log.propagate = False


def package_versions() -> dict[str, str]:
    """Installed versions of the project's distributions (absent ones left out)."""
    found = {}
    for dist in DISTRIBUTIONS:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def header(command: str, selection: Any | None = None) -> str:
    """The first line every subcommand prints: versions and, when relevant, backend and why."""
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    line = f"ptycho {command} | {versions}"
    if selection is not None:
        line += f" | backend: {selection.name} ({selection.reason})"
    return line


# absl-style INFO/WARNING lines ("I0000 00:00:1795976883.762377    6478 port.cc:153] ...") and
# absl's notice that logging is not initialised yet.
_NATIVE_CHATTER = re.compile(
    rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.-]+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


@contextmanager
def native_log_filtered(active: bool = True) -> Iterator[None]:
    """Drop native INFO/WARNING log lines written to file descriptor 2; keep everything else.

    TensorFlow's C++ start-up notes (oneDNN, "no CUDA driver") are written before
    ``TF_CPP_MIN_LOG_LEVEL`` takes effect, straight to fd 2, so only a file-descriptor-level
    capture can hold them back. Every other line (Python warnings, errors) is written out when
    the block ends, also when it raises.
    """
    if not active:
        yield
        return
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().splitlines(keepends=True)
                if not _NATIVE_CHATTER.match(line)
            ]
            rest = b"".join(kept)
            while rest:  # os.write may write less than asked
                rest = rest[os.write(2, rest) :]


def announce(
    command: str,
    args: Any,
    config: TrainingConfig | InferenceConfig | None = None,
) -> Selection:
    """Resolve the backend, print the header line, and import the backend (chatter filtered)."""
    selection = resolve_backend(getattr(args, "backend", None), config)
    echo(header(command, selection))
    verbose = bool(getattr(args, "verbose", 0))
    with native_log_filtered(not verbose):
        load_backend(selection.name)
    if not verbose:
        # Lightning sets its loggers to INFO when imported (so only now can they be changed):
        # device summaries, tips and "fit stopped" notes; our own per-epoch line says enough.
        for name in FRAMEWORK_INFO_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    return selection


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def write_history(directory: Path, history: Mapping[str, Sequence[float]]) -> tuple[Path, Path]:
    """Write ``history.json`` and ``history.csv`` (one row per epoch) into ``directory``."""
    names = list(history)
    n_epochs = max((len(v) for v in history.values()), default=0)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["epoch", *names])
    for i in range(n_epochs):
        row = [history[n][i] if i < len(history[n]) else "" for n in names]
        writer.writerow([i + 1, *row])
    clean = {
        k: [None if not math.isfinite(float(x)) else float(x) for x in v]
        for k, v in history.items()
    }
    return (
        write_json(directory / "history.json", clean),
        atomic_write_text(directory / "history.csv", buf.getvalue()),
    )


def format_metrics_table(metrics: Mapping[str, Any]) -> str:
    """A fixed-width table of (amplitude, phase) metric pairs; curves are left out."""
    rows = [
        (k, v)
        for k, v in metrics.items()
        if isinstance(v, list | tuple) and len(v) == 2 and not isinstance(v[0], list | tuple)
    ]
    lines = [f"{'metric':<10} {'amplitude':>12} {'phase':>12}", "-" * 36]
    for name, (amp, phase) in rows:
        lines.append(f"{name:<10} {float(amp):>12.5g} {float(phase):>12.5g}")
    return "\n".join(lines)
