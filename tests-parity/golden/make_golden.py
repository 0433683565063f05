"""Write the golden archives: one small model per backend, saved by that backend, with its outputs.

Run from the repository root with both backends installed: ``python tests-parity/golden/make_golden.py``.
Each ``<backend>/wts.h5.zip`` is read by the *other* backend's own test session
(``packages/ptycho-*/tests/test_golden.py``), which compares its predictions with the writer's
stored ``<backend>/outputs.npz``. Re-run only when the archive format or the network changes on
purpose, and say so in the changelog.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.normalization import intensity_scale
from ptycho_api.probe import default_probe

HERE = Path(__file__).resolve().parent
MODEL = ModelConfig(N=64, gridsize=2, n_filters_scale=1, probe_mask=True)
NPHOTONS = 1e9
LAMBDA_SHIFT = 0.03
"""Moves log(lambda) off log(s), as training does, so a reader must tell the two apart."""


def inputs() -> tuple[np.ndarray, np.ndarray]:
    """Fixed ``s*X (4, 64, 64, 4)`` float32 and ``offsets (4, 1, 2, 4)`` float32 in pixels."""
    rng = np.random.default_rng(2026)
    s = intensity_scale(NPHOTONS, MODEL.N)
    x = (rng.uniform(0.0, 0.3, (4, MODEL.N, MODEL.N, 4)) * s).astype(np.float32)
    offsets = rng.uniform(-3.0, 3.0, (4, 1, 2, 4)).astype(np.float32)
    return x, offsets


def write(name: str) -> None:
    """Build, perturb, save and record the outputs of the ``name`` backend's golden model."""
    from ptycho_api.backend import load_backend

    backend = load_backend(name)
    s = intensity_scale(NPHOTONS, MODEL.N)
    config = TrainingConfig(model=MODEL, nphotons=NPHOTONS, seed=7, output_dir=HERE / name)
    model = backend.build_model(MODEL, default_probe(MODEL.N), s, seed=7)
    weights = backend.export_weights(model)
    weights["physics/log_intensity_scale"] = np.asarray(math.log(s) + LAMBDA_SHIFT, np.float32)
    backend.import_weights(model, weights)
    path = backend.save_archive(model, HERE / name, config)
    x, offsets = inputs()
    patches = backend.predict(model, x, offsets)
    np.savez_compressed(
        HERE / name / "outputs.npz",
        x_scaled=x,
        local_offsets=offsets,
        patches=patches,
        intensity_scale=np.float64(s),
    )
    print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    for backend_name in ("tensorflow", "pytorch"):
        write(backend_name)
