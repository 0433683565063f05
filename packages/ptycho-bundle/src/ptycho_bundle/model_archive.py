"""What a model archive means, for every backend: written from config objects, read into a model spec.

The format layer (:func:`ptycho_bundle.save_bundle`, :func:`ptycho_bundle.load_bundle`) stores and
verifies members; this module decides what goes in them and how they are read back, once for
both backends:

- :func:`write_model_archive` builds ``params.json`` (the legacy snapshot) and ``config.json``
  from the config objects and the data scale s it is given. Nothing is read from the global
  ``params.cfg``, so what an archive holds does not depend on what ran earlier in the process.
- :func:`read_model_archive` returns a :class:`ModelSpec` (model settings, trainable flags, probe,
  s, canonical weights) after checking them against each other, before a backend allocates
  anything. Restoring ``params.cfg`` (CONFIG-001) is the workflow layer's job, not this one's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api.architecture import PROBE_KEY, check_canonical_weights
from ptycho_api.config import (
    KEY_MAPPINGS,
    ModelConfig,
    TrainingConfig,
    config_from_dict,
    config_to_dict,
    dataclass_to_legacy_dict,
    model_config_from_legacy_dict,
)
from ptycho_api.errors import BundleError, ConfigError
from ptycho_bundle.reader import Bundle, load_bundle
from ptycho_bundle.writer import save_bundle

__all__ = [
    "ModelSpec",
    "legacy_params",
    "write_model_archive",
    "read_model_archive",
]

logger = logging.getLogger(__name__)

_MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
_FLAGS = {"probe_trainable": False, "intensity_scale_trainable": True}
"""Trainable flags kept in the archive, with the defaults of ``TrainingConfig``."""


@dataclasses.dataclass(frozen=True, eq=False)
class ModelSpec:
    """Everything a backend needs to rebuild a saved model, checked for consistency."""

    path: Path
    backend: str
    """The backend that wrote the archive."""
    model_config: ModelConfig
    probe_trainable: bool
    intensity_scale_trainable: bool
    probe: np.ndarray
    """``(N, N)`` complex64, already normalised."""
    intensity_scale: float
    """The data scale s (model input = s * X)."""
    weights: dict[str, np.ndarray]
    """Canonical weights (parity.md section 1), keys and shapes checked against ``model_config``."""
    params: dict[str, Any]
    """The legacy params snapshot (``params.json``): what CONFIG-001 restores after a load."""
    bundle: Bundle = dataclasses.field(repr=False)

    def native(self, model: str, filename: str) -> bytes | None:
        """Bytes of a native artifact (e.g. ``autoencoder/model.pth``), or None; never deserialized."""
        return self.bundle.native(model, filename)


def legacy_params(config: TrainingConfig, intensity_scale: float) -> dict[str, Any]:
    """The ``params.json`` snapshot of ``config``: its legacy keys, plus N, gridsize and s.

    Built from the config object alone; keys whose value is None are left out (CONFIG-001: None
    never overwrites when the snapshot is restored).
    """
    snapshot = {k: v for k, v in dataclass_to_legacy_dict(config).items() if v is not None}
    snapshot.update(
        {
            "N": int(config.model.N),
            "gridsize": int(config.model.gridsize),
            "intensity_scale": float(intensity_scale),
        }
    )
    return snapshot


def write_model_archive(
    target: str | os.PathLike[str],
    *,
    backend: str,
    config: TrainingConfig,
    intensity_scale: float,
    weights: Mapping[str, np.ndarray],
    history: Mapping[str, Any] | None = None,
    native: Mapping[str, Mapping[str, bytes]] | None = None,
    versions: Mapping[str, str] | None = None,
) -> Path:
    """Write ``wts.h5.zip`` for a model trained with ``config`` on data of scale s; returns its path.

    ``weights`` are canonical; ``native`` holds the backend's own files per model folder.
    ``config`` is validated and its weights checked against ``config.model`` before writing.
    """
    if not isinstance(config, TrainingConfig):
        raise BundleError(f"config: expected a TrainingConfig; found {type(config).__name__}")
    scale = float(intensity_scale)
    if not math.isfinite(scale) or scale <= 0:
        raise BundleError(f"intensity_scale: expected a finite number > 0; found {scale!r}")
    try:
        config.validate()
        check_canonical_weights(weights, config.model)
    except ConfigError as exc:
        raise BundleError(f"{target}: {exc}") from None
    return save_bundle(
        target,
        backend=backend,
        config=config_to_dict(config),
        params=legacy_params(config, scale),
        weights=weights,
        history=dict(history) if history is not None else None,
        native=native,
        versions=versions,
    )


def _model_config(bundle: Bundle) -> ModelConfig:
    """Model settings from ``config.json``'s ``model`` section, else from the legacy params keys."""
    section = (bundle.config or {}).get("model")
    if not isinstance(section, Mapping):
        return model_config_from_legacy_dict(bundle.params)
    unknown = sorted(str(k) for k in section if k not in _MODEL_FIELDS)
    if unknown:
        # A newer writer may know more settings; the canonical weights still have to match.
        logger.warning(
            "%s: config.json model keys %s are unknown to this version and are ignored",
            bundle.path,
            unknown,
        )
    return config_from_dict({k: v for k, v in section.items() if k in _MODEL_FIELDS}, ModelConfig)


