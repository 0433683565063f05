"""Coordinate simulation of a ptychographic scan (physics.md B 11.2, decisions 8 and 15).

A random scan over a built-in or user-supplied object, diffracted with a built-in or user
probe, with Poisson noise at ``nphotons`` expected counts per pattern. Everything random comes
from one ``numpy.random.Generator`` seeded by ``seed``: object, then positions, then noise.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api.errors import ConfigError
from ptycho_api.objects import OBJECT_KINDS, make_object
from ptycho_api.physics import extract_patches, far_field
from ptycho_api.probe import default_probe
from ptycho_api.rawdata import RawData

__all__ = [
    "scan_positions",
    "illuminate_and_diffract",
    "simulate_dataset",
    "simulate_to_file",
    "make_train_test_pair",
    "SIMULATION_SCHEMA",
]

logger = logging.getLogger(__name__)

SIMULATION_SCHEMA = "1.0.0"
"""``schema_version`` written into ``_metadata`` (same layout as the original's metadata)."""

_CHUNK = 512
"""Patterns diffracted at a time (bounds the complex128 working copy)."""


def scan_positions(
    n: int, object_shape: tuple[int, int], buffer: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random scan positions: two ``(n,)`` float64 arrays x, y in object pixels.

    ``buffer`` is first capped at ``min(H, W)/2 - 1``; then x ~ U[buffer, W - buffer] and
    y ~ U[buffer, H - buffer] (x drawn before y).
    """
    height, width = object_shape
    buffer = min(buffer, min(height, width) / 2 - 1)
    x = rng.uniform(buffer, width - buffer, size=n)
    y = rng.uniform(buffer, height - buffer, size=n)
    return x, y


def illuminate_and_diffract(
    patches: np.ndarray,
    probe: np.ndarray,
    nphotons: float,
    rng: np.random.Generator | None,
    *,
    scale: float | None = None,
) -> tuple[np.ndarray, float]:
    """Diffraction amplitudes of object patches: ``(M, N, N)`` complex -> ``((M, N, N) float32, s_sim)``.

    ``s_sim = sqrt(nphotons / mean_b sum (|Y| |P|)^2)`` makes the expected counts per pattern
    ``nphotons`` on average; ``counts ~ Poisson(far_field(s_sim * Y * P)^2)`` (B 6.2) and the
    returned amplitudes are ``sqrt(counts) / s_sim`` (the file's arbitrary scale, B 11.2).
    ``rng`` None gives the noiseless amplitudes ``far_field(Y * P)`` with the same ``s_sim``.
    ``probe`` is used raw (not normalised), as in the original simulator. ``scale`` imposes
    ``s_sim`` (a test set simulated with its training set's scale); ``nphotons`` is then unused.
    """
    patches = np.asarray(patches)
    probe = np.asarray(probe).astype(np.complex128)
    if scale is None:
        mean_energy = np.mean(np.sum((np.abs(patches) * np.abs(probe)) ** 2, axis=(1, 2)))
        if not mean_energy > 0:
            raise ConfigError(
                "simulation: the illuminated object is zero everywhere; nothing to diffract"
            )
        s_sim = math.sqrt(nphotons / float(mean_energy))
    else:
        s_sim = float(scale)
    out = np.empty(patches.shape, dtype=np.float32)
    for lo in range(0, len(patches), _CHUNK):
        amplitude = far_field(patches[lo : lo + _CHUNK].astype(np.complex128) * probe)
        if rng is not None:
            counts = rng.poisson((s_sim * amplitude) ** 2)
            amplitude = np.sqrt(counts) / s_sim
        out[lo : lo + _CHUNK] = amplitude
    return out, s_sim


def _resolve_object(
    obj: str | np.ndarray, size: int, rng: np.random.Generator, set_phi: bool
) -> tuple[np.ndarray, str]:
    if isinstance(obj, str):
        if obj not in OBJECT_KINDS:
            raise ConfigError(
                f"simulation.object: expected one of {list(OBJECT_KINDS)} or an array; found {obj!r}"
            )
        return make_object(obj, size, rng, set_phi=set_phi), obj
    array = np.asarray(obj)
    if array.ndim != 2 or array.dtype.kind not in "iufc" or not np.all(np.isfinite(array)):
        raise ConfigError(
            f"simulation.object: expected a finite 2-D (H, W) array; found shape {array.shape} {array.dtype}"
        )
    return array.astype(np.complex64), "user"


def simulate_dataset(
    n_images: int = 500,
    N: int | None = None,
    nphotons: float = 1e9,
    seed: int | None = 42,
    obj: str | np.ndarray = "lines",
    probe: np.ndarray | None = None,
    *,
    object_size: int | None = None,
    buffer: float | None = None,
    set_phi: bool = False,
    poisson_noise: bool = True,
) -> RawData:
    """Simulate a scan (B 11.2): -> ``RawData`` that satisfies the NPZ contract, with ground truth.

    ``obj``: a kind of ``OBJECT_KINDS`` (default ``lines``, side ``object_size`` = int(3.5 N)) or a
    user's ``(H, W)`` array. ``probe``: ``(N, N)`` array (default ``default_probe(N)``); ``N``
    defaults to the probe's size, else 64. ``buffer`` (default N // 2 pixels) keeps positions away from the edges.
    The result holds ``diff3d`` = sqrt(counts)/s_sim float32 (noiseless amplitudes when
    ``poisson_noise`` is False), positions (``*_start`` equal), the raw probe, ``objectGuess``,
    ``Y`` = un-illuminated patches centred on each position, and ``metadata`` (nphotons, N,
    seed, object kind, s_sim). Same seed, same dataset.
    """
    probe = default_probe(N or 64) if probe is None else np.asarray(probe)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1] or (N and probe.shape[0] != N):
        expected = f"({N}, {N})" if N else "(N, N)"
        raise ConfigError(
            f"simulation.probe: expected an {expected} array; found shape {probe.shape}"
        )
    N = probe.shape[0]
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ConfigError(f"simulation.n_images: expected an integer >= 1; found {n_images!r}")
    if not nphotons > 0:
        raise ConfigError(f"simulation.nphotons: expected a number > 0; found {nphotons!r}")
    rng = np.random.default_rng(seed)
    object_array, kind = _resolve_object(obj, object_size or int(3.5 * N), rng, set_phi)
    x, y = scan_positions(n_images, object_array.shape, N // 2 if buffer is None else buffer, rng)
    patches = extract_patches(object_array, np.column_stack([x, y]), N)
    diff3d, s_sim = illuminate_and_diffract(
        patches, probe, nphotons, rng if poisson_noise else None
    )
    metadata: dict[str, Any] = {
        "schema_version": SIMULATION_SCHEMA,
        "physics_parameters": {"nphotons": float(nphotons), "N": int(N), "gridsize": 1},
        "simulation": {
            "generator": "ptycho_api.simulation.simulate_dataset",
            "object": kind,
            "object_shape": list(object_array.shape),
            "n_images": int(n_images),
            "seed": seed,
            "poisson_noise": bool(poisson_noise),
            "s_sim": s_sim,
            "set_phi": bool(set_phi),
        },
    }
    logger.info(
        "simulated %d patterns (N=%d, %s object, nphotons %.3g)", n_images, N, kind, nphotons
    )
    return RawData(
        x,
        y,
        x,
        y,
        diff3d,
        probe,
        np.zeros(n_images, dtype=np.int64),
        object_array,
        patches,
        metadata=metadata,
        source="<simulation>",
    )


def simulate_to_file(path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """``simulate_dataset(**kwargs)`` written atomically to an NPZ at ``path``; returns the path."""
    return simulate_dataset(**kwargs).to_file(path)


def make_train_test_pair(
    output_dir: str | os.PathLike[str],
    n_train: int = 500,
    n_test: int = 500,
    N: int | None = None,
    nphotons: float = 1e9,
    seed: int = 42,
    obj: str = "lines",
    **kwargs: Any,
) -> tuple[Path, Path]:
    """Simulate ``train_data.npz`` and ``test_data.npz`` in ``output_dir``: -> (train path, test path).

    The test set uses ``seed + 1``, so its object (built-in kinds), positions and noise all differ
    from the training set's. Extra keyword arguments go to ``simulate_dataset``.
    """
    out = Path(output_dir)
    train = simulate_to_file(
        out / "train_data.npz",
        n_images=n_train,
        N=N,
        nphotons=nphotons,
        seed=seed,
        obj=obj,
        **kwargs,
    )
    test = simulate_to_file(
        out / "test_data.npz",
        n_images=n_test,
        N=N,
        nphotons=nphotons,
        seed=seed + 1,
        obj=obj,
        **kwargs,
    )
    return train, test
