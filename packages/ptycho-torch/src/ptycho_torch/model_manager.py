"""Saving and loading the ``wts.h5.zip`` archive through ``ptycho_bundle`` (bundle.md part 1).

Written: canonical weights (``weights.h5``, loadable by either backend), the legacy params
snapshot, the config, the history, and ``model.pth`` state_dicts for both model folders. Read:
any format-2 archive, whichever backend wrote it; the model is rebuilt from ``config.json``'s
``model`` section (fallback: params) and its weights come from ``weights.h5`` or, for PyTorch
archives when asked, from ``model.pth`` read with ``torch.load(weights_only=True)``.
CONFIG-001: loading restores the saved params snapshot into ``ptycho_api.params.cfg``.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch

import ptycho_torch
from ptycho_api import params as legacy_params
from ptycho_api.config import (
    ModelConfig,
    TrainingConfig,
    config_from_dict,
    config_to_dict,
    dataclass_to_legacy_dict,
)
from ptycho_api.errors import BundleError, ConfigError
from ptycho_bundle import load_bundle, save_bundle
from ptycho_torch.model import (
    DiffractionToObject,
    PtychoPINN,
    build_model,
    export_weights,
    import_weights,
)

__all__ = [
    "BACKEND_NAME",
    "NATIVE_FILE",
    "params_snapshot",
    "save_archive",
    "load_archive",
    "save_torch_bundle",
    "load_torch_bundle",
]

logger = logging.getLogger(__name__)

BACKEND_NAME = "pytorch"
NATIVE_FILE = "model.pth"
_MODEL_KEYS = {
    "N": "N",
    "gridsize": "gridsize",
    "n_filters_scale": "n_filters_scale",
    "model_type": "model_type",
    "amp_activation": "amp_activation",
    "object_big": "object.big",
    "probe_big": "probe.big",
    "probe_mask": "probe.mask",
    "pad_object": "pad_object",
    "probe_scale": "probe_scale",
    "gaussian_smoothing_sigma": "gaussian_smoothing_sigma",
}
"""ModelConfig field -> legacy params key, for archives whose config.json lacks a model section."""


def params_snapshot(config: TrainingConfig, intensity_scale: float) -> dict[str, Any]:
    """Legacy snapshot: ``params.cfg`` overlaid with the config's fields, plus s, N and gridsize."""
    snapshot = dict(legacy_params.cfg)
    snapshot.update({k: v for k, v in dataclass_to_legacy_dict(config).items() if v is not None})
    snapshot["intensity_scale"] = float(intensity_scale)
    snapshot["N"] = int(config.model.N)
    snapshot["gridsize"] = int(config.model.gridsize)
    snapshot["_version"] = f"ptycho-torch {ptycho_torch.__version__}"
    return snapshot


