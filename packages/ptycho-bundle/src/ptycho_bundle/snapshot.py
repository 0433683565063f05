"""JSON-safe conversion of the params snapshot, the config and the history, and the required keys."""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ptycho_api.config import config_to_dict
from ptycho_api.errors import BundleError
from ptycho_bundle.display import summary

__all__ = [
    "REQUIRED_PARAMS",
    "to_json_safe",
    "params_snapshot",
    "config_document",
    "required_params",
]

logger = logging.getLogger(__name__)

REQUIRED_PARAMS = ("N", "gridsize", "intensity_scale")


def to_json_safe(value: Any, where: str, *, allow_nan: bool = False) -> Any:
    """Plain JSON value of ``value`` (numpy scalars -> Python, tuples -> lists, paths -> str) or ``BundleError``."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.generic | np.ndarray) and np.ndim(value) == 0:
        return to_json_safe(np.asarray(value).item(), where, allow_nan=allow_nan)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float):
        if not allow_nan and not math.isfinite(value):
            raise BundleError(f"{where}: non-finite number {value!r} cannot be stored as JSON")
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise BundleError(
                    f"{where}: key {key!r} is not a string (JSON objects need string keys)"
                )
            out[key] = to_json_safe(item, f"{where}.{key}", allow_nan=allow_nan)
        return out
    if isinstance(value, list | tuple):
        return [
            to_json_safe(item, f"{where}[{i}]", allow_nan=allow_nan) for i, item in enumerate(value)
        ]
    raise BundleError(
        f"{where}: value of type {type(value).__name__} is not JSON-safe "
        "(expected None, bool, int, float, str, list or dict)"
    )


def _is_array(value: Any) -> bool:
    return (isinstance(value, np.ndarray) or hasattr(value, "__array__")) and np.ndim(value) > 0


def params_snapshot(params: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe copy of a flat legacy params dict: array values are dropped, ``N``/``gridsize``/``intensity_scale`` required."""
    if not isinstance(params, Mapping):
        raise BundleError(
            f"params: expected a dict (the legacy params snapshot); found {type(params).__name__}"
        )
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in params.items():
        if _is_array(value):
            dropped.append(str(key))
            continue
        kept[key] = value
    if "probe" in dropped:
        logger.debug(
            "params: 'probe' not stored in params.json; the probe belongs in weights.h5 (physics/probe)"
        )
    others = [k for k in dropped if k != "probe"]
    if others:
        logger.warning(
            "params: dropped array-valued keys %s (params.json holds only JSON-safe values)", others
        )
    snapshot = to_json_safe(kept, "params")
    required_params(snapshot, "params")
    return snapshot


def required_params(params: Mapping[str, Any], where: str) -> tuple[int, int, float]:
    """Return ``(N, gridsize, intensity_scale)`` of a params snapshot, or ``BundleError`` naming what is wrong."""
    missing = [key for key in REQUIRED_PARAMS if key not in params]
    if missing:
        raise BundleError(
            f"{where}: required keys {missing} missing (needed: {list(REQUIRED_PARAMS)})"
        )
    n, gridsize, scale = (params[key] for key in REQUIRED_PARAMS)
    for key, value in (("N", n), ("gridsize", gridsize)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise BundleError(
                f"{where}: {key!r} must be a positive integer; found {summary(value)}"
            )
    if (
        isinstance(scale, bool)
        or not isinstance(scale, numbers.Real)
        or not math.isfinite(float(scale))
        or float(scale) <= 0
    ):
        raise BundleError(
            f"{where}: 'intensity_scale' must be a finite positive number; found {summary(scale)}"
        )
    return int(n), int(gridsize), float(scale)


def config_document(config: Any) -> dict[str, Any]:
    """JSON-safe dict of a config given as a dataclass (via ``config_to_dict``) or a dict."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = config_to_dict(config)
    if not isinstance(config, Mapping):
        raise BundleError(
            f"config: expected a config dataclass or a dict (config_to_dict(cfg)); found {type(config).__name__}"
        )
    return to_json_safe(config, "config")
