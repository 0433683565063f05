"""The backend protocol, discovery through entry points, and selection (DESIGN.md section 4).

Backends register a class under the entry-point group ``ptycho.backends`` (``ptycho-tf``:
``tensorflow``, ``ptycho-torch``: ``pytorch``). Discovery reads entry-point metadata only; a
backend module (and with it its framework) is imported only when that backend is selected or
explicitly queried by :func:`list_backends`.

Each backend also registers its :class:`LogFilters` under ``ptycho.log_filters`` (same names),
from a module that imports no framework, so that a front end such as the CLI can quiet the
framework's start-up output before the framework is imported (:func:`discover_log_filters`).

Selection ladder, first rule that applies wins:

1. explicit argument (``select_backend("pytorch")``, CLI ``--backend``), unless ``"auto"``;
2. ``config.backend`` when not ``"auto"``;
3. environment variable ``PTYCHO_BACKEND`` (unless empty or ``"auto"``);
4. the only installed backend;
5. ``"tensorflow"`` when several are installed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ptycho_api.config import (
    BACKEND_ALIASES,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    normalize_backend_name,
)
from ptycho_api.errors import BackendError, BackendNotInstalledError
from ptycho_api.execution import ExecutionOptions

__all__ = [
    "ENTRY_POINT_GROUP",
    "LOG_FILTERS_GROUP",
    "ENV_VAR",
    "KNOWN_BACKENDS",
    "PREFERENCE",
    "Backend",
    "BackendInfo",
    "LogFilters",
    "Selection",
    "TrainingHistory",
    "discover_backends",
    "discover_log_filters",
    "list_backends",
    "resolve_backend",
    "select_backend",
    "load_backend",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "ptycho.backends"
LOG_FILTERS_GROUP = "ptycho.log_filters"
"""Entry-point group of each backend's :class:`LogFilters` object (same names as the backends)."""
ENV_VAR = "PTYCHO_BACKEND"
KNOWN_BACKENDS: dict[str, str] = {"tensorflow": "ptycho-tf", "pytorch": "ptycho-torch"}
"""Canonical backend name -> the distribution that provides it (used for install hints)."""
PREFERENCE: tuple[str, ...] = ("tensorflow", "pytorch")
"""Order in which backends are preferred when several are installed and none is asked for."""

TrainingHistory = dict[str, list[float]]
"""Per-epoch training history: ``{"loss": [...], "val_loss": [...], "lr": [...]}``."""


@dataclass(frozen=True)
class LogFilters:
    """What a front end may hide of a backend's framework output unless asked to be verbose.

    Plain data, so that a backend can define it in a module that imports no framework: it is
    read (through ``ptycho.log_filters``) before the framework is imported. The default hides
    nothing.
    """

    native_lines: tuple[bytes, ...] = ()
    """Regular expressions (bytes, matched at line start) of native log lines to drop from file
    descriptor 2 while the framework is imported (C++ start-up notes written before any Python
    set-up can take effect)."""
    quiet_loggers: tuple[str, ...] = ()
    """Python loggers to hold at WARNING once the framework is imported."""
    warning_modules: tuple[str, ...] = ()
    """Top-level modules whose ``DeprecationWarning``/``FutureWarning`` are hidden."""
    environment: tuple[tuple[str, str], ...] = ()
    """Environment variables (name, value) to set, unless already set, before the import."""

    def __or__(self, other: LogFilters) -> LogFilters:
        """Both sets of filters together (duplicates dropped, order kept)."""
        if not isinstance(other, LogFilters):
            return NotImplemented
        env = dict(other.environment) | dict(self.environment)
        return LogFilters(
            native_lines=_unique(self.native_lines + other.native_lines),
            quiet_loggers=_unique(self.quiet_loggers + other.quiet_loggers),
            warning_modules=_unique(self.warning_modules + other.warning_modules),
            environment=tuple(env.items()),
        )


def _unique(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(items))


