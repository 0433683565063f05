"""The ``tensorflow`` backend object registered under the ``ptycho.backends`` entry point.

Implements the ``ptycho_api.backend.Backend`` protocol; numpy arrays cross every method
boundary. Execution options (XLA, verbosity) are a :class:`ptycho_tf.config.ExecutionConfig`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

import ptycho_tf
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.container import PtychoDataContainer
from ptycho_api.errors import BackendError
from ptycho_api.execution import ExecutionOptions, auto_batch_size
from ptycho_tf import archive, inference, training
from ptycho_tf.address_space import require_address_space
from ptycho_tf.config import ExecutionConfig
from ptycho_tf.logs import LOG_FILTERS
from ptycho_tf.model import PtychoPINN, build_model
from ptycho_tf.weights import export_weights as _export_weights
from ptycho_tf.weights import import_weights as _import_weights

__all__ = ["Backend"]

logger = logging.getLogger(__name__)

GPU_BATCH = 1024
"""Automatic inference batch on a GPU at N = 64 (scaled by 64^2 / N^2 for other sizes)."""


class Backend:
    """TensorFlow/Keras 3 implementation of the ``ptycho_api.backend.Backend`` protocol."""

    name = "tensorflow"
    package_version = ptycho_tf.__version__
    log_filters = LOG_FILTERS

    def __init__(self, execution: ExecutionConfig | None = None) -> None:
        require_address_space("run")
        self.execution = (execution or ExecutionConfig()).validate()
        self.jit_compile = self.execution.jit_requested(
            bool(tf.config.list_physical_devices("GPU"))
        )
        self.options: ExecutionOptions | None = None
        """The shared options last applied (``apply_execution``), or None."""
        self._placement: str | None = None

    def apply_execution(self, options: ExecutionOptions) -> None:
        """Map the shared execution options onto TensorFlow (``ptycho_api.execution``).

        ``device`` places ops on ``/CPU:0`` or ``/GPU:0``; ``precision`` sets TensorFlow's
        process-wide TF32 switch (on for ``tf32`` only); ``compile`` other than ``off`` or
        ``kernels`` ``fused`` turns on XLA, which fuses the physics around the network (there
        are no hand-written TensorFlow kernels); ``channels_last`` is Keras' own layout. ``bf16-mixed`` is refused: the Keras
        model's layers are built float32 and their complex physics has no bfloat16 kernels, so
        ``auto`` is ``32`` (kept resolved in ``options``).
        """
        options = options.validate()
        if options.precision == "bf16-mixed":
            raise BackendError(
                "--precision bf16-mixed: expected 32 or tf32 with the TensorFlow backend (its "
                "model is built in float32); found bf16-mixed. Use the PyTorch backend for "
                "bfloat16, or --precision tf32"
            )
        if options.precision == "auto":
            options = replace(options, precision="32")
        self._placement = self._device(options.device)
        tf.config.experimental.enable_tensor_float_32_execution(options.precision == "tf32")
        self.jit_compile = options.compile != "off" or options.kernels == "fused"
        self.options = options

    @staticmethod
    def _device(name: str) -> str | None:
        gpus = tf.config.list_logical_devices("GPU")
        if name == "gpu" and not gpus:
            raise BackendError(
                f"--device gpu: expected a GPU visible to TensorFlow; found none (tensorflow "
                f"{tf.__version__}; on Linux install tensorflow[and-cuda])"
            )
        if name == "cpu":
            return "/CPU:0"
        return "/GPU:0" if gpus else None

    def _placed(self) -> Any:
        return tf.device(self._placement) if self._placement else contextlib.nullcontext()

    def auto_batch_size(self, N: int) -> int:
        """Inference batch for ``N x N`` patterns: 64 on a CPU, ``GPU_BATCH`` on a GPU.

        TensorFlow's allocator reserves most of a GPU's memory when it starts, so its free
        memory says nothing about what a batch may use; 1,024 groups of 64 x 64 measured near
        the peak rate of PyTorch on one H200 and need about 1 GB.
        """
        if self._placement != "/GPU:0":
            return auto_batch_size(N, None)
        return max(1, GPU_BATCH * 64 * 64 // (N * N))

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
    ) -> PtychoPINN:
        """Fresh models from a config, a raw ``(N, N)`` c64 probe and s; ``seed`` fixes the init."""
        return build_model(
            model_config,
            probe,
            intensity_scale,
            probe_trainable=probe_trainable,
            intensity_scale_trainable=intensity_scale_trainable,
            seed=seed,
        )

    def train(
        self,
        model: PtychoPINN,
        train: PtychoDataContainer,
        test: PtychoDataContainer | None,
        config: TrainingConfig,
        *,
        progress: Callable[[int, int, Mapping[str, float]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict[str, list[float]]:
        """Keras ``fit`` per ``config``; returns per-epoch ``loss``, ``val_loss``, ``lr``."""
        require_address_space("train")
        with self._placed():
            return training.train_model(
                model,
                train,
                test,
                config,
                progress=progress,
                should_stop=should_stop,
                jit_compile=self.jit_compile,
                verbose=self.execution.verbose,
            )

    def predict(
        self,
        model: PtychoPINN,
        x_scaled: np.ndarray,
        local_offsets: np.ndarray,
        *,
        batch_size: int = 64,
    ) -> np.ndarray:
        """``(B, N, N, C)`` s*X and ``(B, 1, 2, C)`` offsets -> ``(B, N, N, 1)`` complex64 patches."""
        with self._placed():
            return inference.predict_patches(
                model, x_scaled, local_offsets, batch_size=batch_size, compiled=self.jit_compile
            )

    def reassemble_position(
        self, patches: np.ndarray, global_offsets: np.ndarray, M: int = 20
    ) -> np.ndarray:
        """Stitch ``(B, N, N, 1)`` c64 patches at ``(B, 1, 2, 1)`` f64 offsets -> ``(S, S, 1)`` c64."""
        return inference.reassemble_position(patches, global_offsets, M)

    def export_weights(self, model: PtychoPINN) -> dict[str, np.ndarray]:
        """Canonical weights (parity.md section 1)."""
        return _export_weights(model)

    def import_weights(self, model: PtychoPINN, weights: Mapping[str, np.ndarray]) -> None:
        """Strict import of canonical weights."""
        _import_weights(model, weights)

    def save_archive(
        self,
        model: PtychoPINN,
        target: str | os.PathLike[str],
        config: TrainingConfig,
        *,
        history: Mapping[str, list[float]] | None = None,
    ) -> Path:
        """Write ``wts.h5.zip`` (with the model's data scale s) through ``ptycho_bundle``; returns its path."""
        return archive.save_archive(model, target, config, history=history)

    def load_archive(self, path: str | os.PathLike[str]) -> tuple[PtychoPINN, dict[str, Any]]:
        """Load a format-2 archive of either backend -> ``(models, params snapshot)``."""
        return archive.load_archive(path)
