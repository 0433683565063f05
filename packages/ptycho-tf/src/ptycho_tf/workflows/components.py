"""Seed-compatible workflow functions with the original PtychoPINN names (DESIGN.md section 4).

Every entry point first applies CONFIG-001 (``update_legacy_dict(params.cfg, config)``). The
last model trained or loaded in the process is remembered, as the original's module-level model
was, so ``reassemble_cdi_image`` and ``ptycho_tf.model_manager.save`` work without passing it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ptycho_api import params
from ptycho_api.config import InferenceConfig, TrainingConfig, update_legacy_dict
from ptycho_api.container import PtychoDataContainer, create_ptycho_data_container
from ptycho_api.probe import normalize_probe
from ptycho_api.rawdata import RawData
from ptycho_api.stitching import apply_stitch_options
from ptycho_tf.backend import TensorFlowBackend
from ptycho_tf.model import PtychoModels

__all__ = [
    "run_cdi_example",
    "train_cdi_model",
    "reassemble_cdi_image",
    "load_inference_bundle",
    "current_model",
]

logger = logging.getLogger(__name__)

ARCHIVE_NAME = "wts.h5.zip"

_current: dict[str, Any] = {"models": None, "config": None}


def _remember(models: PtychoModels, config: TrainingConfig | None) -> None:
    _current["models"] = models
    _current["config"] = config


def current_model() -> tuple[PtychoModels | None, TrainingConfig | None]:
    """The models last trained or loaded in this process and their training config (or Nones)."""
    return _current["models"], _current["config"]


def _container(
    data: RawData | PtychoDataContainer,
    config: TrainingConfig | InferenceConfig,
    *,
    evaluation: bool = False,
) -> PtychoDataContainer:
    if isinstance(data, PtychoDataContainer):
        return data
    return create_ptycho_data_container(data, config, evaluation=evaluation)


def train_cdi_model(
    train_data: RawData | PtychoDataContainer,
    test_data: RawData | PtychoDataContainer | None,
    config: TrainingConfig,
) -> dict[str, Any]:
    """Group (if needed), build and train a model -> results dict.

    ``results``: ``history`` (per-epoch loss, val_loss, lr), ``train_container``,
    ``test_container`` (or None), ``intensity_scale`` (s), ``models`` (``PtychoModels``) and
    ``model_instance`` (the Keras autoencoder).
    """
    update_legacy_dict(params.cfg, config)
    train_container = _container(train_data, config)
    test_container = None if test_data is None else _container(test_data, config, evaluation=True)
    scale = float(train_container.intensity_scale)
    params.cfg["intensity_scale"] = scale
    # The original kept the normalised probe in the global dict; callers may read it.
    params.cfg["probe"] = normalize_probe(train_container.probe, config.model.probe_scale)[
        ..., None
    ]
    backend = TensorFlowBackend()
    models = backend.build_model(
        config.model,
        train_container.probe,
        scale,
        seed=config.seed,
        probe_trainable=config.probe_trainable,
        intensity_scale_trainable=config.intensity_scale_trainable,
    )
    history = backend.train(models, train_container, test_container, config)
    _remember(models, config)
    return {
        "history": history,
        "train_container": train_container,
        "test_container": test_container,
        "intensity_scale": scale,
        "models": models,
        "model_instance": models.autoencoder,
    }


def reassemble_cdi_image(
    test_data: RawData | PtychoDataContainer,
    config: TrainingConfig | InferenceConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    coord_scale: float = 1.0,
    *,
    model: PtychoModels | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reconstruct and stitch a scan (B 9) -> ``(amplitude (S, S) f32, phase (S, S) f32 rad, patches)``.

    ``patches`` are the ``(B, N, N, 1)`` complex64 object patches (after ``transpose``). Uses
    ``model`` or the last trained/loaded one. ``flip_x`` / ``flip_y`` negate x / y of the global
    offsets, then all offsets are multiplied by ``coord_scale``; ``transpose`` swaps the two
    spatial axes of every patch.
    """
    update_legacy_dict(params.cfg, config)
    models = model if model is not None else _current["models"]
    if models is None:
        raise RuntimeError(
            "reassemble_cdi_image: no model; train one (train_cdi_model) or load one "
            "(load_inference_bundle) first, or pass model="
        )
    container = _container(test_data, config)
    backend = TensorFlowBackend()
    patches = backend.predict(
        models, container.X * np.float32(models.intensity_scale), container.local_offsets
    )
    patches, offsets = apply_stitch_options(
        patches,
        container.global_offsets,
        flip_x=flip_x,
        flip_y=flip_y,
        transpose=transpose,
        coord_scale=coord_scale,
    )
    image = backend.reassemble_position(patches, offsets, M)[..., 0]
    return np.abs(image).astype(np.float32), np.angle(image).astype(np.float32), patches


def run_cdi_example(
    train_data: RawData | PtychoDataContainer,
    test_data: RawData | PtychoDataContainer | None,
    config: TrainingConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    do_stitching: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train, reconstruct, and write ``<output_dir>/wts.h5.zip``.

    Returns ``(recon_amp, recon_phase, results)``: the stitched amplitude and phase ``(S, S)``
    of the test scan when it is given; ``do_stitching=True`` without test data stitches the
    training scan instead; otherwise the images are None (same rule as the PyTorch backend).
    ``results`` is ``train_cdi_model``'s plus ``archive_path`` and, when stitched,
    ``obj_patches``.
    """
    update_legacy_dict(params.cfg, config)
    results = train_cdi_model(train_data, test_data, config)
    recon_amp = recon_phase = None
    scan = results["test_container"]
    if scan is None and do_stitching:
        scan = results["train_container"]
    if scan is not None:
        recon_amp, recon_phase, patches = reassemble_cdi_image(
            scan, config, flip_x, flip_y, transpose, M, model=results["models"]
        )
        results["obj_patches"] = patches
    results["archive_path"] = TensorFlowBackend().save_archive(
        results["models"], Path(config.output_dir), config, history=results["history"]
    )
    return recon_amp, recon_phase, results


def load_inference_bundle(model_dir: str | os.PathLike[str]) -> tuple[keras.Model, dict[str, Any]]:
    """Load ``<model_dir>/wts.h5.zip`` (or an archive path) -> ``(diffraction_to_obj, params)``.

    The Keras model answers ``predict([X * intensity_scale, local_offsets])`` with
    ``(B, N, N, 1)`` complex64 patches; ``params.cfg`` is restored from the archive (CONFIG-001).
    """
    models, snapshot = TensorFlowBackend().load_archive(model_dir)
    _remember(models, None)
    return models.diffraction_to_obj, snapshot
