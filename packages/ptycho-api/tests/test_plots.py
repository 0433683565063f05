"""PNG figures: reconstruction and training history, written atomically."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from ptycho_api import DataError
from ptycho_api.plots import plot_reconstruction, plot_training_history

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _image() -> np.ndarray:
    rows, cols = np.indices((40, 50))
    return (1 + 0.5 * np.sin(rows / 5.0)) * np.exp(1j * 0.02 * cols)


def _assert_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    # Only the final file is left in the directory: no temporary names.
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    return imread(path)


def test_reconstruction_figure(tmp_path: Path) -> None:
    z = _image()
    path = plot_reconstruction(tmp_path / "recon.png", np.abs(z), np.angle(z), title="test")
    pixels = _assert_png(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_reconstruction_figure_with_ground_truth_is_taller(tmp_path: Path) -> None:
    z = _image()
    plain = imread(plot_reconstruction(tmp_path / "a" / "plain.png", np.abs(z), np.angle(z)))
    full = plot_reconstruction(
        tmp_path / "b" / "gt.png", np.abs(z), np.angle(z), ground_truth=z * 1.1
    )
    pixels = _assert_png(full)
    # Three rows of panels (reconstruction, ground truth, errors) instead of one.
    assert pixels.shape[0] > 2 * plain.shape[0]


def test_uncovered_canvas_pixels_are_left_blank(tmp_path: Path) -> None:
    # A stitched canvas is exactly 0 where no patch lands; a tiny positive value is a real
    # (dark) pixel. Only the latter may be drawn black by the gray colour map.
    z = _image()
    uncovered, dark = z.copy(), z.copy()
    uncovered[:, :20] = 0
    dark[:, :20] = 1e-12
    figures = {}
    for name, image in (("uncovered", uncovered), ("dark", dark)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no all-NaN or invalid-value warnings either
            path = plot_reconstruction(
                tmp_path / name / "r.png", np.abs(image), np.angle(image), ground_truth=z
            )
        figures[name] = imread(path)[..., :3]
    black = {k: int((v < 0.05).all(axis=-1).sum()) for k, v in figures.items()}
    # The 20 x 40 dark block fills thousands of figure pixels; text and axes are common to both.
    assert black["uncovered"] + 2000 < black["dark"], black


def test_all_zero_reconstruction_still_plots(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plot_reconstruction(tmp_path / "zero.png", np.zeros((8, 8)), np.zeros((8, 8)))
    _assert_png(path)


def test_reconstruction_figure_rejects_mismatched_shapes(tmp_path: Path) -> None:
    target = tmp_path / "recon.png"
    target.write_bytes(b"previous")
    with pytest.raises(DataError, match="same|shape"):
        plot_reconstruction(target, np.ones((10, 10)), np.ones((10, 12)))
    with pytest.raises(DataError, match="ground_truth of shape"):
        plot_reconstruction(
            target, np.ones((10, 10)), np.ones((10, 10)), ground_truth=np.ones((9, 9))
        )
    assert target.read_bytes() == b"previous"  # an existing file is left untouched


def test_training_history_figure(tmp_path: Path) -> None:
    history = {"loss": [5.0, 3.0, 2.0, 1.5], "val_loss": [5.5, 3.5, float("nan"), 2.0]}
    _assert_png(plot_training_history(tmp_path / "history.png", history))


def test_training_history_with_negative_values(tmp_path: Path) -> None:
    # Poisson NLL without the log-factorial term can be negative: linear axis then.
    _assert_png(plot_training_history(tmp_path / "h.png", {"loss": [-10.0, -12.0, -12.5]}))


def test_training_history_needs_a_curve(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least one non-empty loss curve"):
        plot_training_history(tmp_path / "h.png", {"loss": []})
