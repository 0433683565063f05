"""The original ``ptycho.workflows.components`` on whichever backend is selected.

Adapters over ``ptycho_api.workflows``: the backend comes from the usual ladder
(``PTYCHO_BACKEND``, the config's ``backend`` field, the only installed backend), so the same
calls train and reconstruct with TensorFlow or PyTorch. Only ``load_inference_bundle`` adds
something: it hands back an ``InferenceModel`` whose ``predict`` answers the Keras-style call
``predict([X * intensity_scale, local_offsets])`` whatever the backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api import workflows
from ptycho_api.config import InferenceConfig, TrainingConfig
from ptycho_api.workflows import DataLike, save_outputs

__all__ = [
    "InferenceModel",
    "load_inference_bundle",
    "reassemble_cdi_image",
    "run_cdi_example",
    "save_outputs",
    "train_cdi_model",
]


@contextlib.contextmanager
def _scratch_output_dir(config: TrainingConfig) -> Iterator[TrainingConfig]:
    """A copy of ``config`` whose ``output_dir`` is a temporary directory, for the duration.

    The original's training wrote nothing; a backend's side files (Lightning checkpoints and
    logs) go to the scratch directory instead of the caller's working directory, and are
    removed afterwards. The copy gets the caller's ``output_dir`` back on exit, so the model's
    remembered config (written into the archive by ``model_manager.save``) shows it.
    """
    scratch = dataclasses.replace(config)
    with tempfile.TemporaryDirectory(prefix="ptycho-train-") as tmp:
        scratch.output_dir = Path(tmp)
        try:
            yield scratch
        finally:
            scratch.output_dir = config.output_dir


class InferenceModel:
    """A loaded model of either backend with the Keras ``predict`` signature the original had."""

    def __init__(self, backend: Any, model: Any, batch_size: int = 64) -> None:
        self.backend = backend
        self.model = model
        self.batch_size = batch_size

    def predict(
        self, inputs: Sequence[np.ndarray], batch_size: int | None = None, **_: object
    ) -> np.ndarray:
        """``[s * X (B, N, N, C) float32, local_offsets (B, 1, 2, C) float32]`` -> ``(B, N, N, 1)`` complex64."""
        if len(inputs) != 2:
            raise ValueError(
                f"predict: expected [X_scaled, local_offsets]; found {len(inputs)} inputs"
            )
        x_scaled = np.asarray(inputs[0], dtype=np.float32)
        offsets = np.asarray(inputs[1], dtype=np.float32)
        return self.backend.predict(
            self.model, x_scaled, offsets, batch_size=batch_size or self.batch_size
        )

    __call__ = predict


def load_inference_bundle(
    model_dir: str | os.PathLike[str],
) -> tuple[InferenceModel, dict[str, Any]]:
    """Load ``<model_dir>/wts.h5.zip`` (or an archive path) -> ``(model, params)``; restores ``params.cfg``.

    Archives of either backend load on either backend.
    """
    model, snapshot = workflows.load_inference_bundle(model_dir)
    backend, _, _ = workflows.current_model()
    return InferenceModel(backend, model), snapshot


def train_cdi_model(
    train_data: DataLike, test_data: DataLike | None, config: TrainingConfig
) -> dict[str, Any]:
    """Group (if needed), build and train a model -> the results dict of ``ptycho_api.workflows``.

    Nothing is written: ``ptycho.model_manager.save`` writes the archive.
    """
    with _scratch_output_dir(config) as scratch:
        return workflows.train_cdi_model(train_data, test_data, scratch, save=False)


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
    """Train and reconstruct the test scan (if any) -> ``(amplitude, phase, results)``.

    As in the original, nothing is written here (``ptycho.model_manager.save`` and
    ``save_outputs`` do that): a backend's training side files go to a scratch directory.
    Images are ``(S, S)`` float32 (phase in radians) or None without a scan to stitch.
    """
    with _scratch_output_dir(config) as scratch:
        return workflows.run_cdi_example(
            train_data, test_data, scratch, flip_x, flip_y, transpose, M, do_stitching, save=False
        )


def reassemble_cdi_image(
    test_data: DataLike,
    config: TrainingConfig | InferenceConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int = 20,
    coord_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict and stitch a scan with the model last trained or loaded -> ``(amplitude, phase, patches)``."""
    return workflows.reassemble_cdi_image(
        test_data, config, flip_x, flip_y, transpose, M, coord_scale
    )
