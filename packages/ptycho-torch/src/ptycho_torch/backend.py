"""The ``pytorch`` backend object registered under the ``ptycho.backends`` entry point.

Implements every operation of ``ptycho_api.backend.Backend`` with numpy at the boundary; the
model object it hands out is a ``ptycho_torch.model.PtychoPINN`` (the autoencoder).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

import ptycho_torch
from ptycho_api.backend import TrainingHistory
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.container import PtychoDataContainer
from ptycho_api.errors import BackendError
from ptycho_api.execution import ExecutionOptions, auto_batch_size
from ptycho_bundle.layout import archive_path_for
from ptycho_torch import archive, inference, kernels
from ptycho_torch.config import ExecutionConfig
from ptycho_torch.logs import LOG_FILTERS
from ptycho_torch.model import PtychoPINN, build_model
from ptycho_torch.training import train_model
from ptycho_torch.weights import export_weights, import_weights

__all__ = ["Backend"]

logger = logging.getLogger(__name__)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware (AVX-512 BF16 or AMX on a CPU).

    Elsewhere oneDNN emulates bfloat16 on a CPU, many times slower than float32. PyTorch
    releases before ``torch.cpu.get_capabilities`` (and before CUDA's ``including_emulation``)
    cannot say, and get False: float32.
    """
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:
            return False
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is None:
        return False
    capabilities = get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


