"""The ``tensorflow`` backend object registered under the ``ptycho.backends`` entry point.

Implements ``ptycho_api.backend.Backend``; numpy arrays cross every method boundary.
Execution options: ``TensorFlowBackend(jit_compile=...)`` (``"auto"``, True or False, or the
environment variable ``PTYCHO_TF_JIT`` = 1/0) chooses XLA compilation of the train and predict
steps. ``"auto"`` turns XLA on when a GPU is visible and off on CPU, where it measured slower.
Keras itself turns XLA off for training while op determinism is on (a seeded run).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tensorflow as tf

import ptycho_tf
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.container import PtychoDataContainer
from ptycho_tf import archive, inference, training
from ptycho_tf.model import PtychoModels, build_models
from ptycho_tf.weights import export_weights as _export_weights
from ptycho_tf.weights import import_weights as _import_weights

__all__ = ["TensorFlowBackend", "JIT_ENV_VAR"]

logger = logging.getLogger(__name__)

JIT_ENV_VAR = "PTYCHO_TF_JIT"
"""Environment override of the XLA choice: ``1``/``true`` or ``0``/``false``."""


def _resolve_jit(choice: bool | Literal["auto"]) -> bool:
    env = os.environ.get(JIT_ENV_VAR, "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    if choice == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return bool(choice)


class TensorFlowBackend:
    """TensorFlow/Keras 3 implementation of ``ptycho_api.backend.Backend``."""

    name = "tensorflow"
    package_version = ptycho_tf.__version__

    def __init__(
        self, *, jit_compile: bool | Literal["auto"] = "auto", verbose: int | str | None = None
    ) -> None:
        self.jit_compile = _resolve_jit(jit_compile)
        self.verbose = verbose
        # One cached compiled step: the last model predicted with (holding more would keep old
        # models alive).
        self._predictor: inference.PatchPredictor | None = None

    def framework_version(self) -> str:
        """TensorFlow's version string."""
        return tf.__version__

    def devices(self) -> list[str]:
        """Logical devices TensorFlow sees, e.g. ``["/device:CPU:0"]``."""
        return [d.name for d in tf.config.list_logical_devices()]

    def build_model(
        self,
        model_config: ModelConfig,
        probe: np.ndarray,
        intensity_scale: float,
        *,
        seed: int | None = None,
        probe_trainable: bool = False,
        intensity_scale_trainable: bool = True,
    ) -> PtychoModels:
        """Fresh models from a config, a raw ``(N, N)`` c64 probe and s; ``seed`` fixes the init."""
        return build_models(
            model_config,
            probe,
            intensity_scale,
            probe_trainable=probe_trainable,
            intensity_scale_trainable=intensity_scale_trainable,
            seed=seed,
        )

    def train(
        self,
        model: PtychoModels,
        train: PtychoDataContainer,
        test: PtychoDataContainer | None,
        config: TrainingConfig,
        *,
        progress: Callable[[int, int, Mapping[str, float]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict[str, list[float]]:
        """Keras ``fit`` per ``config``; returns per-epoch ``loss``, ``val_loss``, ``lr``."""
        return training.train_model(
            model,
            train,
            test,
            config,
            progress=progress,
            should_stop=should_stop,
            jit_compile=self.jit_compile,
            verbose=self.verbose,
        )

    def predict(
        self,
        model: PtychoModels,
        x_scaled: np.ndarray,
        local_offsets: np.ndarray,
        *,
        batch_size: int = 64,
    ) -> np.ndarray:
        """``(B, N, N, C)`` s*X and ``(B, 1, 2, C)`` offsets -> ``(B, N, N, 1)`` complex64 patches."""
        predictor = self._predictor
        if predictor is None or predictor.model is not model.diffraction_to_obj:
            predictor = inference.PatchPredictor(
                model.diffraction_to_obj, jit_compile=self.jit_compile
            )
            self._predictor = predictor
        return predictor(x_scaled, local_offsets, batch_size=batch_size)

    def reassemble_position(
        self, patches: np.ndarray, global_offsets: np.ndarray, M: int = 20
    ) -> np.ndarray:
        """Stitch ``(B, N, N, 1)`` c64 patches at ``(B, 1, 2, 1)`` f64 offsets -> ``(S, S, 1)`` c64."""
        return inference.reassemble_position(patches, global_offsets, M)

    def export_weights(self, model: PtychoModels) -> dict[str, np.ndarray]:
        """Canonical weights (parity.md section 1)."""
        return _export_weights(model)

    def import_weights(self, model: PtychoModels, weights: Mapping[str, np.ndarray]) -> None:
        """Strict import of canonical weights."""
        _import_weights(model, weights)

    def save_archive(
        self,
        model: PtychoModels,
        target: str | os.PathLike[str],
        config: TrainingConfig,
        *,
        history: Mapping[str, list[float]] | None = None,
    ) -> Path:
        """Write ``wts.h5.zip`` through ``ptycho_bundle``; returns its path."""
        return archive.save_archive(model, target, config, history=history)

    def load_archive(self, path: str | os.PathLike[str]) -> tuple[PtychoModels, dict[str, Any]]:
        """Load a format-2 archive of either backend; restores ``params.cfg``."""
        return archive.load_archive(path)