def _flag(bundle: Bundle, name: str) -> bool:
    value = (bundle.config or {}).get(name)
    if value is None:
        value = bundle.params.get(KEY_MAPPINGS.get(name, name), _FLAGS[name])
    if not isinstance(value, bool):
        raise BundleError(f"{bundle.path}: {name}: expected true or false; found {value!r}")
    return value


def read_model_archive(path: str | os.PathLike[str]) -> ModelSpec:
    """Open and verify an archive of either backend and return its checked :class:`ModelSpec`.

    Refused with ``BundleError``: legacy (format 1) archives, which hold no canonical weights; a
    ``config.json`` model that disagrees with ``params.json`` on N or gridsize; settings that do
    not validate; weights whose keys, shapes or dtypes do not fit the model, or that are not
    finite. Unknown keys in ``config.json``'s model section are ignored with a warning.
    """
    bundle = load_bundle(path)
    if bundle.legacy:
        raise BundleError(
            f"{bundle.path}: a legacy (format 1) archive holds no canonical weights; "
            "retrain the model or convert the archive to load it with this version"
        )
    try:
        model_config = _model_config(bundle)
    except ConfigError as exc:
        raise BundleError(f"{bundle.path}: config.json does not describe a model: {exc}") from None
    if (model_config.N, model_config.gridsize) != (bundle.N, bundle.gridsize):
        raise BundleError(
            f"{bundle.path}: config.json model (N={model_config.N}, gridsize={model_config.gridsize}) "
            f"disagrees with params.json (N={bundle.N}, gridsize={bundle.gridsize})"
        )
    weights = bundle.weights
    try:
        check_canonical_weights(weights, model_config)
    except ConfigError as exc:
        raise BundleError(f"{bundle.path}: weights.h5: {exc}") from None
    bad = sorted(k for k, v in weights.items() if not np.all(np.isfinite(v)))
    if bad:
        raise BundleError(
            f"{bundle.path}: weights.h5: non-finite values (NaN or inf) in {bad[:8]}"
            f"{' ...' if len(bad) > 8 else ''}; the model cannot be used"
        )
    logger.info(
        "model archive %s: %s model, N=%d, gridsize=%d, s=%.6g",
        bundle.path,
        bundle.backend,
        model_config.N,
        model_config.gridsize,
        bundle.intensity_scale,
    )
    return ModelSpec(
        path=bundle.path,
        backend=bundle.backend,
        model_config=model_config,
        probe_trainable=_flag(bundle, "probe_trainable"),
        intensity_scale_trainable=_flag(bundle, "intensity_scale_trainable"),
        probe=np.asarray(weights[PROBE_KEY], dtype=np.complex64),
        intensity_scale=bundle.intensity_scale,
        weights=weights,
        params=dict(bundle.params),
        bundle=bundle,
    )
