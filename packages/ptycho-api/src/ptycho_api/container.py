"""``PtychoDataContainer``: the numpy arrays both backends train and infer on (physics.md B 5).

Grouping, normalisation and this container are shared numpy code, so the TensorFlow and
PyTorch backends see bit-identical inputs (DESIGN.md section 5).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api import params
from ptycho_api.atomic import atomic_path
from ptycho_api.config import InferenceConfig, TrainingConfig
from ptycho_api.errors import ConfigError, DataError
from ptycho_api.normalization import intensity_scale, norm_from_data
from ptycho_api.rawdata import RawData

__all__ = ["PtychoDataContainer", "create_ptycho_data_container"]

logger = logging.getLogger(__name__)


@dataclass
class PtychoDataContainer:
    """Grouped, normalised data ready for a model (B 5.2). B groups of C = gridsize^2 patterns.

    Both backends consume these arrays directly: model input is ``intensity_scale * X`` with
    ``local_offsets``; ``global_offsets`` place the reconstructed patches when stitching.
    """

    X: np.ndarray
    """``(B, N, N, C)`` float32 normalised amplitudes (mean over patterns of sum X^2 = (N/2)^2)."""
    Y_I: np.ndarray
    """``(B, N, N, C)`` float32 ground-truth amplitude (ones when there is no ground truth)."""
    Y_phi: np.ndarray
    """``(B, N, N, C)`` float32 ground-truth phase, radians (zeros when there is none)."""
    coords_nominal: np.ndarray
    """``(B, 1, 2, C)`` float32 ``m - r`` of the nominal (start) positions, pixels [x, y]."""
    coords_true: np.ndarray
    """``(B, 1, 2, C)`` float32, identical to ``coords_nominal`` (B 5.2)."""
    probe: np.ndarray
    """``(N, N)`` complex64 probe as given (un-normalised; the model normalises it, B 6.3)."""
    norm_Y_I: float
    """``sqrt(nphotons / mean sum X^2)``, computed from the data (B 5.2)."""
    intensity_scale: float
    """s = sqrt(nphotons) / (N/2) (decision 11): scales X to sqrt(counts)."""
    nn_indices: np.ndarray
    """``(B, C)`` int64 indices of each group's members in the scan."""
    global_offsets: np.ndarray
    """``(B, 1, 2, 1)`` float64 group centres m, pixels [x, y] (for stitching)."""
    local_offsets: np.ndarray
    """``(B, 1, 2, C)`` float32 ``m - r`` of the actual positions, pixels [x, y] (model input)."""
    has_ground_truth: bool = False
    """Whether ``Y_I`` / ``Y_phi`` hold real ground truth rather than placeholders."""
    YY_full: None = None
    """Placeholder kept for callers of the original container."""

    def __post_init__(self) -> None:
        B, N, _, C = self.X.shape
        expected = {
            "X": ((B, N, N, C), np.float32),
            "Y_I": ((B, N, N, C), np.float32),
            "Y_phi": ((B, N, N, C), np.float32),
            "coords_nominal": ((B, 1, 2, C), np.float32),
            "coords_true": ((B, 1, 2, C), np.float32),
            "probe": ((N, N), np.complex64),
            "nn_indices": ((B, C), np.int64),
            "global_offsets": ((B, 1, 2, 1), np.float64),
            "local_offsets": ((B, 1, 2, C), np.float32),
        }
        for name, (shape, dtype) in expected.items():
            value = getattr(self, name)
            if value.shape != shape or value.dtype != dtype:
                raise DataError(
                    f"PtychoDataContainer.{name}: expected shape {shape} {np.dtype(dtype)}; "
                    f"found shape {value.shape} {value.dtype}"
                )

    @property
    def Y(self) -> np.ndarray:
        """``(B, N, N, C)`` complex64 ground-truth patches ``Y_I * exp(i Y_phi)``."""
        return (self.Y_I * np.exp(1j * self.Y_phi)).astype(np.complex64)

    @property
    def coords(self) -> np.ndarray:
        """Alias of ``coords_nominal`` (B 5.2)."""
        return self.coords_nominal

    @property
    def N(self) -> int:
        """Pattern side in pixels."""
        return int(self.X.shape[1])

    @property
    def n_channels(self) -> int:
        """C = gridsize^2 patterns per group."""
        return int(self.X.shape[3])

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def to_npz(self, path: str | os.PathLike[str]) -> Path:
        """Write the arrays of B 5.2 (``to_npz`` keys) to an NPZ file, atomically."""
        arrays = {
            "X": self.X,
            "Y_I": self.Y_I,
            "Y_phi": self.Y_phi,
            "norm_Y_I": np.float64(self.norm_Y_I),
            "intensity_scale": np.float64(self.intensity_scale),
            "coords_nominal": self.coords_nominal,
            "coords_true": self.coords_true,
            "nn_indices": self.nn_indices,
            "global_offsets": self.global_offsets,
            "local_offsets": self.local_offsets,
            "probe": self.probe,
        }
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return path


