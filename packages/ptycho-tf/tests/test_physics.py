"""Every physics op against the numpy reference of ``ptycho_api`` (parity.md section 2: rel <= 1e-5).

Inputs are random and non-zero, offsets sub-pixel and of both signs, gridsize 1 and 2. The
tolerance 1e-5 is the parity.md bound; float32 rounding gives ~1e-7 here, the reference runs in
float64.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import rel

from ptycho_api import forward, stitching
from ptycho_api import physics as ref
from ptycho_api.config import ModelConfig
from ptycho_api.probe import default_probe, normalize_probe, probe_support_mask
from ptycho_tf import physics
from ptycho_tf.inference import reassemble_position
from ptycho_tf.layers import (
    ExtractPatches,
    FarField,
    OverlapCanvas,
    ProbeIllumination,
    Translation,
)
from ptycho_tf.losses import loss_terms
from ptycho_tf.model import build_model

TOL = 1e-5  # parity.md section 2, physics op vs numpy reference


def _complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def _offsets(rng: np.random.Generator, shape: tuple[int, ...], span: float) -> np.ndarray:
    """Sub-pixel offsets of both signs, never integers."""
    values = rng.uniform(-span, span, size=shape)
    values[..., 0] = -abs(values[..., 0]) - 0.37  # at least one clearly negative
    return values.astype(np.float32)


@pytest.mark.parametrize("shape", [(5, 20, 24, 3), (4, 74, 74, 1)])
def test_translate_matches_reference(shape):
    rng = np.random.default_rng(1)
    images = rng.normal(size=shape).astype(np.float32)
    offsets = _offsets(rng, (shape[0], 2), 6.0)
    offsets[1] = [-offsets[0, 0], 2.63]  # a positive x too
    out = physics.translate(tf.constant(images), tf.constant(offsets)).numpy()
    assert rel(out, ref.translate(images, offsets)) <= TOL


def test_translate_layer_complex_and_sign_convention():
    rng = np.random.default_rng(2)
    images = _complex(rng, (3, 32, 32, 2))
    offsets = _offsets(rng, (3, 2), 5.0)
    out = Translation()(images, offsets).numpy()
    assert rel(out, ref.translate(images, offsets)) <= TOL
    # B 15 golden value: a delta at (8, 8) shifted by [2, -3] lands at (5, 10). Exact: integer shift.
    delta = np.zeros((1, 16, 16, 1), np.float32)
    delta[0, 8, 8, 0] = 1.0
    moved = physics.translate(tf.constant(delta), tf.constant([[2.0, -3.0]])).numpy()
    assert moved[0, 5, 10, 0] == 1.0 and moved.sum() == 1.0


def test_translate_gradients_flow_to_images():
    rng = np.random.default_rng(3)
    images = tf.Variable(rng.normal(size=(2, 16, 16, 1)).astype(np.float32))
    offsets = tf.constant([[0.3, -1.6], [-2.2, 0.9]], tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(physics.translate(images, offsets) ** 2)
    grad = tape.gradient(loss, images)
    assert grad is not None and np.all(np.isfinite(grad.numpy()))
    assert np.count_nonzero(grad.numpy()) > 0


@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("object_big", [True, False])
def test_overlap_canvas_trim_and_extract(gridsize, object_big):
    rng = np.random.default_rng(10 + gridsize)
    N, C = 64, gridsize * gridsize
    padded = ref.padded_size(N, gridsize)
    patches = _complex(rng, (3, N, N, C if object_big else 1))
    offsets = _offsets(rng, (3, 1, 2, C), 4.0)
    expected = forward.overlap_canvas(patches, offsets, padded, object_big=object_big)
    layer = OverlapCanvas(N, gridsize, padded, object_big)
    canvas = layer(patches, offsets).numpy()
    assert canvas.shape == (3, padded, padded, 1)
    assert rel(canvas, expected) <= TOL
    assert (
        rel(physics.trim_canvas(tf.constant(canvas), N).numpy(), forward.trim_canvas(expected, N))
        <= TOL
    )
    extracted = ExtractPatches(N, gridsize, padded)(expected, offsets).numpy()
    assert rel(extracted, forward.extract_from_canvas(expected, offsets, N)) <= TOL


def test_canvas_is_per_group():
    # Decision 1: a group's canvas never depends on the other groups of the batch.
    rng = np.random.default_rng(5)
    patches = _complex(rng, (6, 64, 64, 4))
    offsets = _offsets(rng, (6, 1, 2, 4), 3.0)
    full = physics.overlap_canvas(tf.constant(patches), tf.constant(offsets), 78).numpy()
    alone = physics.overlap_canvas(tf.constant(patches[2:3]), tf.constant(offsets[2:3]), 78).numpy()
    np.testing.assert_array_equal(full[2:3], alone)  # exact: same ops on the same numbers


@pytest.mark.parametrize(("mask", "sigma"), [(False, 0.0), (True, 0.0), (True, 0.7), (False, 1.3)])
def test_illumination_matches_reference(mask, sigma):
    rng = np.random.default_rng(6)
    patches = _complex(rng, (2, 64, 64, 4))
    probe = normalize_probe(_complex(rng, (64, 64)))
    layer = ProbeIllumination(64, mask, sigma)
    layer.set_probe(probe)
    out = layer(patches).numpy()
    assert rel(out, forward.illuminate(patches, probe, mask, sigma)) <= TOL


def test_far_field_matches_reference():
    rng = np.random.default_rng(7)
    field = _complex(rng, (3, 64, 64, 4))
    out = FarField()(field).numpy()
    assert out.dtype == np.float32
    assert rel(out, ref.far_field(field, axes=(1, 2))) <= TOL


def test_model_probe_is_the_normalised_probe():
    probe = default_probe(64)
    models = build_model(ModelConfig(N=64, n_filters_scale=1), probe, 988.2118, seed=0)
    model_probe = models.probe_layer.get_probe()
    assert rel(model_probe, normalize_probe(probe, 4.0)) <= TOL
    # B 15 golden values (4 significant digits quoted): max 2.7234, sum |P|^2 2505.119.
    assert abs(np.abs(model_probe).max() - 2.7234) < 1e-4
    assert abs(np.sum(np.abs(model_probe) ** 2) - 2505.119) < 1e-2
    assert int(probe_support_mask(64).sum()) == 812


@pytest.mark.parametrize("N", [64, 128])
def test_masks_match_reference(N):
    # Exact 0/1 arrays: identical.
    np.testing.assert_array_equal(physics.support_mask(N).numpy(), probe_support_mask(N))
    np.testing.assert_array_equal(physics.center_mask(N).numpy(), forward.center_mask(N))
    np.testing.assert_array_equal(physics.border_mask(N).numpy(), 1.0 - forward.center_mask(N))


def test_losses_match_reference():
    rng = np.random.default_rng(8)
    pred = rng.uniform(0.1, 30.0, size=(4, 64, 64, 1)).astype(np.float32)
    target = rng.uniform(0.0, 30.0, size=(4, 64, 64, 1)).astype(np.float32)
    nll_t, mae_t = loss_terms(tf.constant(pred), tf.constant(target))
    nll = float(nll_t)
    assert abs(nll - ref.poisson_nll(pred, target)) <= TOL * abs(ref.poisson_nll(pred, target))
    mae = float(mae_t)
    assert abs(mae - ref.mae(pred, target)) <= TOL * ref.mae(pred, target)


@pytest.mark.parametrize(
    ("gridsize", "probe_big", "probe_mask", "sigma"),
    [(1, True, False, 0.0), (2, True, True, 0.5), (2, False, False, 0.0), (1, False, True, 0.0)],
)
def test_model_forward_matches_reference_forward_model(gridsize, probe_big, probe_mask, sigma):
    """All three autoencoder outputs from the network's own object patches (B 7.6, B 7.7)."""
    cfg = ModelConfig(
        N=64,
        gridsize=gridsize,
        n_filters_scale=1,
        probe_big=probe_big,
        probe_mask=probe_mask,
        gaussian_smoothing_sigma=sigma,
    )
    rng = np.random.default_rng(9)
    C = gridsize * gridsize
    probe = default_probe(64)
    models = build_model(cfg, probe, 988.2118, seed=1)
    x = rng.uniform(0.0, 900.0, size=(3, 64, 64, C)).astype(np.float32)
    offsets = _offsets(rng, (3, 1, 2, C), 4.0)
    outputs = models.autoencoder([x, offsets])
    patches_model = keras.Model(
        models.autoencoder.inputs, models.autoencoder.get_layer("object_patches").output
    )
    patches = patches_model([x, offsets]).numpy()
    expected = forward.forward_model(
        patches,
        offsets,
        normalize_probe(probe, 4.0),
        988.2118,
        probe_big=probe_big,
        probe_mask=probe_mask,
        gaussian_smoothing_sigma=sigma,
    )
    for got, want in zip(outputs, expected, strict=True):
        assert rel(got.numpy(), want) <= TOL


@pytest.mark.parametrize("n_patches", [1, 5, 300])
def test_reassemble_position_matches_reference(n_patches):
    rng = np.random.default_rng(n_patches)
    patches = _complex(rng, (n_patches, 64, 64, 1))
    offsets = rng.uniform(20.0, 180.0, size=(n_patches, 1, 2, 1))
    got = reassemble_position(patches, offsets, M=20, chunk_size=64)
    want = stitching.reassemble_position(patches, offsets, M=20)
    assert got.shape == want.shape and got.dtype == np.complex64
    assert rel(got, want) <= TOL


def test_reassemble_position_golden_geometry():
    # B 15: two patches at x = 100, 110 (y = 100), M = 20 -> a 32 x 32 canvas.
    patches = np.ones((2, 64, 64, 1), np.complex64)
    offsets = np.array([[[[100.0], [100.0]]], [[[110.0], [100.0]]]])
    assert reassemble_position(patches, offsets, M=20).shape == (32, 32, 1)
