"""Reconstruction outputs written by ``train``, ``reconstruct`` and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api.atomic import atomic_path
from ptycho_api.cli.console import write_json
from ptycho_api.metrics import align_for_evaluation, eval_reconstruction
from ptycho_api.plots import plot_reconstruction

__all__ = ["RECONSTRUCTION_NPZ", "write_reconstruction", "evaluate_against"]

RECONSTRUCTION_NPZ = "reconstruction.npz"


def evaluate_against(
    image: np.ndarray, ground_truth: np.ndarray, global_offsets: np.ndarray, M: int
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Crop both to the scanned region and compute B 12 metrics: -> (metrics, image, truth)."""
    crop, truth = align_for_evaluation(image, ground_truth, global_offsets, M)
    return eval_reconstruction(crop, truth), crop, truth


def write_reconstruction(
    directory: Path,
    canvas: np.ndarray,
    global_offsets: np.ndarray,
    M: int,
    *,
    ground_truth: np.ndarray | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    """Write ``reconstruction.npz`` + ``.png`` (and ``metrics.json`` with ground truth).

    ``canvas`` is the ``(S, S[, 1])`` complex stitched image. Returns paths and metrics.
    """
    image = np.squeeze(np.asarray(canvas)).astype(np.complex64)
    out: dict[str, Any] = {}
    npz = directory / RECONSTRUCTION_NPZ
    with atomic_path(npz, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp,
            object=image,
            amplitude=np.abs(image).astype(np.float32),
            phase=np.angle(image).astype(np.float32),
            global_offsets=np.asarray(global_offsets, dtype=np.float64),
            M=np.int64(M),
        )
    out["npz"] = npz
    if ground_truth is not None:
        metrics, crop, truth = evaluate_against(image, ground_truth, global_offsets, M)
        out["metrics"] = metrics
        out["metrics_json"] = write_json(directory / "metrics.json", metrics)
        out["png"] = plot_reconstruction(
            directory / "reconstruction.png",
            np.abs(crop),
            np.angle(crop),
            ground_truth=truth,
            title=title,
        )
    else:
        out["png"] = plot_reconstruction(
            directory / "reconstruction.png", np.abs(image), np.angle(image), title=title
        )
    return out