def _grouping_kwargs(config: TrainingConfig | InferenceConfig) -> dict[str, Any]:
    return {
        "N": config.model.N,
        "K": config.neighbor_count,
        "nsamples": config.n_groups,
        "gridsize": config.model.gridsize,
        "seed": config.seed,
        "sequential_sampling": getattr(config, "sequential_sampling", False),
        "enable_oversampling": config.enable_oversampling,
        "neighbor_pool_size": config.neighbor_pool_size,
    }


def create_ptycho_data_container(
    raw_or_grouped: RawData | Mapping[str, Any],
    config: TrainingConfig | InferenceConfig,
    *,
    probe: np.ndarray | None = None,
    nphotons: float | None = None,
    evaluation: bool = False,
) -> PtychoDataContainer:
    """Group (if given ``RawData``) and package data for a model: -> ``PtychoDataContainer``.

    ``RawData`` is grouped with the config's N, gridsize, ``neighbor_count`` (K), ``n_groups``
    (None: one group per scan point), ``seed``, ``sequential_sampling``, ``enable_oversampling``
    and ``neighbor_pool_size``. ``evaluation=True`` (a test scan grouped with the training
    config) ignores ``n_groups`` and makes one group per scan position (one per fixed group of
    a scan that has ``groups``), so the whole scan is reconstructed. A grouped dict (from
    ``generate_grouped_data``) is used as is.
    ``probe`` defaults to the data's ``probeGuess``; ``nphotons`` to ``config.nphotons``
    (``TrainingConfig``) or else ``params.cfg['nphotons']`` (an ``InferenceConfig`` has none; an
    archive's parameters restore it there).
    """
    if not isinstance(config, TrainingConfig | InferenceConfig):
        raise ConfigError(
            f"config: expected a TrainingConfig or InferenceConfig; found {type(config).__name__}"
        )
    config.validate()
    if isinstance(raw_or_grouped, RawData):
        kwargs = _grouping_kwargs(config)
        if evaluation:
            raw = raw_or_grouped
            whole = len(raw.groups) if raw.groups is not None else len(raw.xcoords)
            logger.debug("grouping the test scan: %d groups, one per position", whole)
            kwargs["nsamples"] = whole
        grouped = raw_or_grouped.generate_grouped_data(**kwargs)
    elif isinstance(raw_or_grouped, Mapping):
        grouped = raw_or_grouped
    else:
        raise DataError(
            "create_ptycho_data_container: expected RawData or a grouped-data dict; "
            f"found {type(raw_or_grouped).__name__}"
        )
    missing = [
        k for k in ("X_full", "coords_relative", "coords_offsets", "nn_indices") if k not in grouped
    ]
    if missing:
        raise DataError(f"grouped data: missing key(s) {missing}; found keys {sorted(grouped)}")

    X = np.asarray(grouped["X_full"], dtype=np.float32)
    B, N, _, C = X.shape
    if N != config.model.N or C != config.model.n_channels:
        raise DataError(
            f"grouped data: expected N = {config.model.N} and C = gridsize**2 = "
            f"{config.model.n_channels} (from the config); found N = {N}, C = {C}"
        )
    if probe is None:
        probe = grouped.get("probeGuess")
        if probe is None:
            raise DataError("grouped data: no 'probeGuess'; pass probe= explicitly")
    probe = np.asarray(probe).astype(np.complex64)
    if probe.shape != (N, N):
        raise DataError(f"probe: expected shape ({N}, {N}); found {probe.shape}")
    if nphotons is None:
        nphotons = getattr(config, "nphotons", None) or float(params.get("nphotons"))

    ground_truth = grouped.get("Y")
    if ground_truth is not None:
        Y_I = np.abs(ground_truth).astype(np.float32)
        Y_phi = np.angle(ground_truth).astype(np.float32)
    else:
        Y_I = np.ones_like(X)
        Y_phi = np.zeros_like(X)
    nominal = np.asarray(
        grouped.get("coords_start_relative", grouped["coords_relative"]), np.float32
    )
    container = PtychoDataContainer(
        X=X,
        Y_I=Y_I,
        Y_phi=Y_phi,
        coords_nominal=nominal,
        coords_true=nominal.copy(),
        probe=probe,
        norm_Y_I=norm_from_data(X, nphotons),
        intensity_scale=intensity_scale(nphotons, N),
        nn_indices=np.asarray(grouped["nn_indices"], dtype=np.int64),
        global_offsets=np.asarray(grouped["coords_offsets"], dtype=np.float64),
        local_offsets=np.asarray(grouped["coords_relative"], dtype=np.float32),
        has_ground_truth=ground_truth is not None,
    )
    logger.debug(
        "container: %d groups of %d patterns, N=%d, s=%.4f", B, C, N, container.intensity_scale
    )
    return container
