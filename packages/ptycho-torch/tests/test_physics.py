"""Every physics op against the numpy reference of ``ptycho_api`` (parity.md section 2: rel <= 1e-5).

Inputs are random, non-zero, float32/complex64 with sub-pixel offsets of both signs; the
reference computes in float64, so the differences measured here are float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ptycho_api import forward as ref
from ptycho_api import physics as ref_physics
from ptycho_api.config import ModelConfig
from ptycho_api.normalization import intensity_scale
from ptycho_api.probe import default_probe, normalize_probe, probe_support_mask
from ptycho_torch import physics
from ptycho_torch.model import build_model
from ptycho_torch.weights import export_weights

TOL = 1e-5
"""parity.md section 2: each physics op vs the numpy reference, float32 on CPU."""


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 1)))


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return np.moveaxis(t.detach().numpy(), 1, -1)


def _random_patches(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.uniform(0.5, 1.5, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))).astype(
        np.complex64
    )


def _group_offsets(rng: np.random.Generator, B: int, C: int, spread: float = 3.0) -> np.ndarray:
    """``(B, 1, 2, C)`` float32 m - r offsets of both signs (zero mean per group, as grouping makes them)."""
    if C == 1:
        return np.zeros((B, 1, 2, 1), np.float32)
    offsets = rng.uniform(-spread, spread, (B, 1, 2, C))
    return (offsets - offsets.mean(axis=3, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("shape", [(6, 16, 16, 1), (4, 23, 30, 3), (3, 74, 74, 2)])
def test_translate_matches_reference(shape, rel):
    rng = np.random.default_rng(sum(shape))
    images = rng.normal(size=shape).astype(np.float32)
    offsets = rng.uniform(-6.0, 6.0, (shape[0], 2)).astype(np.float32)  # both signs, sub-pixel
    want = ref_physics.translate(images, offsets)
    got = _nhwc(physics.translate(_nchw(images), torch.from_numpy(offsets)))
    assert rel(got, want) <= TOL


def test_translate_of_complex_field_translates_real_and_imag_parts(rel):
    rng = np.random.default_rng(5)
    field = _random_patches(rng, (4, 32, 32))
    offsets = rng.uniform(-3.0, 3.0, (4, 2)).astype(np.float32)
    want = ref_physics.translate(field, offsets)
    t = torch.from_numpy(field)[:, None]
    re, im = physics.translate_complex((t.real, t.imag), torch.from_numpy(offsets))
    assert re.shape == im.shape == (4, 1, 32, 32)
    assert rel((re[:, 0] + 1j * im[:, 0]).numpy(), want) <= TOL


def test_translate_moves_a_delta_as_in_b15():
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, 8, 8] = 1.0
    moved = physics.translate(image, torch.tensor([[2.0, -3.0]]))
    # Integer offset: the delta moves exactly (B 15 golden value: (8,8) -> (5,10)).
    assert moved[0, 0, 5, 10] == 1.0 and moved.sum() == 1.0


def test_translate_gradients_exist_and_are_finite():
    rng = np.random.default_rng(7)
    images = torch.tensor(rng.normal(size=(3, 2, 20, 20)), dtype=torch.float32, requires_grad=True)
    offsets = torch.tensor([[1.3, -2.7], [-0.4, 0.0], [5.5, 3.25]], requires_grad=True)
    out = physics.translate(images, offsets)
    (out * out).sum().backward()
    for grad in (images.grad, offsets.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # d/d(offset) of a bilinear shift matches a central finite difference in float64.
    images64 = images.detach().double()
    d = torch.tensor([[0.3, -0.6]], dtype=torch.float64, requires_grad=True)
    physics.translate(images64[:1], d).sum().backward()
    eps = 1e-6
    for axis in range(2):
        step = torch.zeros(1, 2, dtype=torch.float64)
        step[0, axis] = eps
        numeric = (
            physics.translate(images64[:1], d.detach() + step).sum()
            - physics.translate(images64[:1], d.detach() - step).sum()
        ) / (2 * eps)
        # Piecewise-linear in the offset and away from a kink: float64 agreement to 1e-6.
        assert math.isclose(float(d.grad[0, axis]), float(numeric), rel_tol=1e-6, abs_tol=1e-6)


@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("object_big", [True, False])
def test_overlap_canvas_trim_and_extraction_match_reference(gridsize, object_big, rel):
    rng = np.random.default_rng(10 * gridsize + object_big)
    N, B, C = 64, 3, gridsize * gridsize
    padded = ref_physics.padded_size(N, gridsize)
    patches = _random_patches(rng, (B, N, N, C if object_big else 1))
    offsets = _group_offsets(rng, B, C)
    canvas = ref.overlap_canvas(patches, offsets, padded, object_big=object_big)
    t = _nchw(patches)
    c_re, c_im = physics.overlap_canvas(
        (t.real.contiguous(), t.imag.contiguous()), torch.from_numpy(offsets), padded, object_big
    )
    got_canvas = (c_re + 1j * c_im).numpy()
    assert rel(got_canvas, canvas[..., 0]) <= TOL
    t_re, t_im = physics.trim_canvas((c_re, c_im), N)
    assert rel((t_re + 1j * t_im).numpy(), ref.trim_canvas(canvas, N)[..., 0]) <= TOL
    e_re, e_im = physics.extract_from_canvas((c_re, c_im), torch.from_numpy(offsets), N)
    assert rel(_nhwc(e_re + 1j * e_im), ref.extract_from_canvas(canvas, offsets, N)) <= TOL


def test_groups_never_share_a_canvas():
    # Decision 1: a group's canvas depends on that group only, whatever the batch.
    rng = np.random.default_rng(3)
    patches = _nchw(_random_patches(rng, (5, 64, 64, 4)))
    offsets = torch.from_numpy(_group_offsets(rng, 5, 4))
    re, im = patches.real.contiguous(), patches.imag.contiguous()
    batch = physics.overlap_canvas((re, im), offsets, 78)
    for b in range(5):
        alone = physics.overlap_canvas((re[b : b + 1], im[b : b + 1]), offsets[b : b + 1], 78)
        for got, want in zip(batch, alone, strict=True):
            # Same arithmetic per group; batched matmul may order sums differently: 1e-6 relative.
            torch.testing.assert_close(
                got[b : b + 1], want, rtol=1e-6, atol=1e-6 * want.abs().max()
            )


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_smoothing_matches_reference(sigma, rel):
    rng = np.random.default_rng(int(sigma * 10))
    field = _random_patches(rng, (2, 64, 64, 4))
    want = ref.smooth_field(field, sigma)
    t = _nchw(field)
    re, im = physics.smooth_field((t.real, t.imag), sigma)
    assert rel(_nhwc(re + 1j * im), want) <= TOL


@pytest.mark.parametrize(("mask", "sigma"), [(False, 0.0), (True, 0.0), (True, 0.7), (False, 1.3)])
def test_illumination_matches_reference(mask, sigma, rel):
    rng = np.random.default_rng(6)
    patches = _random_patches(rng, (2, 64, 64, 4))
    probe = normalize_probe(_random_patches(rng, (64, 64)), 4.0)
    t, p = _nchw(patches), torch.from_numpy(probe)
    re, im = physics.illuminate((t.real, t.imag), (p.real, p.imag), mask, sigma)
    assert rel(_nhwc(re + 1j * im), ref.illuminate(patches, probe, mask, sigma)) <= TOL


@pytest.mark.parametrize("N", [32, 64, 128])
def test_far_field_matches_reference(N, rel):
    rng = np.random.default_rng(N)
    field = _random_patches(rng, (3, N, N, 2))
    want = ref_physics.far_field(field, axes=(1, 2))
    t = _nchw(field)
    got = physics.far_field((t.real.contiguous(), t.imag.contiguous()))
    assert rel(_nhwc(got), want) <= TOL


def test_far_field_gradient_is_finite_where_the_field_vanishes():
    re = torch.zeros(1, 1, 8, 8, requires_grad=True)
    im = torch.zeros(1, 1, 8, 8, requires_grad=True)
    physics.far_field((re, im)).sum().backward()
    assert torch.isfinite(re.grad).all() and torch.isfinite(im.grad).all()


@pytest.mark.parametrize("N", [64, 128])
def test_model_probe_is_the_normalised_probe_and_masks_match(N, rel):
    probe = default_probe(N)
    model = build_model(ModelConfig(N=N, n_filters_scale=1), probe, 1.0)
    got = export_weights(model)["physics/probe"]
    assert rel(got, normalize_probe(probe, 4.0)) <= TOL
    # Masks are exact 0/1 arrays: identical.
    np.testing.assert_array_equal(physics.support_mask(N).numpy(), probe_support_mask(N))
    np.testing.assert_array_equal(physics.center_mask(N).numpy(), ref.center_mask(N))
    np.testing.assert_array_equal(physics.border_mask(N).numpy(), 1.0 - ref.center_mask(N))


@pytest.mark.parametrize(
    "overrides",
    [
        {"gridsize": 1},
        {"gridsize": 2},
        {"gridsize": 2, "probe_mask": True, "gaussian_smoothing_sigma": 0.7},
        {"gridsize": 2, "object_big": False},
        {"gridsize": 1, "probe_big": False, "amp_activation": "swish"},
        {"gridsize": 2, "pad_object": False, "probe_big": False},
    ],
)
def test_autoencoder_outputs_match_the_reference_forward_model(overrides, rel):
    """Illumination (mask, smoothing), far field and intensity scaling on the model's own patches."""
    cfg = ModelConfig(N=64, n_filters_scale=1, **overrides)
    C = cfg.n_channels
    rng = np.random.default_rng(len(overrides) + C)
    s = intensity_scale(1e9, 64)
    model = build_model(cfg, default_probe(64), s, seed=4)
    # Perturb lambda so input and output scalers are exercised away from log s.
    with torch.no_grad():
        model.log_intensity_scale.add_(0.1)
    x = torch.from_numpy((rng.uniform(0.0, 2.0, (3, 64, 64, C)) * s).astype(np.float32))
    offsets = torch.from_numpy(_group_offsets(rng, 3, C))
    trimmed, amp, intensity = model(x, offsets)
    assert trimmed.shape == (3, 64, 64, 1) and trimmed.dtype == torch.complex64
    assert amp.shape == intensity.shape == (3, 64, 64, C) and amp.dtype == torch.float32
    re, im = model.object_patches(x)
    weights = export_weights(model)
    want = ref.forward_model(
        _nhwc(re + 1j * im),
        offsets.numpy(),
        weights["physics/probe"],
        float(np.exp(np.float64(weights["physics/log_intensity_scale"]))),
        object_big=cfg.object_big,
        probe_big=cfg.probe_big,
        probe_mask=cfg.probe_mask,
        gaussian_smoothing_sigma=cfg.gaussian_smoothing_sigma,
    )
    for got, expected in zip((trimmed, amp, intensity), want, strict=True):
        assert rel(got.detach().numpy(), expected) <= TOL


