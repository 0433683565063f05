"""Train on a simulated grid pair and score the reconstruction of a held-out object.

The published quality protocol (``benchmarks/quality.py``) and the backends' overlap tests share
this path: train on the training scan, predict the test scan's patches, stitch the groups that
lie on one test object and evaluate them with the original's metric conventions.

Both stitchings of the same patches are scored: ``crop``, the original's (each group keeps the
central tile of the outer stride), and ``probe``, every pixel of each patch's object box
weighted by the illumination its group received there (``reassemble_weighted``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api.config import TrainingConfig
from ptycho_api.container import create_ptycho_data_container
from ptycho_api.errors import ConfigError
from ptycho_api.grid import GridSimulation, object_groups
from ptycho_api.metrics import align_for_evaluation, eval_reconstruction
from ptycho_api.stitching import STITCH_MODES, reassemble_position, reassemble_weighted
from ptycho_api.workflows import predict_patches, train_cdi_model

__all__ = ["score_grid_model", "score_grid_training"]


def score_grid_training(
    backend: Any,
    train: GridSimulation,
    test: GridSimulation,
    config: TrainingConfig,
    object_index: int = 0,
    progress: Callable[[int, int, Mapping[str, float]], None] | None = None,
    stitch: str = "crop",
) -> dict[str, Any]:
    """Train ``config`` on ``train``, reconstruct test object ``object_index``: -> its scores.

    Returns ``metrics`` (``eval_reconstruction``'s dict: each value ``(amplitude, phase)``) of
    the ``stitch`` stitching (``"crop"``, the original's kept tile, or ``"probe"``), and
    ``metrics_by_stitch`` with both; ``history`` (the backend's per-epoch losses), ``image`` and
    ``truth`` (the aligned ``(H, W)`` complex reconstruction of ``stitch`` and the ground truth)
    and ``seconds`` (train, total).
    Nothing is saved: checkpoints and logs go to a private temporary folder, so that several
    runs may go at once. ``progress(epoch, nepochs, logs)`` is called after each epoch.
    """
    # Bad choices are refused before any training.
    _check_choices(test, object_index, stitch)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grid-quality-") as scratch:
        config = replace(config, output_dir=Path(scratch))
        results = train_cdi_model(
            train.raw, None, config, backend=backend, save=False, progress=progress
        )
    t_train = time.perf_counter() - t0
    scored = score_grid_model(
        backend,
        results["model"],
        results["intensity_scale"],
        test,
        config,
        object_index=object_index,
        stitch=stitch,
    )
    return {
        **scored,
        "history": results["history"],
        "seconds": {"train": t_train, "total": time.perf_counter() - t0},
    }


def score_grid_model(
    backend: Any,
    model: Any,
    intensity_scale: float,
    test: GridSimulation,
    config: TrainingConfig,
    object_index: int = 0,
    stitch: str = "crop",
) -> dict[str, Any]:
    """Reconstruct test object ``object_index`` with a (trained) ``model``: -> its scores.

    ``intensity_scale`` is the training data's s. Returns ``metrics``, ``metrics_by_stitch``,
    ``image`` and ``truth`` as :func:`score_grid_training` does; its weights are not changed
    (a backend may move the model to its prediction device: score a copy during training).
    """
    _check_choices(test, object_index, stitch)
    container = create_ptycho_data_container(test.raw, config, evaluation=True)
    patches = predict_patches(backend, model, container, intensity_scale)
    keep = object_groups(test.raw, container.nn_indices, object_index)
    stride = test.layout.stride
    patches = np.asarray(patches)[keep]
    offsets = np.asarray(container.global_offsets)[keep]
    canvases = {
        "crop": reassemble_position(patches, offsets, stride),
        "probe": reassemble_weighted(
            patches,
            offsets,
            np.asarray(container.probe),
            np.asarray(container.local_offsets)[keep],
            stride,
        ),
    }
    scored = {}
    for mode, canvas in canvases.items():
        image, truth = align_for_evaluation(canvas, test.raw.objectGuess, offsets, stride)
        scored[mode] = (image, truth, eval_reconstruction(image, truth))
    image, truth, metrics = scored[stitch]
    return {
        "metrics": metrics,
        "metrics_by_stitch": {mode: entry[2] for mode, entry in scored.items()},
        "image": image,
        "truth": truth,
    }


def _check_choices(test: GridSimulation, object_index: int, stitch: str) -> None:
    """``ConfigError`` for an unknown ``stitch`` or an ``object_index`` not on the test scan."""
    if stitch not in STITCH_MODES:
        raise ConfigError(f"stitch: expected one of {list(STITCH_MODES)}; found {stitch!r}")
    n_objects = len(test.objects)
    if isinstance(object_index, bool) or not isinstance(object_index, int):
        raise ConfigError(f"object_index: expected an integer; found {object_index!r}")
    if not 0 <= object_index < n_objects:
        raise ConfigError(
            f"object_index: expected 0 to {n_objects - 1} (the test scan has {n_objects} "
            f"object(s)); found {object_index}"
        )
