"""Parity.md section 1: both backends export the same canonical keys, shapes and dtypes.

For every combination tried of N, gridsize, n_filters_scale, object_big, probe_big and pad_object
the two exports have identical key sets (equal to ``canonical_weight_shapes``), and each backend
imports the other's export strictly and exports it back unchanged.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from parity_helpers import TF, TORCH, complex_probe, model_config

from ptycho_api.architecture import canonical_weight_shapes
from ptycho_api.errors import ConfigError

COMBOS = [
    (N, nfs, g, ob, pb, po)
    for N, nfs, g, ob, pb, po in itertools.product(
        (64, 128), (1, 2), (1, 2), (True, False), (True, False), (True, False)
    )
    # pad_object=False ignores probe_big (no border branch): keep one of the two.
    if po or pb
]


@pytest.mark.parametrize(
    ("N", "n_filters_scale", "gridsize", "object_big", "probe_big", "pad_object"), COMBOS
)
def test_canonical_key_sets_identical(
    N, n_filters_scale, gridsize, object_big, probe_big, pad_object
):
    cfg = model_config(
        gridsize,
        N=N,
        n_filters_scale=n_filters_scale,
        object_big=object_big,
        probe_big=probe_big,
        pad_object=pad_object,
    )
    probe = complex_probe(N)
    tf_weights = TF.export_weights(TF.build_model(cfg, probe, 300.0, seed=1))
    torch_model = TORCH.build_model(cfg, probe, 300.0, seed=2)
    torch_weights = TORCH.export_weights(torch_model)
    expected = canonical_weight_shapes(cfg)
    assert list(tf_weights) == list(expected)
    assert set(torch_weights) == set(tf_weights)
    for key, (shape, dtype) in expected.items():
        for side, weights in (("tensorflow", tf_weights), ("pytorch", torch_weights)):
            assert weights[key].shape == shape, f"{side} {key}"
            assert weights[key].dtype == dtype, f"{side} {key}"
    # Strict cross-import both ways reproduces the tensors exactly.
    TORCH.import_weights(torch_model, tf_weights)
    back = TORCH.export_weights(torch_model)
    for key in expected:
        np.testing.assert_array_equal(back[key], tf_weights[key], err_msg=key)


def test_cross_import_is_strict():
    cfg = model_config(1)
    probe = complex_probe(64)
    weights = TF.export_weights(TF.build_model(cfg, probe, 300.0, seed=1))
    torch_model = TORCH.build_model(cfg, probe, 300.0, seed=2)
    broken = dict(weights)
    del broken["decoder_amp/head/bias"]
    with pytest.raises(ConfigError, match="decoder_amp/head/bias"):
        TORCH.import_weights(torch_model, broken)
    tf_models = TF.build_model(cfg, probe, 300.0, seed=3)
    torch_weights = TORCH.export_weights(torch_model)
    torch_weights["encoder/block0/conv0/kernel"] = torch_weights["encoder/block0/conv0/kernel"][
        ..., :-1
    ]
    with pytest.raises(ConfigError, match="encoder/block0/conv0/kernel"):
        TF.import_weights(tf_models, torch_weights)
