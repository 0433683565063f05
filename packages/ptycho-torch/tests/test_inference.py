"""Batched prediction, on-device stitching vs the numpy reference (B 9), the predict wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptycho_api.config import ModelConfig
from ptycho_api.probe import default_probe
from ptycho_api.stitching import reassemble_position as ref_reassemble
from ptycho_torch.inference import predict_patches, reassemble_position
from ptycho_torch.model import build_model
from ptycho_torch.wrapper import TorchModelWrapper

TOL = 1e-5
"""parity.md section 2: stitching vs the numpy reference."""


def _patches(rng: np.random.Generator, B: int, N: int = 64) -> np.ndarray:
    shape = (B, N, N, 1)
    return (rng.uniform(0.5, 1.5, shape) * np.exp(1j * rng.uniform(-3, 3, shape))).astype(
        np.complex64
    )


@pytest.mark.parametrize(("B", "spread", "M"), [(1, 0.0, 20), (7, 15.0, 20), (300, 80.0, 32)])
def test_reassemble_position_matches_reference(B, spread, M, rel):
    rng = np.random.default_rng(B)
    patches = _patches(rng, B)
    offsets = (100.0 + rng.uniform(-spread, spread, (B, 1, 2, 1))).astype(np.float64)
    want = ref_reassemble(patches, offsets, M)
    # Small chunks exercise the streaming path.
    got = reassemble_position(patches, offsets, M, chunk_size=64)
    assert got.shape == want.shape and got.dtype == np.complex64
    assert rel(got, want) <= TOL


def test_reassemble_position_golden_two_patches():
    # B 15: patches at x = 100, 110, y = 100, M = 20 -> 32 x 32 canvas; overlap cols 11-20 averaged.
    patches = np.zeros((2, 64, 64, 1), np.complex64)
    patches[0] = 1.0
    patches[1] = 3.0
    offsets = np.array([[[[100.0], [100.0]]], [[[110.0], [100.0]]]])
    image = reassemble_position(patches, offsets, 20)[..., 0]
    assert image.shape == (32, 32)
    row = image[16]
    # Integer offsets: exact sums; 1e-6 covers the +1e-9 denominator and complex64 rounding.
    np.testing.assert_allclose(row[1:11], 1.0, rtol=1e-6)
    np.testing.assert_allclose(row[11:21], 2.0, rtol=1e-6)
    np.testing.assert_allclose(row[21:31], 3.0, rtol=1e-6)


def test_predict_returns_complex64_patches_independent_of_batch_size(rel):
    cfg = ModelConfig(N=64, gridsize=2, n_filters_scale=1)
    model = build_model(cfg, default_probe(64), 988.2, seed=0)
    rng = np.random.default_rng(0)
    x = (rng.uniform(0, 2, (10, 64, 64, 4)) * 988.2).astype(np.float32)
    offsets = rng.uniform(-2, 2, (10, 1, 2, 4)).astype(np.float32)
    a = predict_patches(model, x, offsets, batch_size=3)
    b = predict_patches(model, x, offsets, batch_size=64)
    assert a.shape == (10, 64, 64, 1) and a.dtype == np.complex64
    # Each group is computed on its own (decision 1), but the CPU conv kernels pick different
    # algorithms per batch size, so float32 rounding differs through 20+ layers: parity.md's
    # forward-pass tolerance, rel <= 1e-4.
    assert rel(a, b) <= 1e-4
    with torch.no_grad():
        direct = model(torch.from_numpy(x), torch.from_numpy(offsets))[0].numpy()
    assert rel(a, direct) <= 1e-4
    assert model.training  # predict restores the mode it found
    # As in ptycho_tf: a batch size below 1 is refused (a negative one used to return np.empty).
    for bad in (0, -1):
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            predict_patches(model, x, offsets, batch_size=bad)


def test_wrapper_predict_takes_keras_style_inputs():
    model = build_model(ModelConfig(N=64, n_filters_scale=1), default_probe(64), 988.2, seed=0)
    wrapper = TorchModelWrapper(model)
    x = np.full((2, 64, 64, 1), 500.0, np.float32)
    offsets = np.zeros((2, 1, 2, 1), np.float32)
    out = wrapper.predict([x, offsets])
    assert out.shape == (2, 64, 64, 1) and out.dtype == np.complex64
    np.testing.assert_array_equal(out, predict_patches(model, x, offsets))
    with pytest.raises(ValueError, match="X_scaled, local_offsets"):
        wrapper.predict([x])