def test_nll_and_mae_match_reference(rel):
    from ptycho_torch.losses import loss_terms

    rng = np.random.default_rng(9)
    pred = rng.uniform(0.0, 50.0, (4, 16, 16, 2)).astype(np.float32)
    pred[0, 0, 0, 0] = 0.0  # the log floor (1e-12) must keep this finite
    target = rng.uniform(0.0, 50.0, (4, 16, 16, 2)).astype(np.float32)
    nll, mae = loss_terms(torch.from_numpy(pred), torch.from_numpy(target))
    assert rel(nll.numpy(), ref_physics.poisson_nll(pred, target)) <= TOL
    assert rel(mae.numpy(), ref_physics.mae(pred, target)) <= TOL


@pytest.mark.parametrize("trainable", [True, False])
def test_intensity_scale_and_probe_are_parameters_iff_trainable(trainable):
    model = build_model(
        ModelConfig(N=64, n_filters_scale=1),
        default_probe(64),
        988.2,
        probe_trainable=trainable,
        intensity_scale_trainable=trainable,
    )
    names = {n for n, _ in model.named_parameters()}
    buffers = {n for n, _ in model.named_buffers()}
    for name in ("log_intensity_scale", "probe_real", "probe_imag"):
        assert (name in names) is trainable and (name in buffers) is not trainable
    # lambda = log s, float32 rounding of the stored value.
    assert math.isclose(float(model.log_intensity_scale.detach()), math.log(988.2), rel_tol=1e-6)
