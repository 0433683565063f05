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
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api.atomic import atomic_write_text
from ptycho_api.backend import (
    LogFilters,
    Selection,
    discover_log_filters,
    load_backend,
    resolve_backend,
)
from ptycho_api.cli.execution_args import execution_options
from ptycho_api.config import InferenceConfig, TrainingConfig

__all__ = [
    "echo",
    "configure_logging",
    "header",
    "announce",
    "quiet_framework_start",
    "framework_import_filtered",
    "native_log_filtered",
    "quiet_loggers",
    "package_versions",
    "write_json",
    "write_history",
    "format_metrics_table",
]

DISTRIBUTIONS = ("ptycho-api", "ptycho-bundle", "ptycho-tf", "ptycho-torch")


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


def header(command: str, selection: Any | None = None, execution: Any | None = None) -> str:
    """The first line every subcommand prints: versions and, when relevant, backend and why,
    and the execution options (``ExecutionOptions``)."""
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    line = f"ptycho {command} | {versions}"
    if selection is not None:
        line += f" | backend: {selection.name} ({selection.reason})"
    if execution is not None:
        line += f" | execution: {execution.describe()}"
    return line


def _compile_lines(patterns: Iterable[bytes | str]) -> list[re.Pattern[bytes]]:
    compiled = []
    for pattern in patterns:
        raw = pattern.encode() if isinstance(pattern, str) else pattern
        try:
            compiled.append(re.compile(raw))
        except (re.error, TypeError):  # a backend's mistake must not stop the command
            logging.getLogger(__name__).debug("ignored native log pattern %r", pattern)
    return compiled


@contextmanager
def native_log_filtered(patterns: Iterable[bytes | str], active: bool = True) -> Iterator[None]:
    """Drop lines matching any of ``patterns`` (at line start) written to file descriptor 2.

    Native libraries can write start-up notes straight to fd 2 before any Python-level set-up
    takes effect, so only a file-descriptor-level capture can hold them back. Every other line
    (Python warnings, errors) is written out when the block ends, also when it raises. Without
    patterns, or when not ``active``, nothing is captured.
    """
    compiled = _compile_lines(patterns) if active else []
    if not compiled:
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
                if not any(p.match(line) for p in compiled)
            ]
            rest = b"".join(kept)
            while rest:  # os.write may write less than asked
                rest = rest[os.write(2, rest) :]


def quiet_loggers(names: Iterable[str]) -> None:
    """Hold the named loggers at WARNING (after their library set them up on import)."""
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)


def quiet_framework_start(filters: LogFilters) -> None:
    """Before any framework is imported: set the filters' environment defaults, hide notices.

    Environment variables already set are left alone; ``DeprecationWarning`` and
    ``FutureWarning`` raised from the filters' modules (meant for developers) are ignored.
    """
    for name, value in filters.environment:
        os.environ.setdefault(name, value)
    if filters.warning_modules:
        modules = "|".join(re.escape(m) for m in filters.warning_modules)
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=rf"(?:{modules})(?:\.|$)")


@contextmanager
def framework_import_filtered(filters: LogFilters, active: bool = True) -> Iterator[None]:
    """Import a framework inside the block: native chatter dropped, its loggers quieted after."""
    with native_log_filtered(filters.native_lines, active):
        yield
    if active:
        # Frameworks may set their loggers' levels when imported, so only now can they change.
        quiet_loggers(filters.quiet_loggers)


def announce(
    command: str,
    args: Any,
    config: TrainingConfig | InferenceConfig | None = None,
) -> Selection:
    """Resolve the backend, print the header line, and import the backend (chatter filtered)."""
    # Flags first: a mistyped option is reported before any backend is looked for.
    execution = execution_options(args) if hasattr(args, "precision") else None
    selection = resolve_backend(getattr(args, "backend", None), config)
    echo(header(command, selection, execution))
    verbose = bool(getattr(args, "verbose", 0))
    # The selected backend's filters come from a module that imports no framework.
    filters = LogFilters() if verbose else discover_log_filters(selection.name)
    with framework_import_filtered(filters, not verbose):
        load_backend(selection.name)
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


def format_metrics_table(
    metrics: Mapping[str, Any],
    *,
    phase: bool = True,
    baseline: Mapping[str, Any] | None = None,
) -> str:
    """A fixed-width table of (amplitude, phase) metric pairs; curves are left out.

    ``phase`` False marks the phase column "n/a" (a ground truth without phase structure scores
    any flat phase as perfect); ``baseline`` adds the untrained network's figures beside each.
    """
    rows = [
        (k, v)
        for k, v in metrics.items()
        if isinstance(v, list | tuple) and len(v) == 2 and not isinstance(v[0], list | tuple)
    ]
    if baseline is None:
        lines = [f"{'metric':<10} {'amplitude':>12} {'phase':>12}", "-" * 36]
    else:
        lines = [
            f"{'metric':<10} {'amplitude':>12} {'(untrained)':>12} {'phase':>12} {'(untrained)':>12}",
            "-" * 62,
        ]
    for name, (amp, ph) in rows:
        phase_text = f"{float(ph):>12.5g}" if phase else f"{'n/a':>12}"
        if baseline is None:
            lines.append(f"{name:<10} {float(amp):>12.5g} {phase_text}")
            continue
        amp0, ph0 = baseline[name]
        phase0_text = f"{float(ph0):>12.5g}" if phase else f"{'n/a':>12}"
        lines.append(
            f"{name:<10} {float(amp):>12.5g} {float(amp0):>12.5g} {phase_text} {phase0_text}"
        )
    if not phase:
        lines.append("phase: not scored; the ground truth has no phase structure")
    return "\n".join(lines)
