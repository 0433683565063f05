"""Canonical weights (parity.md section 1): export from and strict import into a PyTorch model.

Names and shapes come from :func:`ptycho_api.architecture.canonical_weight_shapes`. Torch keeps
conv kernels as ``(out, in, kh, kw)``; they cross as HWIO. The probe lives in the model as two
float32 tensors and is exported as one ``(N, N)`` complex64 array.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ptycho_api.architecture import LOG_SCALE_KEY, PROBE_KEY, check_canonical_weights
from ptycho_torch.model import PtychoPINN

__all__ = ["export_weights", "import_weights"]


def export_weights(model: PtychoPINN) -> dict[str, np.ndarray]:
    """Canonical name -> numpy array (float32 HWIO kernels, ``(out,)`` biases, lambda; complex64 probe)."""
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name, conv in model.convs().items():
            out[f"{name}/kernel"] = np.ascontiguousarray(
                conv.weight.detach().permute(2, 3, 1, 0).cpu().numpy(), dtype=np.float32
            )
            out[f"{name}/bias"] = conv.bias.detach().cpu().numpy().astype(np.float32)
        out[LOG_SCALE_KEY] = np.asarray(
            model.log_intensity_scale.detach().cpu().numpy(), dtype=np.float32
        ).reshape(())
        probe = (
            model.probe_real.detach().cpu().numpy() + 1j * model.probe_imag.detach().cpu().numpy()
        )
        out[PROBE_KEY] = probe.astype(np.complex64)
    check_canonical_weights(out, model.model_config)
    return out


def import_weights(model: PtychoPINN, weights: Mapping[str, np.ndarray]) -> None:
    """Assign canonical ``weights`` to ``model``; ``ConfigError`` names any missing/extra/mis-shaped key."""
    check_canonical_weights(weights, model.model_config)
    with torch.no_grad():
        for name, conv in model.convs().items():
            kernel = torch.from_numpy(
                np.asarray(weights[f"{name}/kernel"]).transpose(3, 2, 0, 1).copy()
            )
            conv.weight.copy_(kernel)
            conv.bias.copy_(torch.from_numpy(np.asarray(weights[f"{name}/bias"])))
        model.log_intensity_scale.copy_(torch.from_numpy(np.asarray(weights[LOG_SCALE_KEY])))
        probe = np.asarray(weights[PROBE_KEY])
        model.probe_real.copy_(torch.from_numpy(np.ascontiguousarray(probe.real)))
        model.probe_imag.copy_(torch.from_numpy(np.ascontiguousarray(probe.imag)))
