"""Seed-compatible PyTorch workflow entry points (DESIGN.md section 4; physics.md B 8, B 9).

Same signatures and return values as the TensorFlow ``ptycho_tf.workflows.components``:
``run_cdi_example_torch -> (recon_amp, recon_phase, results)``, ``train_cdi_model_torch ->
results``, ``_reassemble_cdi_image_torch -> (amp, phase, patches)``,
``load_inference_bundle_torch -> (model, params)``. Every entry point first applies CONFIG-001
(``update_legacy_dict(params.cfg, config)``). ``execution_config`` (keyword) selects devices.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

from ptycho_api import params
from ptycho_api.config import InferenceConfig, TrainingConfig, update_legacy_dict
from ptycho_api.container import PtychoDataContainer, create_ptycho_data_container
from ptycho_api.errors import DataError
from ptycho_api.probe import normalize_probe
from ptycho_api.rawdata import RawData
from ptycho_api.stitching import apply_stitch_options
from ptycho_torch import model_manager
from ptycho_torch.config import TorchExecutionConfig
from ptycho_torch.inference import (
    TorchModelWrapper,
    model_device,
    predict_patches,
    reassemble_position,
)
from ptycho_torch.model import DiffractionToObject, PtychoPINN, build_model
from ptycho_torch.training import train_model

__all__ = [
    "run_cdi_example_torch",
    "train_cdi_model_torch",
    "load_inference_bundle_torch",
    "_reassemble_cdi_image_torch",
]

logger = logging.getLogger(__name__)

_last_model: PtychoPINN | None = None
"""The model most recently trained or loaded here; used by ``_reassemble_cdi_image_torch`` when
no model is passed, as the original workflow uses its module-level model."""


def _as_container(
    data: RawData | PtychoDataContainer | Mapping[str, Any],
    config: TrainingConfig | InferenceConfig,
    *,
    evaluation: bool = False,
) -> PtychoDataContainer:
    if isinstance(data, PtychoDataContainer):
        return data
    if isinstance(data, RawData | Mapping):
        return create_ptycho_data_container(data, config, evaluation=evaluation)
    raise DataError(
        f"expected RawData, a grouped-data dict or a PtychoDataContainer; found {type(data).__name__}"
    )


def train_cdi_model_torch(
    train_data: RawData | PtychoDataContainer,
    test_data: RawData | PtychoDataContainer | None,
    config: TrainingConfig,
    *,
    execution_config: TorchExecutionConfig | None = None,
) -> dict[str, Any]:
    """Group, build and train (B 8 orchestration): -> results dict.

    ``results``: ``history`` (per-epoch loss, val_loss, lr), ``train_container``,
    ``test_container`` (None without test data), ``intensity_scale`` (s), ``model_instance``
    (the autoencoder), ``diffraction_to_obj``, ``trainer`` (the Lightning ``Trainer``).
    """
    global _last_model
    update_legacy_dict(params.cfg, config)
    train_container = _as_container(train_data, config)
    test_container = (
        _as_container(test_data, config, evaluation=True) if test_data is not None else None
    )
    scale = float(train_container.intensity_scale)
    params.cfg["intensity_scale"] = scale
    params.cfg["probe"] = normalize_probe(train_container.probe, config.model.probe_scale)[
        ..., None
    ]
    if config.seed is not None:
        L.seed_everything(config.seed, workers=True, verbose=False)
    model = build_model(
        config.model,
        train_container.probe,
        scale,
        probe_trainable=config.probe_trainable,
        intensity_scale_trainable=config.intensity_scale_trainable,
        seed=config.seed,
    )
    history, trainer = train_model(model, train_container, config, execution=execution_config)
    _last_model = model
    return {
        "history": history,
        "train_container": train_container,
        "test_container": test_container,
        "intensity_scale": scale,
        "model_instance": model,
        "diffraction_to_obj": DiffractionToObject(model),
        "trainer": trainer,
    }


def _reassemble_cdi_image_torch(
    test_data: RawData | PtychoDataContainer,
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
    """Predict and stitch a scan (B 9): -> ``(amplitude (S,S), phase (S,S), patches (B,N,N,1))``.

    ``transpose`` swaps the spatial axes of every patch; ``flip_x`` / ``flip_y`` negate x / y of
    the global offsets, which are then multiplied by ``coord_scale``. ``model`` defaults to the
    model last trained or loaded by this module. Stitching runs on the model's device.
    """
    update_legacy_dict(params.cfg, config)
    if isinstance(model, TorchModelWrapper):
        model = model.autoencoder
    model = model or _last_model
    if model is None:
        raise DataError("no model: train one, load one, or pass model=")
    container = _as_container(test_data, config)
    scale = float(params.cfg.get("intensity_scale") or container.intensity_scale)
    patches = predict_patches(
        model, container.X * np.float32(scale), container.local_offsets, batch_size=batch_size
    )
    patches, offsets = apply_stitch_options(
        patches,
        container.global_offsets,
        flip_x=flip_x,
        flip_y=flip_y,
        transpose=transpose,
        coord_scale=coord_scale,
    )
    stitched = reassemble_position(patches, offsets, M, device=model_device(model))[..., 0]
    return np.abs(stitched), np.angle(stitched), patches


def run_cdi_example_torch(
    train_data: RawData | PtychoDataContainer,
    test_data: RawData | PtychoDataContainer | None,
    config: TrainingConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    do_stitching: bool = False,
    *,
    execution_config: TorchExecutionConfig | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train, reconstruct, save: -> ``(recon_amp, recon_phase, results)``.

    The test scan (when given) is reconstructed and stitched; ``do_stitching=True`` without
    test data stitches the training scan instead; otherwise the images are None. The archive is
    written to ``<config.output_dir>/wts.h5.zip`` (by global rank 0 only under DDP); its path is
    ``results['archive_path']``. ``results`` also holds ``reconstructed_obj`` (patches) and
    ``global_offsets`` of the stitched scan.
    """
    update_legacy_dict(params.cfg, config)
    results = train_cdi_model_torch(
        train_data, test_data, config, execution_config=execution_config
    )
    model: PtychoPINN = results["model_instance"]
    recon_amp = recon_phase = None
    scan = results["test_container"]
    if scan is None and do_stitching:
        scan = results["train_container"]
    if scan is not None and rank_zero_only.rank == 0:
        recon_amp, recon_phase, patches = _reassemble_cdi_image_torch(
            scan, config, flip_x, flip_y, transpose, M, model=model
        )
        results["reconstructed_obj"] = patches
        results["global_offsets"] = scan.global_offsets
        results["recon_amp"], results["recon_phase"] = recon_amp, recon_phase
    if rank_zero_only.rank == 0:
        results["archive_path"] = model_manager.save_archive(
            model,
            Path(config.output_dir),
            config,
            intensity_scale=results["intensity_scale"],
            history=results["history"],
        )
    return recon_amp, recon_phase, results


def load_inference_bundle_torch(
    model_dir: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
) -> tuple[TorchModelWrapper, dict[str, Any]]:
    """Load ``<model_dir>/wts.h5.zip`` (or an archive path): -> ``(model, params)``.

    Restores ``params.cfg`` from the archive (CONFIG-001). ``model.predict([X_scaled,
    local_offsets])`` returns ``(B, N, N, 1)`` complex64 patches, as Keras' ``predict`` does.
    """
    global _last_model
    model, snapshot = model_manager.load_archive(model_dir, map_location=device)
    _last_model = model
    return TorchModelWrapper(model), snapshot
