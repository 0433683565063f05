"""Canonical weights (parity.md section 1): export from and strict import into a TF model.

Names and shapes come from :func:`ptycho_api.architecture.canonical_weight_shapes`. Keras keeps
kernels in HWIO already, so conv tensors cross unchanged; the probe is stored in the model as
two float32 weights and exported as one ``(N, N)`` complex64 array.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ptycho_api.architecture import LOG_SCALE_KEY, PROBE_KEY, check_canonical_weights
from ptycho_tf.model import PtychoPINN

__all__ = ["export_weights", "import_weights"]


def export_weights(models: PtychoPINN) -> dict[str, np.ndarray]:
    """Canonical name -> numpy array (float32 HWIO kernels, biases, lambda; complex64 probe)."""
    out: dict[str, np.ndarray] = {}
    for conv, layer in models.conv_layers():
        kernel, bias = layer.get_weights()
        out[f"{conv.name}/kernel"] = np.asarray(kernel, dtype=np.float32)
        out[f"{conv.name}/bias"] = np.asarray(bias, dtype=np.float32)
    out[LOG_SCALE_KEY] = np.asarray(models.scaler.log_scale.numpy(), dtype=np.float32)
    out[PROBE_KEY] = models.probe_layer.get_probe()
    check_canonical_weights(out, models.model_config)
    return out


def import_weights(models: PtychoPINN, weights: Mapping[str, np.ndarray]) -> None:
    """Assign canonical ``weights`` to ``models``; ``ConfigError`` names any missing/extra/mis-shaped key."""
    check_canonical_weights(weights, models.model_config)
    for conv, layer in models.conv_layers():
        layer.set_weights(
            [np.asarray(weights[f"{conv.name}/kernel"]), np.asarray(weights[f"{conv.name}/bias"])]
        )
    models.scaler.log_scale.assign(np.asarray(weights[LOG_SCALE_KEY], dtype=np.float32))
    models.probe_layer.set_probe(np.asarray(weights[PROBE_KEY]))
