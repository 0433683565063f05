"""Seed-compatible workflow entry points with the original PtychoPINN-Torch names (PyTorch).

Thin adapters over :mod:`ptycho_api.workflows` with this backend: the same steps (CONFIG-001
first), the same results dict and the same exceptions as ``ptycho_tf.workflows.components``.
``execution_config`` (keyword) selects devices, precision and parallelism.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ptycho_api import workflows
from ptycho_api.config import InferenceConfig, TrainingConfig
from ptycho_api.workflows import DataLike
from ptycho_torch.backend import Backend
from ptycho_torch.config import ExecutionConfig
from ptycho_torch.model import PtychoPINN
from ptycho_torch.wrapper import TorchModelWrapper

__all__ = [
    "run_cdi_example_torch",
    "train_cdi_model_torch",
    "load_inference_bundle_torch",
    "_reassemble_cdi_image_torch",
]


def train_cdi_model_torch(
    train_data: DataLike,
    test_data: DataLike | None,
    config: TrainingConfig,
    *,
    execution_config: ExecutionConfig | None = None,
) -> dict[str, Any]:
    """Group (if needed), build and train a model -> ``ptycho_api.workflows.train_cdi_model``'s results.

    Nothing is written; ``run_cdi_example_torch`` or ``save_torch_bundle`` writes the archive.
    """
    return workflows.train_cdi_model(
        train_data, test_data, config, backend=Backend(execution_config), save=False
    )


def _reassemble_cdi_image_torch(
    test_data: DataLike,
    config: TrainingConfig | InferenceConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    coord_scale: float = 1.0,
    *,
    model: PtychoPINN | TorchModelWrapper | None = None,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict and stitch a scan (B 9) -> ``(amplitude (S, S) f32, phase (S, S) f32 rad, patches)``.

    Uses ``model`` or the one last trained or loaded in this process.
    """
    if isinstance(model, TorchModelWrapper):
        model = model.autoencoder
    backend = Backend() if model is not None else None
    return workflows.reassemble_cdi_image(
        test_data,
        config,
        flip_x,
        flip_y,
        transpose,
        M,
        coord_scale,
        model=model,
        backend=backend,
        batch_size=batch_size,
    )


def run_cdi_example_torch(
    train_data: DataLike,
    test_data: DataLike | None,
    config: TrainingConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    do_stitching: bool = False,
    *,
    execution_config: ExecutionConfig | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train, write ``<output_dir>/wts.h5.zip`` and reconstruct -> ``(recon_amp, recon_phase, results)``."""
    return workflows.run_cdi_example(
        train_data,
        test_data,
        config,
        flip_x,
        flip_y,
        transpose,
        M,
        do_stitching,
        backend=Backend(execution_config),
    )


def load_inference_bundle_torch(
    model_dir: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[TorchModelWrapper, dict[str, Any]]:
    """Load ``<model_dir>/wts.h5.zip`` (or an archive path) -> ``(model, params)``.

    ``model.predict([X_scaled, local_offsets])`` returns ``(B, N, N, 1)`` complex64 patches, as
    Keras' ``predict`` does; ``params.cfg`` is restored from the archive (CONFIG-001).
    """
    model, snapshot = workflows.load_inference_bundle(model_dir, backend=Backend())
    return TorchModelWrapper(model.to(device)), snapshot