class Backend:
    """PyTorch + Lightning implementation of the ``ptycho_api.backend.Backend`` protocol.

    ``execution`` (a ``ExecutionConfig``) sets devices, strategy and numerics for training
    and prediction; the default is safe on a CPU-only machine.
    """

    name = "pytorch"
    package_version = ptycho_torch.__version__
    log_filters = LOG_FILTERS

    def __init__(self, execution: ExecutionConfig | None = None) -> None:
        self.execution = (execution or ExecutionConfig()).validate()
        self.options: ExecutionOptions | None = None
        """The shared options last applied (``apply_execution``), or None."""
        self.last_trainer: lightning.Trainer | None = None
        """The Lightning ``Trainer`` of the last ``train`` call (checkpoint paths, ranks)."""

    def apply_execution(self, options: ExecutionOptions) -> None:
        """Map the shared execution options onto this backend (``ptycho_api.execution``).

        Sets ``execution`` (accelerator, precision, compile, channels-last, fused physics) and
        PyTorch's process-wide TF32 switches: on for ``tf32``, off otherwise (IEEE float32).
        ``options`` keeps what was applied, with precision ``auto`` resolved (``native_bf16``).
        """
        options = options.validate()
        device = self._device(options.device)
        if options.precision == "auto":
            options = replace(options, precision="bf16-mixed" if native_bf16(device) else "32")
            logger.debug("precision auto on %s: %s", device, options.precision)
        self.execution = replace(
            self.execution,
            accelerator="gpu" if device.type == "cuda" else "cpu",
            precision="bf16-mixed" if options.precision == "bf16-mixed" else "32-true",
            compile=False if options.compile == "off" else options.compile,
            channels_last=options.channels_last,
            fused_physics=self._fused(options.kernels, device, options.compile != "off"),
        ).validate()
        tf32 = options.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        self.options = options

    @staticmethod
    def _fused(kernels_option: str, device: torch.device, compiling: bool) -> bool:
        """Whether ``--kernels`` means our Triton kernels on ``device``; refuses what cannot run.

        ``auto`` leaves a compiled model to ``torch.compile``, which generates its own Triton
        code for the physics and would only break its graph around ours.
        """
        if kernels_option == "framework":
            return False
        importable = importlib.util.find_spec("triton") is not None
        usable = importable and (device.type == "cuda" or kernels.interpreter_requested())
        if kernels_option == "auto" and not (usable and device.type == "cuda" and not compiling):
            return False
        if not usable:
            found = (
                f"device {device} with TRITON_INTERPRET unset"
                if importable
                else "no importable triton package"
            )
            raise BackendError(
                "--kernels fused: expected the triton package and a CUDA device (or "
                f"TRITON_INTERPRET=1 to run them on the CPU, slowly); found {found}. Use "
                "--kernels framework or auto"
            )
        # Checked once per device and process against framework ops: a kernel that computes
        # anything else on this device is never used.
        tolerance = kernels.SELF_CHECK_TOLERANCE
        try:
            error = kernels.self_check(str(device))
        except Exception as exc:  # a kernel that does not compile or launch on this device
            error, found = float("inf"), f"{type(exc).__name__}: {exc}"
        else:
            found = f"a relative difference of {error:.2e} from PyTorch's ops"
        if error <= tolerance:
            return True
        message = (
            f"--kernels {kernels_option}: expected the fused kernels within {tolerance:g} of "
            f"PyTorch's ops on {device}; found {found}"
        )
        if kernels_option == "fused":
            raise BackendError(message + ". Use --kernels framework")
        logger.warning("%s; using framework ops", message)
        return False

    @staticmethod
    def _device(name: str) -> torch.device:
        if name == "gpu" and not torch.cuda.is_available():
            raise BackendError(
                "--device gpu: expected a CUDA GPU visible to PyTorch; found none "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})"
            )
        if name == "cpu" or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", 0)

    def predict_device(self) -> torch.device:
        """Where ``predict`` runs: the applied ``device`` option, else the model's own device."""
        return self._device(self.options.device) if self.options else torch.device("cpu")

    def auto_batch_size(self, N: int) -> int:
        """Inference batch for ``N x N`` patterns from the free memory of the predict device."""
        device = self.predict_device()
        free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
        return auto_batch_size(N, free)

    def framework_version(self) -> str:
        """PyTorch's version string."""
        return str(torch.__version__)

    def devices(self) -> list[str]:
        """Devices PyTorch can use: ``["cpu"]`` plus ``cuda:i`` for each visible GPU."""
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def build_model(
        self,
        model_config: ModelConfig,
        probe: np.ndarray,
        intensity_scale: float,
        *,
        probe_trainable: bool = False,
        intensity_scale_trainable: bool = True,
        seed: int | None = None,
    ) -> PtychoPINN:
        """A fresh ``PtychoPINN`` from ``model_config``, a raw ``(N, N)`` probe and s (B 6.3, B 7)."""
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
        execution: ExecutionConfig | None = None,
    ) -> TrainingHistory:
        """Train on ``train`` (validation: its last 5 %); ``test`` is not used for training.

        The model's lambda and probe become trained or constant per ``config``'s flags (decision 4).
        """
        history, self.last_trainer = train_model(
            model,
            train,
            config,
            execution=execution or self.execution,
            progress=progress,
            should_stop=should_stop,
        )
        return history

    def predict(
        self,
        model: PtychoPINN,
        x_scaled: np.ndarray,
        local_offsets: np.ndarray,
        *,
        batch_size: int = 64,
    ) -> np.ndarray:
        """``(B, N, N, 1)`` complex64 object patches from s*X ``(B,N,N,C)`` and ``(B,1,2,C)`` offsets."""
        if self.options is not None:
            model.to(self.predict_device())
            if self.options.channels_last:
                model.to(memory_format=torch.channels_last)
        model.fused_physics = self.execution.fused_physics
        cast = (
            torch.autocast(inference._model_device(model).type, dtype=torch.bfloat16)
            if self.execution.precision == "bf16-mixed"
            else contextlib.nullcontext()
        )
        with cast:
            return inference.predict_patches(
                model,
                x_scaled,
                local_offsets,
                batch_size=batch_size,
                compiled=self.execution.compile,
            )

    def reassemble_position(
        self, patches: np.ndarray, global_offsets: np.ndarray, M: int = 20
    ) -> np.ndarray:
        """``(S, S, 1)`` complex64 stitched image (B 9), computed on the first accelerator if any."""
        device = (
            "cuda" if torch.cuda.is_available() and self.execution.accelerator != "cpu" else "cpu"
        )
        return inference.reassemble_position(patches, global_offsets, M, device=device)

    def export_weights(self, model: PtychoPINN) -> dict[str, np.ndarray]:
        """Canonical weights (parity.md 1)."""
        return export_weights(model)

    def import_weights(self, model: PtychoPINN, weights: Mapping[str, np.ndarray]) -> None:
        """Load canonical weights strictly."""
        import_weights(model, weights)

    def save_archive(
        self,
        model: PtychoPINN,
        target: str | os.PathLike[str],
        config: TrainingConfig,
        *,
        history: TrainingHistory | None = None,
    ) -> Path:
        """Write ``wts.h5.zip`` (with the model's data scale s) through ``ptycho_bundle``; returns its path.

        Under multi-process training only global rank 0 writes; every rank gets the path.
        """
        if rank_zero_only.rank != 0:
            return archive_path_for(target)
        return archive.save_archive(model, target, config, history=history)

    def load_archive(self, path: str | os.PathLike[str]) -> tuple[PtychoPINN, dict[str, Any]]:
        """Load a format-2 archive of either backend -> ``(model, params snapshot)``."""
        return archive.load_archive(path)
