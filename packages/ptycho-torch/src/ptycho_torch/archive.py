"""The PyTorch side of the ``wts.h5.zip`` archive: what only torch knows (bundle.md part 1).

What an archive holds and how it is checked is decided once, in
:mod:`ptycho_bundle.model_archive`; here the model's canonical weights and data scale s go in,
with ``model.pth`` state_dicts for ``autoencoder`` and ``diffraction_to_obj`` as native
artifacts, and a :class:`~ptycho_bundle.ModelSpec` comes back out as a ``PtychoPINN``. Weights
load from the canonical ``weights.h5`` (archives of either backend), or on request from
``model.pth``, read with ``torch.load(weights_only=True)``. Loading does not touch
``params.cfg``: the workflow layer restores it.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning
import torch

import ptycho_torch
from ptycho_api.config import TrainingConfig
from ptycho_api.errors import BundleError
from ptycho_bundle import read_model_archive, write_model_archive
from ptycho_torch.model import PtychoPINN, build_model
from ptycho_torch.modules import DiffractionToObject
from ptycho_torch.weights import export_weights, import_weights

__all__ = ["BACKEND_NAME", "save_archive", "load_archive"]

logger = logging.getLogger(__name__)

BACKEND_NAME = "pytorch"
_NATIVE_FILE = "model.pth"


def _state_bytes(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    return buffer.getvalue()


def save_archive(
    model: PtychoPINN,
    target: str | os.PathLike[str],
    config: TrainingConfig,
    *,
    history: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``wts.h5.zip`` (directory, ``.zip`` path or ``<dir>/wts.h5``) atomically; returns its path.

    The archive records the model's own settings and its data scale s (``model.intensity_scale``),
    not the trained lambda (which is a weight).
    """
    return write_model_archive(
        target,
        backend=BACKEND_NAME,
        config=dataclasses.replace(config, model=model.model_config),
        intensity_scale=model.intensity_scale,
        weights=export_weights(model),
        history=history,
        native={
            "autoencoder": {_NATIVE_FILE: _state_bytes(model)},
            "diffraction_to_obj": {_NATIVE_FILE: _state_bytes(DiffractionToObject(model))},
        },
        versions={
            "ptycho-torch": ptycho_torch.__version__,
            "torch": str(torch.__version__),
            "lightning": lightning.__version__,
        },
    )


def load_archive(
    path: str | os.PathLike[str],
    *,
    native: bool = False,
    map_location: str | torch.device = "cpu",
) -> tuple[PtychoPINN, dict[str, Any]]:
    """Load a format-2 archive of either backend -> ``(autoencoder in eval mode, params snapshot)``.

    With ``native=True`` and a PyTorch archive, ``autoencoder/model.pth`` supplies the weights
    (strict ``load_state_dict``) instead of ``weights.h5``.
    """
    spec = read_model_archive(path)
    model = build_model(
        spec.model_config,
        spec.probe,
        spec.intensity_scale,
        probe_trainable=spec.probe_trainable,
        intensity_scale_trainable=spec.intensity_scale_trainable,
    )
    data = spec.native("autoencoder", _NATIVE_FILE) if native else None
    if data is not None and spec.backend == BACKEND_NAME:
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise BundleError(f"{spec.path}: autoencoder/{_NATIVE_FILE}: {exc}") from None
    else:
        if native:
            logger.info("%s: no PyTorch model.pth; using the canonical weights", spec.path)
        import_weights(model, spec.weights)
    model.to(map_location)
    model.eval()
    return model, spec.params
