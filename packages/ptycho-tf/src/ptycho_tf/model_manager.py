"""Seed-compatible archive facade: ``ModelManager.save_multiple_models`` / ``load_multiple_models`` and ``save``.

Thin adapters over :mod:`ptycho_tf.archive` and :func:`ptycho_api.workflows.load_inference_bundle`
(which restores ``params.cfg``, CONFIG-001); nothing is pickled and ``model.keras`` is never
needed to load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

from ptycho_api import params, workflows
from ptycho_api.config import TrainingConfig, model_config_from_legacy_dict
from ptycho_api.normalization import intensity_scale as default_intensity_scale
from ptycho_tf import archive
from ptycho_tf.backend import Backend
from ptycho_tf.model import PtychoPINN

__all__ = ["ModelManager", "save"]

MODEL_NAMES = ("autoencoder", "diffraction_to_obj")


class ModelManager:
    """Save and load the two models of one network as one ``wts.h5.zip`` archive."""

    @staticmethod
    def save_multiple_models(
        models_dict: Mapping[str, keras.Model],
        base_path: str | os.PathLike[str],
        custom_objects: Mapping[str, Any] | None = None,
        intensity_scale: float | None = None,
        config: TrainingConfig | None = None,
    ) -> Path:
        """Write ``models_dict`` (needs ``autoencoder``) to ``<base_path>.zip`` (or a dir/zip path).

        As in the original, the settings not passed come from the global ``params.cfg``: the
        model from ``config`` or the legacy keys, s from ``intensity_scale`` or
        ``params.cfg['intensity_scale']`` (else from ``nphotons``). ``custom_objects`` is
        accepted for signature compatibility only: every layer is registered already.
        """
        if "autoencoder" not in models_dict:
            raise KeyError(f"models_dict: 'autoencoder' is required; found {sorted(models_dict)}")
        autoencoder = models_dict["autoencoder"]
        diffraction_to_obj = models_dict.get("diffraction_to_obj") or keras.Model(
            autoencoder.inputs, autoencoder.outputs[0], name="diffraction_to_obj"
        )
        if config is None:
            config = TrainingConfig(model=model_config_from_legacy_dict(params.cfg))
        if intensity_scale is None:
            intensity_scale = params.cfg.get("intensity_scale") or default_intensity_scale(
                float(params.cfg.get("nphotons", config.nphotons)), config.model.N
            )
        models = PtychoPINN(autoencoder, diffraction_to_obj, config.model, float(intensity_scale))
        return archive.save_archive(models, base_path, config)

    @staticmethod
    def load_multiple_models(
        base_path: str | os.PathLike[str], model_names: Sequence[str] | None = None
    ) -> dict[str, keras.Model]:
        """Load an archive (either backend's) -> ``{name: Keras model}``; restores ``params.cfg``."""
        models, _ = workflows.load_inference_bundle(base_path, backend=Backend())
        available = {
            "autoencoder": models.autoencoder,
            "diffraction_to_obj": models.diffraction_to_obj,
        }
        names = list(model_names) if model_names is not None else list(MODEL_NAMES)
        unknown = [n for n in names if n not in available]
        if unknown:
            raise KeyError(f"model_names: unknown {unknown}; expected some of {list(MODEL_NAMES)}")
        return {name: available[name] for name in names}


def save(out_dir: str | os.PathLike[str]) -> Path:
    """Write the model last trained or loaded in this process to ``<out_dir>/wts.h5.zip``."""
    backend, models, config = workflows.current_model()
    if not isinstance(models, PtychoPINN):
        raise RuntimeError(
            "model_manager.save: no TensorFlow model has been trained or loaded in this process"
        )
    return backend.save_archive(
        models, out_dir, config or TrainingConfig(model=models.model_config)
    )
