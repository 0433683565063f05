"""The legacy global parameter dict ``params.cfg`` (physics.md B 3.1) and its accessors.

New code passes config objects explicitly; this dict exists for callers that read it (Ptychodus,
code ported from the original PtychoPINN). Workflow entry points fill it through the CONFIG-001
bridge (``ptycho_api.config.update_legacy_dict``) before grouping data or building a model, and
loading an archive restores the saved snapshot into it.

Defaults (Part A decision 5): keys that the dataclasses set take the dataclass defaults
(``N`` 64, ``gridsize`` 1, ``probe.big`` True, ``probe.mask`` False, ``probe_scale`` 4.0,
``nepochs`` 50, ...); every other key keeps the legacy default of B 3.1.
"""

from __future__ import annotations

import difflib
from typing import Any

from ptycho_api.config import (
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    dataclass_to_legacy_dict,
)

__all__ = [
    "cfg",
    "DEFAULT_CFG",
    "LEGACY_DEFAULTS",
    "DATA_SOURCES",
    "RUNTIME_KEYS",
    "DERIVED_KEYS",
    "get",
    "set",
    "reset",
    "params",
    "get_bigN",
    "get_padding_size",
    "get_padded_size",
]

DATA_SOURCES = (
    "lines",
    "grf",
    "experimental",
    "points",
    "testimg",
    "diagonals",
    "xpp",
    "V",
    "generic",
)

LEGACY_DEFAULTS: dict[str, Any] = {
    "N": 128,
    "offset": 4,
    "gridsize": 2,
    "outer_offset_train": None,
    "outer_offset_test": None,
    "batch_size": 16,
    "nepochs": 60,
    "n_filters_scale": 2,
    "output_prefix": "outputs",
    "big_gridsize": 10,
    "max_position_jitter": 10,
    "sim_jitter_scale": 0.0,
    "default_probe_scale": 0.7,
    "mae_weight": 0.0,
    "nll_weight": 1.0,
    "tv_weight": 0.0,
    "realspace_mae_weight": 0.0,
    "realspace_weight": 0.0,
    "nphotons": 1e9,
    "nimgs_train": 9,
    "nimgs_test": 3,
    "data_source": "generic",
    "probe.trainable": False,
    "intensity_scale.trainable": False,
    "positions.provided": False,
    "object.big": True,
    "probe.big": False,
    "probe_scale": 10.0,
    "set_phi": False,
    "probe.mask": True,
    "pad_object": True,
    "model_type": "pinn",
    "label": "",
    "size": 392,
    "amp_activation": "sigmoid",
    "h5_path": "wts.h5",
    "npseed": 42,
    "debug": True,
    "gaussian_smoothing_sigma": 0.0,
    "use_xla_translate": True,
}

RUNTIME_KEYS = ("intensity_scale", "probe", "timestamp")
DERIVED_KEYS = ("bigN", "padding_size", "padded_size")


def _dataclass_defaults() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for obj in (InferenceConfig(), TrainingConfig()):
        for key, value in dataclass_to_legacy_dict(obj).items():
            if value is not None:
                merged[key] = value
    return merged


DEFAULT_CFG: dict[str, Any] = {**LEGACY_DEFAULTS, **_dataclass_defaults()}

_KNOWN_KEYS: frozenset[str] = frozenset(
    set(DEFAULT_CFG)
    | set(RUNTIME_KEYS)
    | set(dataclass_to_legacy_dict(TrainingConfig()))
    | set(dataclass_to_legacy_dict(InferenceConfig()))
    | set(dataclass_to_legacy_dict(ModelConfig()))
)

cfg: dict[str, Any] = dict(DEFAULT_CFG)
"""The process-wide legacy parameter dict (a plain ``dict``; ``cfg.update(snapshot)`` works)."""


def reset() -> None:
    """Restore ``cfg`` to ``DEFAULT_CFG`` in place (the same dict object stays shared)."""
    cfg.clear()
    cfg.update(DEFAULT_CFG)


def _close(key: str) -> str:
    candidates = sorted(_KNOWN_KEYS | frozenset(cfg) | frozenset(DERIVED_KEYS))
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def get_bigN() -> int:
    """Side of the group's object region in pixels: ``N + (gridsize - 1) * offset``."""
    return int(cfg["N"]) + (int(cfg["gridsize"]) - 1) * int(cfg["offset"])


def get_padding_size() -> int:
    """Canvas padding in pixels: ``(gridsize - 1) * offset + max_position_jitter``."""
    return (int(cfg["gridsize"]) - 1) * int(cfg["offset"]) + int(cfg["max_position_jitter"])


def get_padded_size() -> int:
    """Side of the in-model overlap canvas in pixels: ``bigN + max_position_jitter``."""
    return get_bigN() + int(cfg["max_position_jitter"])


_DERIVED = {"bigN": get_bigN, "padding_size": get_padding_size, "padded_size": get_padded_size}
_MISSING = object()


def get(key: str, default: Any = _MISSING) -> Any:
    """Return ``cfg[key]`` (or a derived value); unknown keys raise ``KeyError`` unless ``default``."""
    if key in _DERIVED:
        return _DERIVED[key]()
    if key in cfg:
        return cfg[key]
    if default is not _MISSING:
        return default
    raise KeyError(f"params.cfg has no key {key!r}{_close(key)}")


def _validate(key: str, value: Any) -> None:
    if key == "data_source" and value not in DATA_SOURCES:
        raise ValueError(
            f"params.cfg['data_source']: expected one of {list(DATA_SOURCES)}; found {value!r}"
        )
    if key in ("N", "gridsize", "offset", "max_position_jitter") and (
        isinstance(value, bool) or not isinstance(value, int) or value < 0
    ):
        raise ValueError(f"params.cfg[{key!r}]: expected a non-negative integer; found {value!r}")


def set(key: str, value: Any) -> None:  # noqa: A001 - the original module's public name
    """Set a known key after validating the value; unknown keys raise ``KeyError`` naming close ones."""
    if key in _DERIVED:
        raise KeyError(
            f"params.cfg[{key!r}] is derived from N, gridsize, offset; set those instead"
        )
    if key not in _KNOWN_KEYS and key not in cfg:
        raise KeyError(f"params.cfg has no key {key!r}{_close(key)}")
    _validate(key, value)
    cfg[key] = value


def params() -> dict[str, Any]:
    """A copy of ``cfg`` with the derived values added."""
    out = dict(cfg)
    for key, fn in _DERIVED.items():
        out[key] = fn()
    return out
