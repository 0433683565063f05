"""Saving and loading ``wts.h5.zip`` through ``ptycho_bundle`` (spec/bundle.md part 1).

Writes canonical weights (``weights.h5``), the config, the legacy params snapshot and, as native
artifacts, ``model.keras`` for ``autoencoder`` and ``diffraction_to_obj``. Loading rebuilds the
model from ``config.json`` (or the params), imports ``weights.h5`` - so archives written by
either backend load - and restores ``params.cfg`` (CONFIG-001). ``model.keras`` is never needed
to load; when read it is only with ``safe_mode=True``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import ptycho_tf
from ptycho_api import params
from ptycho_api.config import (
    KEY_MAPPINGS,
    ModelConfig,
    TrainingConfig,
    config_to_dict,
    dataclass_to_legacy_dict,
)
from ptycho_api.errors import BundleError
from ptycho_bundle import load_bundle, save_bundle
from ptycho_tf.model import PtychoModels, build_models
from ptycho_tf.weights import PROBE_KEY, export_weights, import_weights

__all__ = [
    "legacy_snapshot",
    "keras_bytes",
    "save_archive",
    "load_archive",
    "model_config_from_bundle",
]

logger = logging.getLogger(__name__)

BACKEND_NAME = "tensorflow"
_JSON_SCALARS = (str, int, float, bool, type(None))
_DROP = object()


def _json_safe(value: Any) -> Any:
    """Plain JSON value, or ``_DROP`` for what cannot be stored (arrays, tensors, objects)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic) and np.ndim(value) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return _DROP
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, _JSON_SCALARS) for v in value):
        return list(value)
    return _DROP


def legacy_snapshot(config: TrainingConfig, models: PtychoModels) -> dict[str, Any]:
    """The params of the archive: ``params.cfg`` overlaid by the config, plus N, gridsize, s.

    Values that are not plain JSON (the probe array, tensors) are left out: the probe lives in
    ``weights.h5`` as ``physics/probe``.
    """
    snapshot: dict[str, Any] = {}
    for key, value in params.cfg.items():
        safe = _json_safe(value)
        if safe is not _DROP:
            snapshot[key] = safe
    for key, value in dataclass_to_legacy_dict(config).items():
        safe = _json_safe(value)
        # CONFIG-001: None never overwrites.
        if safe is not _DROP and safe is not None:
            snapshot[key] = safe
    snapshot.update(
        {
            "N": int(models.model_config.N),
            "gridsize": int(models.model_config.gridsize),
            "intensity_scale": float(models.intensity_scale),
        }
    )
    return snapshot


def keras_bytes(model: keras.Model) -> bytes:
    """The ``.keras`` file of ``model`` as bytes (saved without optimizer state)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path, include_optimizer=False)
        return path.read_bytes()


def save_archive(
    models: PtychoModels,
    target: str | os.PathLike[str],
    config: TrainingConfig,
    *,
    history: Mapping[str, list[float]] | None = None,
) -> Path:
    """Write ``wts.h5.zip`` (directory, ``.zip`` path or ``<dir>/wts.h5``) atomically; returns its path."""
    native = {
        "autoencoder": {"model.keras": keras_bytes(models.autoencoder)},
        "diffraction_to_obj": {"model.keras": keras_bytes(models.diffraction_to_obj)},
    }
    saved_config = dataclasses.replace(config, model=models.model_config)
    return save_bundle(
        target,
        backend=BACKEND_NAME,
        config=config_to_dict(saved_config),
        params=legacy_snapshot(saved_config, models),
        weights=export_weights(models),
        history=dict(history) if history is not None else None,
        native=native,
        versions={
            "ptycho-tf": ptycho_tf.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    )


_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}


def model_config_from_bundle(
    config: Mapping[str, Any] | None, snapshot: Mapping[str, Any]
) -> ModelConfig:
    """``ModelConfig`` from ``config.json``'s ``model`` section, else from legacy params keys."""
    section = (config or {}).get("model") if config else None
    if isinstance(section, Mapping):
        values = {k: v for k, v in section.items() if k in _MODEL_FIELDS}
    else:
        values = {}
        for name in _MODEL_FIELDS:
            key = KEY_MAPPINGS.get(name, name)
            if key in snapshot:
                values[name] = snapshot[key]
    values["N"] = int(snapshot["N"])
    values["gridsize"] = int(snapshot["gridsize"])
    return ModelConfig(**values).validate()


def _flag(
    config: Mapping[str, Any] | None, snapshot: Mapping[str, Any], name: str, default: bool
) -> bool:
    if config and isinstance(config.get(name), bool):
        return bool(config[name])
    legacy = snapshot.get(KEY_MAPPINGS.get(name, name))
    return legacy if isinstance(legacy, bool) else default


def load_archive(path: str | os.PathLike[str]) -> tuple[PtychoModels, dict[str, Any]]:
    """Load any format-2 archive (either backend's) -> ``(models, params)``; restores ``params.cfg``."""
    bundle = load_bundle(path)
    if bundle.legacy:
        raise BundleError(
            f"{bundle.path}: a legacy archive (no manifest.json) holds no canonical weights; "
            "only format-2 archives can be loaded into the TensorFlow backend"
        )
    snapshot = dict(bundle.params)
    model_config = model_config_from_bundle(bundle.config, snapshot)
    if PROBE_KEY not in bundle.weights:
        raise BundleError(f"{bundle.path}: weights.h5 has no {PROBE_KEY!r}")
    models = build_models(
        model_config,
        bundle.weights[PROBE_KEY],
        bundle.intensity_scale,
        probe_trainable=_flag(bundle.config, snapshot, "probe_trainable", False),
        intensity_scale_trainable=_flag(bundle.config, snapshot, "intensity_scale_trainable", True),
        probe_is_normalized=True,
    )
    import_weights(models, bundle.weights)
    params.cfg.update(snapshot)
    logger.info(
        "loaded %s archive %s into TensorFlow (N=%d, gridsize=%d)",
        bundle.backend,
        bundle.path,
        model_config.N,
        model_config.gridsize,
    )
    return models, snapshot