def _state_bytes(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    return buffer.getvalue()


def save_archive(
    model: PtychoPINN,
    target: str | os.PathLike[str],
    config: TrainingConfig,
    *,
    intensity_scale: float,
    history: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``wts.h5.zip`` at ``target`` (directory or ``.zip`` path) atomically; returns its path.

    ``intensity_scale`` is the data scale s the model was trained with (model input = s*X).
    """
    versions = {
        "ptycho-torch": ptycho_torch.__version__,
        "torch": str(torch.__version__),
        "lightning": lightning.__version__,
    }
    native = {
        "autoencoder": {NATIVE_FILE: _state_bytes(model)},
        "diffraction_to_obj": {NATIVE_FILE: _state_bytes(DiffractionToObject(model))},
    }
    return save_bundle(
        target,
        backend=BACKEND_NAME,
        config=config_to_dict(config),
        params=params_snapshot(config, intensity_scale),
        weights=export_weights(model),
        history=dict(history) if history is not None else None,
        native=native,
        versions=versions,
    )


def _model_config(config_doc: Mapping[str, Any] | None, snapshot: Mapping[str, Any]) -> ModelConfig:
    section = config_doc.get("model") if config_doc else None
    if isinstance(section, Mapping):
        return config_from_dict(section, ModelConfig)
    fields = {name: snapshot[key] for name, key in _MODEL_KEYS.items() if key in snapshot}
    return config_from_dict(fields, ModelConfig)


def _trainable_flags(
    config_doc: Mapping[str, Any] | None, snapshot: Mapping[str, Any]
) -> tuple[bool, bool]:
    doc = config_doc or {}
    probe = doc.get("probe_trainable", snapshot.get("probe.trainable", False))
    scale = doc.get("intensity_scale_trainable", snapshot.get("intensity_scale.trainable", True))
    return bool(probe), bool(scale)


def load_archive(
    path: str | os.PathLike[str],
    *,
    native: bool = False,
    map_location: str | torch.device = "cpu",
) -> tuple[PtychoPINN, dict[str, Any]]:
    """Load any format-2 archive: -> ``(autoencoder, params)``; restores ``params.cfg`` (CONFIG-001).

    Weights come from the canonical ``weights.h5`` (works for archives of either backend). With
    ``native=True`` and a PyTorch archive, ``autoencoder/model.pth`` is used instead, read with
    ``torch.load(weights_only=True)`` and loaded strictly.
    """
    bundle = load_bundle(path)
    if bundle.legacy:
        raise BundleError(
            f"{bundle.path}: legacy (format 1) archives carry no canonical weights; "
            "retrain or convert the model to load it with the PyTorch backend"
        )
    snapshot = dict(bundle.params)
    try:
        model_config = _model_config(bundle.config, snapshot)
    except ConfigError as exc:
        raise BundleError(
            f"{bundle.path}: config.json/params.json do not describe a model: {exc}"
        ) from exc
    if (model_config.N, model_config.gridsize) != (bundle.N, bundle.gridsize):
        raise BundleError(
            f"{bundle.path}: config.json model (N={model_config.N}, gridsize={model_config.gridsize}) "
            f"disagrees with params.json (N={bundle.N}, gridsize={bundle.gridsize})"
        )
    probe_trainable, scale_trainable = _trainable_flags(bundle.config, snapshot)
    weights = bundle.weights
    probe = np.asarray(weights.get("physics/probe", np.ones((bundle.N, bundle.N), np.complex64)))
    model = build_model(
        model_config,
        probe,
        bundle.intensity_scale,
        probe_trainable=probe_trainable,
        intensity_scale_trainable=scale_trainable,
    )
    data = bundle.native("autoencoder", NATIVE_FILE) if native else None
    if native and bundle.backend == BACKEND_NAME and data is not None:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    else:
        if native:
            logger.info("%s: no PyTorch model.pth; using the canonical weights", bundle.path)
        import_weights(model, weights)
    model.to(map_location)
    model.eval()
    legacy_params.cfg.update(snapshot)
    logger.info(
        "loaded %s model (N=%d, gridsize=%d) from %s",
        bundle.backend,
        bundle.N,
        bundle.gridsize,
        bundle.path,
    )
    return model, snapshot


def save_torch_bundle(
    models_dict: Mapping[str, torch.nn.Module],
    base_path: str | os.PathLike[str],
    config: TrainingConfig,
    intensity_scale: float | None = None,
) -> Path:
    """Original-API saver: ``{'autoencoder': ..., 'diffraction_to_obj': ...}`` -> ``<base_path>.zip``.

    ``base_path`` may be a directory, ``<dir>/wts.h5`` or an explicit ``.zip`` path. The
    intensity scale defaults to ``params.cfg['intensity_scale']``.
    """
    model = models_dict.get("autoencoder")
    if model is None:
        d2o = models_dict.get("diffraction_to_obj")
        model = getattr(d2o, "autoencoder", None)
    if not isinstance(model, PtychoPINN):
        raise ConfigError(
            "save_torch_bundle: models_dict must hold a PtychoPINN under 'autoencoder' "
            f"(or a DiffractionToObject under 'diffraction_to_obj'); found keys {sorted(models_dict)}"
        )
    if intensity_scale is None:
        intensity_scale = legacy_params.cfg.get("intensity_scale")
        if intensity_scale is None:
            raise ConfigError("save_torch_bundle: intensity_scale not given and not in params.cfg")
    return save_archive(model, base_path, config, intensity_scale=float(intensity_scale))


def load_torch_bundle(
    base_path: str | os.PathLike[str], model_name: str | None = None
) -> tuple[dict[str, torch.nn.Module], dict[str, Any]]:
    """Original-API loader: -> ``({'autoencoder': ..., 'diffraction_to_obj': ...}, params)``.

    ``model_name`` is accepted for compatibility and ignored (both models are always returned).
    """
    model, snapshot = load_archive(base_path)
    return {"autoencoder": model, "diffraction_to_obj": DiffractionToObject(model)}, snapshot
