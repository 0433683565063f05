"""The original ``ptycho.probe``: the probe the model illuminates with, kept in ``params.cfg``."""

from __future__ import annotations

import numpy as np

from ptycho_api import params
from ptycho_api.probe import default_probe, normalize_probe

__all__ = ["get_default_probe", "set_probe", "set_probe_guess"]


def get_default_probe(N: int) -> np.ndarray:
    """The idealised disk probe of the original's simulations: ``(N, N)`` complex64."""
    return default_probe(N)


def set_probe(probe: np.ndarray) -> np.ndarray:
    """Normalise ``probe`` (``(N, N)`` or ``(N, N, 1)`` complex) and store it: -> ``(N, N, 1)`` complex64.

    Normalised with ``params.cfg['probe_scale']`` as the model does, and kept in
    ``params.cfg['probe']`` where legacy callers read it.
    """
    array = np.asarray(probe)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(
            f"probe: expected a square (N, N) or (N, N, 1) array; found shape {np.shape(probe)}"
        )
    stored = normalize_probe(array.astype(np.complex64), float(params.get("probe_scale")))
    params.cfg["probe"] = stored[..., None]
    return params.cfg["probe"]


def set_probe_guess(
    X_train: np.ndarray | None = None, probe_guess: np.ndarray | None = None
) -> np.ndarray:
    """Store the measured probe ``probe_guess`` (``(N, N)``, ``(N, N, 1)`` or ``(1, N, N)`` complex).

    Returns the stored ``(N, N, 1)`` complex64 probe. The original could also guess a Gaussian
    probe from the data (``probe_guess=None``); that guess is a poor start for real data and is
    not offered: pass the measured or reconstructed probe.
    """
    if probe_guess is None:
        raise ValueError(
            "set_probe_guess: probe_guess is required (guessing a probe from the diffraction "
            "data is not supported); pass the measured probe, e.g. RawData.probeGuess"
        )
    array = np.asarray(probe_guess)
    if array.ndim == 3 and array.shape[0] == 1 and array.shape[1] == array.shape[2]:
        array = array[0]  # one incoherent mode, as Ptychodus stores it
    return set_probe(array)
