"""Supervised mode (``model.model_type = 'supervised'``): targets, checks and the reference loss.

The network is the PINN's (same encoder and decoders, same archive); only training differs: the
decoders' outputs are compared with the ground-truth object patches ``Y`` of the training
container instead of going through the forward model. Backend-neutral, so both backends train on
the same numbers:

- loss: ``mean|A - |Y|/a| + mean|Phi - angle(Y)|``, both means over all ``B*N*N*C`` elements
  with weight 1 each, as the original's supervised baseline (``ptycho/baselines.py``) compiles
  two ``mean_absolute_error`` losses, one per output. ``A`` is the amplitude decoder's output
  (after ``amp_activation``, the zero padding of ``pad_object`` and the probe_big border branch)
  and ``Phi`` the phase decoder's (``pi * tanh``, radians): the ``(B, N, N, C)`` tensors that
  become the object patches ``A * exp(i Phi)``. The phase is compared unwrapped, as there.
  ``nll_weight`` and ``mae_weight`` (the PINN's loss) are not used.
- amplitude scale: the original's baseline trains on the raw ``Y_I = |Y|`` (no normalisation) with
  unbounded linear output convolutions. Our amplitude head ends in ``amp_activation`` (sigmoid by
  default, range (0, 1)), which could not reach a raw amplitude above 1 (simulated objects reach
  ~5), so the target is ``|Y| / a`` with ``a = max |Y|`` over the training container (every
  group, validation ones included): targets lie in [0, 1]. A supervised model therefore predicts
  amplitude in units of ``a`` (logged at INFO); evaluation mean-matches amplitudes
  (``ptycho_api.metrics``), so metrics do not depend on ``a``. The phase needs no scale.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptycho_api.config import ModelConfig
from ptycho_api.container import PtychoDataContainer
from ptycho_api.errors import ConfigError, DataError
from ptycho_api.rawdata import RawData

__all__ = ["SupervisedTargets", "require_ground_truth", "supervised_targets", "supervised_loss"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupervisedTargets:
    """Real-space training targets of supervised mode, aligned with the container's groups."""

    amplitude: np.ndarray
    """``(B, N, N, C)`` float32 ``|Y| / amplitude_scale``, in [0, 1]."""
    phase: np.ndarray
    """``(B, N, N, C)`` float32 ``angle(Y)``, radians in (-pi, pi]."""
    amplitude_scale: float
    """``a = max |Y|`` over the container (object amplitude units)."""


def require_ground_truth(
    data: RawData | PtychoDataContainer | Mapping[str, Any], source: str | None = None
) -> None:
    """Raise ``DataError`` unless ``data`` has ground truth (``Y`` or ``objectGuess``) to train on.

    ``source`` names the data in the message (default: a ``RawData``'s file, else
    "training data").
    """
    if isinstance(data, RawData):
        present = data.Y is not None or data.objectGuess is not None
        source = source or data.source
    elif isinstance(data, PtychoDataContainer):
        present = data.has_ground_truth
    else:
        present = data.get("Y") is not None
    if not present:
        raise DataError(
            f"{source or 'training data'}: keys 'Y' and 'objectGuess': supervised mode "
            "(model.model_type='supervised') trains against ground truth and needs 'Y' "
            "(ground-truth patches) or 'objectGuess' (the object); found neither"
        )


def supervised_targets(
    container: PtychoDataContainer,
    model_config: ModelConfig,
    source: str | None = None,
    *,
    amplitude_scale: float | None = None,
) -> SupervisedTargets:
    """Targets ``(|Y|/a, angle(Y))`` of supervised mode for ``container`` (see the module doc).

    ``amplitude_scale`` is ``a`` (default: max |Y| of this container; pass the training
    container's to evaluate a test container in the same units). Raises ``DataError`` without ground truth or with zero ground-truth amplitude everywhere, and
    ``ConfigError`` when the network makes one patch per group (``object_big`` off, gridsize > 1)
    while the ground truth has one patch per pattern.
    """
    require_ground_truth(container, source)
    C = container.n_channels
    if not model_config.object_big and C > 1:
        raise ConfigError(
            f"model.object_big: supervised mode with gridsize {model_config.gridsize} compares "
            "one object patch per pattern with that pattern's ground truth and needs true; "
            "found false"
        )
    scale = float(np.max(container.Y_I) if amplitude_scale is None else amplitude_scale)
    if not (np.isfinite(scale) and scale > 0):
        raise DataError(
            f"{source or 'training data'}: ground truth 'Y': expected an amplitude scale "
            f"a = max |Y| that is finite and > 0; found {scale!r}"
        )
    logger.info(
        "supervised targets: amplitude |Y| / a, a = %.6g (predictions are in units of a), "
        "phase angle(Y)",
        scale,
    )
    amplitude = (container.Y_I / np.float32(scale)).astype(np.float32)
    return SupervisedTargets(amplitude, container.Y_phi.astype(np.float32), scale)


def supervised_loss(
    amplitude: np.ndarray,
    phase: np.ndarray,
    amplitude_target: np.ndarray,
    phase_target: np.ndarray,
) -> float:
    """Reference loss (float64): ``mean|A - A_t| + mean|Phi - Phi_t|``, any four equal shapes."""
    pairs = ((amplitude, amplitude_target), (phase, phase_target))
    return float(
        sum(
            np.mean(np.abs(np.asarray(p, np.float64) - np.asarray(t, np.float64))) for p, t in pairs
        )
    )
