"""Seed-compatible workflow entry points with the original PtychoPINN names (TensorFlow).

Thin adapters over :mod:`ptycho_api.workflows` with this backend: the same steps (CONFIG-001
first), the same results dict and the same exceptions as ``ptycho_torch.workflows.components``.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

from ptycho_api import workflows
from ptycho_api.config import InferenceConfig, TrainingConfig
from ptycho_api.workflows import DataLike
from ptycho_tf.backend import Backend
from ptycho_tf.model import PtychoPINN

__all__ = [
    "run_cdi_example",
    "train_cdi_model",
    "reassemble_cdi_image",
    "load_inference_bundle",
]


def train_cdi_model(
    train_data: DataLike, test_data: DataLike | None, config: TrainingConfig
) -> dict[str, Any]:
    """Group (if needed), build and train a model -> ``ptycho_api.workflows.train_cdi_model``'s results.

    Nothing is written; ``run_cdi_example`` or ``model_manager.save`` writes the archive.
    """
    return workflows.train_cdi_model(train_data, test_data, config, backend=Backend(), save=False)


def reassemble_cdi_image(
    test_data: DataLike,
    config: TrainingConfig | InferenceConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    coord_scale: float = 1.0,
    *,
    model: PtychoPINN | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict and stitch a scan (B 9) -> ``(amplitude (S, S) f32, phase (S, S) f32 rad, patches)``.

    Uses ``model`` or the one last trained or loaded in this process.
    """
    backend = Backend() if model is not None else None
    return workflows.reassemble_cdi_image(
        test_data, config, flip_x, flip_y, transpose, M, coord_scale, model=model, backend=backend
    )


def run_cdi_example(
    train_data: DataLike,
    test_data: DataLike | None,
    config: TrainingConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    do_stitching: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train, write ``<output_dir>/wts.h5.zip`` and reconstruct -> ``(recon_amp, recon_phase, results)``."""
    return workflows.run_cdi_example(
        train_data, test_data, config, flip_x, flip_y, transpose, M, do_stitching, backend=Backend()
    )


def load_inference_bundle(model_dir: str | os.PathLike[str]) -> tuple[keras.Model, dict[str, Any]]:
    """Load ``<model_dir>/wts.h5.zip`` (or an archive path) -> ``(diffraction_to_obj, params)``.

    The Keras model answers ``predict([X * intensity_scale, local_offsets])`` with
    ``(B, N, N, 1)`` complex64 patches; ``params.cfg`` is restored from the archive (CONFIG-001).
    """
    models, snapshot = workflows.load_inference_bundle(model_dir, backend=Backend())
    return models.diffraction_to_obj, snapshot