@runtime_checkable
class Backend(Protocol):
    """What every backend implements. Arrays cross this boundary as numpy, in the layouts below.

    Shapes: B groups, N pixels per patch side, C = gridsize**2 patterns per group. Offsets are in
    object pixels, ``[..., 0, :]`` = x (column), ``[..., 1, :]`` = y (row) (physics.md B 1).
    """

    name: str
    """Canonical backend name: ``"tensorflow"`` or ``"pytorch"``."""

    options: ExecutionOptions | None
    """The execution options last applied (``apply_execution``), ``precision="auto"`` resolved to
    what the backend chose; None before any."""

    log_filters: LogFilters
    """The framework output a front end may hide; the same object the backend registers under
    ``ptycho.log_filters`` from a module that imports no framework (read before importing)."""

    def framework_version(self) -> str:
        """Version string of the underlying framework (e.g. ``"2.21.0"``)."""
        ...

    def devices(self) -> list[str]:
        """Human-readable names of the devices the backend can compute on (``["cpu"]`` at least)."""
        ...

    def apply_execution(self, options: ExecutionOptions) -> None:
        """Run later calls with ``options`` (``ptycho_api.execution``: device, precision,
        compilation, memory layout) and keep them in ``options``; raises ``BackendError`` for an
        option it cannot honour (e.g. ``--device gpu`` without a GPU)."""
        ...

    def auto_batch_size(self, N: int) -> int:
        """Inference batch for ``N x N`` patterns on the device ``predict`` will use."""
        ...

    def build_model(
        self,
        model_config: ModelConfig,
        probe: np.ndarray,
        intensity_scale: float,
        *,
        seed: int | None = None,
        probe_trainable: bool = False,
        intensity_scale_trainable: bool = True,
    ) -> Any:
        """Build a fresh model from ``model_config``, a raw ``(N, N)`` complex64 probe and scale s.

        The probe is normalised inside (physics.md B 6.3); ``intensity_scale`` is s =
        sqrt(nphotons) / (N / 2) (B 5.3). ``seed`` fixes the weight initialisation (None: fresh
        randomness); the two flags are ``TrainingConfig``'s. Raises ``ConfigError`` for an
        unsupported N.
        """
        ...

    def train(
        self,
        model: Any,
        train: Any,
        test: Any | None,
        config: TrainingConfig,
        *,
        progress: Callable[[int, int, Mapping[str, float]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainingHistory:
        """Train ``model`` on a ``PtychoDataContainer`` (``test`` optional) per ``config``.

        ``progress(epoch, nepochs, logs)`` is called after each epoch; training stops cleanly
        after the current batch once ``should_stop()`` returns True. Returns per-epoch
        ``loss``, ``val_loss`` (NaN when there is no validation set) and ``lr``.
        """
        ...

    def predict(
        self,
        model: Any,
        x_scaled: np.ndarray,
        local_offsets: np.ndarray,
        *,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Object patches from scaled diffraction.

        ``x_scaled`` is s * X, ``(B, N, N, C)`` float32 (amplitude, count units);
        ``local_offsets`` ``(B, 1, 2, C)`` float32 pixels (m - r). Returns ``(B, N, N, 1)``
        complex64, each patch centred on its group centre. Processed in batches.
        """
        ...

    def reassemble_position(
        self, patches: np.ndarray, global_offsets: np.ndarray, M: int = 20
    ) -> np.ndarray:
        """Stitch ``(B, N, N, 1)`` complex64 patches at ``(B, 1, 2, 1)`` float64 pixel offsets.

        Returns the ``(S, S, 1)`` complex64 canvas of physics.md B 9 (central M x M crops,
        offsets centred on their mean, divided by the stitched ones + 1e-9).
        """
        ...

    def export_weights(self, model: Any) -> dict[str, np.ndarray]:
        """Canonical weights (parity.md section 1): names -> float32 arrays (HWIO kernels)."""
        ...

    def import_weights(self, model: Any, weights: Mapping[str, np.ndarray]) -> None:
        """Load canonical weights into ``model``; a missing, extra or mis-shaped key is an error."""
        ...

    def save_archive(
        self,
        model: Any,
        target: str | os.PathLike[str],
        config: TrainingConfig,
        *,
        history: TrainingHistory | None = None,
    ) -> Path:
        """Write the ``wts.h5.zip`` archive atomically through ``ptycho_bundle.write_model_archive``.

        The archive records ``config`` with the model's own settings and the data scale s the
        model was built with (not the trained lambda, which is a weight). Returns its path.
        """
        ...

    def load_archive(self, path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
        """Load any format-2 archive (``ptycho_bundle.read_model_archive``) -> (model, params snapshot).

        ``params.cfg`` is left alone: restoring it (CONFIG-001) is the workflow layer's job
        (``ptycho_api.workflows.load_inference_bundle``).
        """
        ...


@dataclass(frozen=True)
class BackendInfo:
    """One registered backend: entry-point name, providing distribution, and whether it imports."""

    name: str
    distribution: str | None
    version: str | None
    entry_point: str
    importable: bool | None = None
    error: str | None = None


@dataclass(frozen=True)
class Selection:
    """The outcome of the selection ladder: which backend, and why (a sentence for logs and CLI)."""

    name: str
    reason: str


def discover_backends() -> dict[str, metadata.EntryPoint]:
    """Registered backends by canonical name, from entry-point metadata only (imports nothing)."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        name = normalize_backend_name(ep.name)
        # The same distribution can be visible twice (e.g. an editable install next to a wheel);
        # the first one on sys.path wins, as it would for an import.
        found.setdefault(name, ep)
    return found


def discover_log_filters(name: str | None = None) -> LogFilters:
    """The registered log filters of backend ``name`` (None: of every installed backend).

    Imports only the modules named under ``ptycho.log_filters``, never a framework. Missing,
    broken or malformed registrations (e.g. stale metadata of an old install) count as no
    filters: this never raises.
    """
    wanted = None if name is None else normalize_backend_name(name)
    combined = LogFilters()
    seen: set[str] = set()
    try:
        entry_points = list(metadata.entry_points(group=LOG_FILTERS_GROUP))
    except Exception:  # unreadable metadata of some distribution: no filters
        logger.debug("entry points of %s could not be read", LOG_FILTERS_GROUP, exc_info=True)
        return combined
    for ep in entry_points:
        canonical = normalize_backend_name(ep.name)
        if canonical in seen or (wanted is not None and canonical != wanted):
            continue
        seen.add(canonical)  # the first one on sys.path wins, as in discover_backends
        try:
            found = ep.load()
        except Exception:  # an old or broken install must not break the caller
            logger.debug("log filters %s = %s failed to load", ep.name, ep.value, exc_info=True)
            continue
        if isinstance(found, LogFilters):
            combined = combined | found
        else:
            logger.debug("log filters %s = %s is not a LogFilters", ep.name, ep.value)
    return combined


def _dist_of(ep: metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _valid_names(installed: Mapping[str, Any]) -> list[str]:
    return sorted(set(KNOWN_BACKENDS) | set(installed))


def _install_hint(name: str) -> str:
    return f"pip install {KNOWN_BACKENDS.get(name, 'ptycho-' + name)}"


def _no_backend_message() -> str:
    return (
        "no PtychoPINN backend is installed. Install one: "
        "`pip install ptycho-tf` (TensorFlow) or `pip install ptycho-torch` (PyTorch + Lightning)"
    )


def _check_requested(name: str, source: str, installed: Mapping[str, Any]) -> str:
    canonical = normalize_backend_name(name)
    if canonical in installed:
        return canonical
    if canonical in KNOWN_BACKENDS:
        raise BackendNotInstalledError(
            f"backend {canonical!r} (from {source}) is not installed: {_install_hint(canonical)}"
            + (
                f"; installed backends: {sorted(installed)}"
                if installed
                else "; no backend is installed"
            )
        )
    aliases = ", ".join(f"{a!r} = {b!r}" for a, b in sorted(BACKEND_ALIASES.items()))
    raise BackendError(
        f"unknown backend {name!r} (from {source}); valid names: "
        f"{_valid_names(installed) + ['auto']} (aliases {aliases})"
    )


def resolve_backend(
    name: str | None = None,
    config: TrainingConfig | InferenceConfig | None = None,
    *,
    installed: Mapping[str, Any] | None = None,
) -> Selection:
    """Apply the selection ladder without importing any backend; returns name and reason."""
    if installed is None:
        installed = discover_backends()
    if name is not None and normalize_backend_name(name) != "auto":
        return Selection(
            _check_requested(name, "explicit argument", installed), "requested explicitly"
        )
    if config is not None:
        cfg_backend = getattr(config, "backend", "auto")
        if cfg_backend is not None and normalize_backend_name(cfg_backend) != "auto":
            chosen = _check_requested(cfg_backend, "config field 'backend'", installed)
            return Selection(chosen, f"config field backend={cfg_backend!r}")
    env = os.environ.get(ENV_VAR, "").strip()
    if env and normalize_backend_name(env) != "auto":
        chosen = _check_requested(env, f"environment variable {ENV_VAR}", installed)
        return Selection(chosen, f"environment variable {ENV_VAR}={env!r}")
    if not installed:
        raise BackendNotInstalledError(_no_backend_message())
    if len(installed) == 1:
        only = next(iter(installed))
        return Selection(only, "the only installed backend")
    preferred = [n for n in PREFERENCE if n in installed] or sorted(installed)
    chosen = preferred[0]
    return Selection(
        chosen,
        f"default when several backends are installed ({', '.join(sorted(installed))})",
    )


def load_backend(name: str, *, installed: Mapping[str, metadata.EntryPoint] | None = None) -> Any:
    """Import and instantiate the backend registered as ``name``.

    A backend whose module or framework fails to import raises ``BackendError`` carrying the
    underlying ImportError text.
    """
    if installed is None:
        installed = discover_backends()
    canonical = _check_requested(name, "explicit argument", installed)
    ep = installed[canonical]
    dist, _ = _dist_of(ep)
    try:
        cls = ep.load()
        backend = cls()
    except ImportError as exc:
        raise BackendError(
            f"backend {canonical!r} (distribution {dist or 'unknown'}, entry point {ep.value}) "
            f"is installed but failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return backend


def select_backend(
    name: str | None = None, config: TrainingConfig | InferenceConfig | None = None
) -> Any:
    """Select a backend by the ladder (module docstring), import it and return an instance."""
    installed = discover_backends()
    selection = resolve_backend(name, config, installed=installed)
    logger.info("backend %s selected: %s", selection.name, selection.reason)
    backend = load_backend(selection.name, installed=installed)
    # Keep the reason with the instance so callers (the CLI header) can show it.
    try:
        backend.selection_reason = selection.reason
    except AttributeError:
        logger.debug("backend %s does not accept a selection_reason attribute", selection.name)
    return backend


def list_backends(*, check_import: bool = True) -> list[BackendInfo]:
    """Every registered backend with its distribution and version; optionally tries importing it.

    ``check_import=True`` imports each backend (and so its framework): use it for reports such as
    ``ptycho backends``, not on hot paths.
    """
    infos: list[BackendInfo] = []
    installed = discover_backends()
    for name in sorted(installed, key=lambda n: (n not in PREFERENCE, n)):
        ep = installed[name]
        dist, version = _dist_of(ep)
        importable: bool | None = None
        error: str | None = None
        if check_import:
            try:
                load_backend(name, installed=installed)
                importable = True
            except BackendError as exc:
                importable = False
                error = str(exc)
        infos.append(BackendInfo(name, dist, version, ep.value, importable, error))
    return infos
