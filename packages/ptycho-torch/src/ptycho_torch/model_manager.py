"""Seed-compatible archive facade: ``save_torch_bundle`` / ``load_torch_bundle`` of the original API.

Thin adapters over :mod:`ptycho_torch.archive` and :func:`ptycho_api.workflows.load_inference_bundle`
(which restores ``params.cfg``, CONFIG-001); nothing is pickled.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ptycho_api import workflows
from ptycho_api.config import TrainingConfig
from ptycho_api.errors import ConfigError
from ptycho_torch import archive
from ptycho_torch.backend import Backend
from ptycho_torch.model import PtychoPINN
from ptycho_torch.modules import DiffractionToObject

__all__ = ["save_torch_bundle", "load_torch_bundle"]


def save_torch_bundle(
    models_dict: Mapping[str, torch.nn.Module],
    base_path: str | os.PathLike[str],
    config: TrainingConfig,
    intensity_scale: float | None = None,
) -> Path:
    """``{'autoencoder': ..., 'diffraction_to_obj': ...}`` -> ``wts.h5.zip`` at ``base_path``.

    ``base_path`` may be a directory, ``<dir>/wts.h5`` or a ``.zip`` path. ``intensity_scale``,
    when given, replaces the data scale s the model carries (the one it was built with).
    """
    model = models_dict.get("autoencoder")
    if model is None:
        model = getattr(models_dict.get("diffraction_to_obj"), "autoencoder", None)
    if not isinstance(model, PtychoPINN):
        raise ConfigError(
            "save_torch_bundle: models_dict must hold a PtychoPINN under 'autoencoder' "
            f"(or a DiffractionToObject under 'diffraction_to_obj'); found keys {sorted(models_dict)}"
        )
    if intensity_scale is not None:
        model.intensity_scale = float(intensity_scale)
    return archive.save_archive(model, base_path, config)


def load_torch_bundle(
    base_path: str | os.PathLike[str], model_name: str | None = None
) -> tuple[dict[str, torch.nn.Module], dict[str, Any]]:
    """-> ``({'autoencoder': ..., 'diffraction_to_obj': ...}, params)``; restores ``params.cfg``.

    ``model_name`` is accepted for compatibility and ignored (both models are always returned).
    """
    model, snapshot = workflows.load_inference_bundle(base_path, backend=Backend())
    return {"autoencoder": model, "diffraction_to_obj": DiffractionToObject(model)}, snapshot
