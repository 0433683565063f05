"""PNG figures: reconstruction (amplitude, phase, ground truth, error maps) and loss curves.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend
change, safe in worker processes) and written atomically: temporary file, then rename.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ptycho_api.atomic import atomic_path
from ptycho_api.errors import DataError
from ptycho_api.metrics import match_amplitude, remove_phase_plane

__all__ = ["save_figure", "plot_reconstruction", "plot_training_history"]


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Render ``fig`` as PNG to ``path`` atomically; returns the path."""
    FigureCanvasAgg(fig)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _panel(
    fig: Figure,
    ax_index: tuple[int, int, int],
    image: np.ndarray,
    title: str,
    cmap: str,
    *,
    symmetric: bool = False,
) -> None:
    ax = fig.add_subplot(*ax_index)
    limits = {}
    if symmetric:
        # Error maps: white means zero error, whatever the sign of the largest deviation.
        bound = float(np.nanmax(np.abs(image))) or 1.0
        limits = {"vmin": -bound, "vmax": bound}
    shown = ax.imshow(image, cmap=cmap, **limits)
    ax.set_title(title)
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)


def plot_reconstruction(
    path: str | os.PathLike[str],
    amplitude: np.ndarray,
    phase: np.ndarray,
    *,
    ground_truth: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Save a reconstruction figure: amplitude and phase ``(H, W)`` (phase in radians).

    With ``ground_truth`` (complex ``(H, W)``, same grid, e.g. from ``align_for_evaluation``) a
    second row shows its amplitude and phase and a third the error maps, computed with the
    metric conventions (amplitude mean-matched, phase planes removed). Pixels no patch covers
    (amplitude exactly 0 on a stitched canvas) are left blank in the reconstruction and error
    panels, so the colour scales describe the scanned region. Returns the path.
    """
    amplitude = np.squeeze(np.asarray(amplitude, dtype=np.float64))
    phase = np.squeeze(np.asarray(phase, dtype=np.float64))
    if amplitude.ndim != 2 or amplitude.shape != phase.shape:
        raise DataError(
            f"plot_reconstruction: expected amplitude and phase of one (H, W) shape; found "
            f"{amplitude.shape} and {phase.shape}"
        )
    rows = 1
    if ground_truth is not None:
        ground_truth = np.squeeze(np.asarray(ground_truth))
        if ground_truth.shape != amplitude.shape:
            raise DataError(
                f"plot_reconstruction: expected ground_truth of shape {amplitude.shape}; "
                f"found {ground_truth.shape}"
            )
        rows = 3
    uncovered = amplitude == 0
    if uncovered.all():
        uncovered[:] = False

    def shown(image: np.ndarray) -> np.ndarray:
        return np.where(uncovered, np.nan, image)

    fig = Figure(figsize=(9, 4 * rows))
    _panel(fig, (rows, 2, 1), shown(amplitude), "amplitude (a.u.)", "gray")
    _panel(fig, (rows, 2, 2), shown(phase), "phase (rad)", "twilight")
    if ground_truth is not None:
        truth_amp = np.abs(ground_truth)
        _panel(fig, (rows, 2, 3), truth_amp, "ground truth amplitude (a.u.)", "gray")
        _panel(fig, (rows, 2, 4), np.angle(ground_truth), "ground truth phase (rad)", "twilight")
        amp_error = match_amplitude(amplitude, truth_amp) - truth_amp
        phase_error = remove_phase_plane(phase) - remove_phase_plane(np.angle(ground_truth))
        _panel(
            fig,
            (rows, 2, 5),
            shown(amp_error),
            "amplitude error (mean-matched, a.u.)",
            "RdBu_r",
            symmetric=True,
        )
        _panel(
            fig,
            (rows, 2, 6),
            shown(phase_error),
            "phase error (planes removed, rad)",
            "RdBu_r",
            symmetric=True,
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_training_history(
    path: str | os.PathLike[str],
    history: Mapping[str, Sequence[float]],
    *,
    title: str | None = None,
) -> Path:
    """Save loss curves: ``history`` maps a name (e.g. ``loss``, ``val_loss``) to per-epoch values.

    Epochs are numbered from 1; the y axis is logarithmic when every value is positive.
    Non-finite values are left out of the curve. Returns the path.
    """
    curves = {name: np.asarray(values, dtype=np.float64) for name, values in history.items()}
    if not curves or all(len(v) == 0 for v in curves.values()):
        raise DataError(
            "plot_training_history: expected at least one non-empty loss curve; found none"
        )
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    finite_values = []
    for name, values in curves.items():
        epochs = np.arange(1, len(values) + 1)
        ok = np.isfinite(values)
        ax.plot(epochs[ok], values[ok], marker="o", markersize=3, label=name)
        finite_values.append(values[ok])
    every = np.concatenate(finite_values)
    if every.size and np.all(every > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "training history")
    fig.tight_layout()
    return save_figure(fig, path)
