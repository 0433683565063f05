"""The TensorFlow side of the ``wts.h5.zip`` archive: what only Keras knows (bundle.md part 1).

What an archive holds and how it is checked is decided once, in
:mod:`ptycho_bundle.model_archive`; here the model's canonical weights and data scale s go in,
with ``model.keras`` for ``autoencoder`` and ``diffraction_to_obj`` as native artifacts, and a
:class:`~ptycho_bundle.ModelSpec` comes back out as Keras models. ``model.keras`` is never
needed to load. Loading does not touch ``params.cfg``: the workflow layer restores it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

import ptycho_tf
from ptycho_api.config import TrainingConfig
from ptycho_bundle import read_model_archive, write_model_archive
from ptycho_tf.model import PtychoPINN, build_model
from ptycho_tf.weights import export_weights, import_weights

__all__ = ["BACKEND_NAME", "save_archive", "load_archive"]

BACKEND_NAME = "tensorflow"
_NATIVE_FILE = "model.keras"


def _keras_bytes(model: keras.Model) -> bytes:
    """The ``.keras`` file of ``model`` as bytes (saved without optimizer state)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / _NATIVE_FILE
        model.save(path, include_optimizer=False)
        return path.read_bytes()


def save_archive(
    models: PtychoPINN,
    target: str | os.PathLike[str],
    config: TrainingConfig,
    *,
    history: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``wts.h5.zip`` (directory, ``.zip`` path or ``<dir>/wts.h5``) atomically; returns its path.

    The archive records the model's own settings and its data scale s (``models.intensity_scale``).
    """
    return write_model_archive(
        target,
        backend=BACKEND_NAME,
        config=dataclasses.replace(config, model=models.model_config),
        intensity_scale=models.intensity_scale,
        weights=export_weights(models),
        history=history,
        native={
            "autoencoder": {_NATIVE_FILE: _keras_bytes(models.autoencoder)},
            "diffraction_to_obj": {_NATIVE_FILE: _keras_bytes(models.diffraction_to_obj)},
        },
        versions={
            "ptycho-tf": ptycho_tf.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    )


def load_archive(path: str | os.PathLike[str]) -> tuple[PtychoPINN, dict[str, Any]]:
    """Load a format-2 archive of either backend -> ``(models, params snapshot)``.

    The model is rebuilt from the checked spec and receives the canonical weights.
    """
    spec = read_model_archive(path)
    models = build_model(
        spec.model_config,
        spec.probe,
        spec.intensity_scale,
        probe_trainable=spec.probe_trainable,
        intensity_scale_trainable=spec.intensity_scale_trainable,
        probe_is_normalized=True,
    )
    import_weights(models, spec.weights)
    return models, spec.params
