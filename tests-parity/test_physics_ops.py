"""Row 1 of parity.md section 2: every physics op of both backends against the numpy reference.

Each test runs the TensorFlow and the PyTorch op on the same random, non-zero float32 input and
compares both with ``ptycho_api`` (computed in float64), so a failure names the side that drifted.
Offsets are sub-pixel and of both signs; several sizes.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import tensorflow as tf
import torch
from parity_helpers import TOL_OP, check_rel, complex_probe

from ptycho_api import forward as ref_forward
from ptycho_api import physics as ref
from ptycho_api.probe import normalize_probe
from ptycho_api.stitching import reassemble_position as ref_stitch
from ptycho_tf import inference as tf_inference
from ptycho_tf import losses as tf_losses
from ptycho_tf import physics as tf_physics
from ptycho_torch import inference as torch_inference
from ptycho_torch import losses as torch_losses
from ptycho_torch import physics as torch_physics

ROW = "physics ops vs numpy reference"


def _complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.uniform(0.2, 1.0, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))).astype(
        np.complex64
    )


def _offsets(rng: np.random.Generator, n: int, span: float) -> np.ndarray:
    """Sub-pixel offsets of both signs, never integers."""
    out = rng.uniform(-span, span, (n, 2))
    out[0] = [span * 0.37, -span * 0.61]
    out[-1] = [-span * 0.83, span * 0.29]
    return out.astype(np.float32)


def _nhwc_to_nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def _torch_pair(a: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex NHWC numpy -> the ``(re, im)`` NCHW pair ``ptycho_torch.physics`` takes."""
    return _nhwc_to_nchw(a.real.copy()), _nhwc_to_nchw(a.imag.copy())


def _from_torch_pair(pair: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """An ``(re, im)`` NCHW pair -> complex NHWC numpy."""
    return (pair[0].numpy() + 1j * pair[1].numpy()).transpose(0, 2, 3, 1)


@pytest.mark.parametrize("module", ["physics", "inference"])
def test_backends_mirror_public_names_and_arguments(module):
    """Keras-3 style: the same public names in both backends, with the same arguments in order.

    Only a trailing torch-only keyword (``device``) may be extra; types and layouts are each
    backend's own (documented in the module docstrings).
    """
    tf_mod = {"physics": tf_physics, "inference": tf_inference}[module]
    torch_mod = {"physics": torch_physics, "inference": torch_inference}[module]
    assert sorted(tf_mod.__all__) == sorted(torch_mod.__all__)
    for name in tf_mod.__all__:
        tf_params = list(inspect.signature(getattr(tf_mod, name)).parameters)
        torch_params = [
            p for p in inspect.signature(getattr(torch_mod, name)).parameters if p != "device"
        ]
        assert tf_params == torch_params, name


@pytest.mark.parametrize("shape", [(3, 16, 16, 1), (4, 33, 21, 2), (2, 64, 64, 3)])
def test_translate(shape):
    rng = np.random.default_rng(sum(shape))
    images = _complex(rng, shape)
    offsets = _offsets(rng, shape[0], 6.0)
    expected = ref.translate(images.astype(np.complex128), offsets.astype(np.float64))
    got_tf = tf_physics.translate_complex(tf.constant(images), tf.constant(offsets)).numpy()
    check_rel(ROW, got_tf, expected, TOL_OP, "translate: tensorflow")
    moved = torch_physics.translate_complex(_torch_pair(images), torch.from_numpy(offsets))
    got_torch = _from_torch_pair(moved)
    check_rel(ROW, got_torch, expected, TOL_OP, "translate: pytorch")


def test_translate_sign_convention():
    """B 1.1: a delta at (row 8, col 8) shifted by [2, -3] lands at (row 5, col 10) in both."""
    image = np.zeros((1, 16, 16, 1), np.float32)
    image[0, 8, 8, 0] = 1.0
    shift = np.array([[2.0, -3.0]], np.float32)
    got_tf = tf_physics.translate(tf.constant(image), tf.constant(shift)).numpy()
    got_torch = torch_physics.translate(_nhwc_to_nchw(image), torch.from_numpy(shift)).numpy()
    assert np.unravel_index(np.argmax(got_tf[0, ..., 0]), (16, 16)) == (5, 10), "tensorflow"
    assert np.unravel_index(np.argmax(got_torch[0, 0]), (16, 16)) == (5, 10), "pytorch"


GEOMETRIES = [(16, 1, True), (16, 2, True), (32, 2, False), (64, 1, True), (64, 2, True)]


@pytest.mark.parametrize(("N", "gridsize", "object_big"), GEOMETRIES)
def test_overlap_canvas_and_extraction(N, gridsize, object_big):
    rng = np.random.default_rng(N + gridsize)
    C = gridsize * gridsize
    K = C if object_big else 1
    B = 3
    padded = ref.padded_size(N, gridsize)
    patches = _complex(rng, (B, N, N, K))
    member = rng.uniform(-4.5, 4.5, (B, 2, C))
    local = (member.mean(axis=2, keepdims=True) - member)[:, None].astype(np.float32)
    expected = ref_forward.overlap_canvas(
        patches.astype(np.complex128), local.astype(np.float64), padded, object_big
    )
    got_tf = tf_physics.overlap_canvas(
        tf.constant(patches), tf.constant(local), padded, object_big
    ).numpy()
    check_rel(ROW, got_tf, expected, TOL_OP, "overlap canvas: tensorflow")
    re, im = torch_physics.overlap_canvas(
        _torch_pair(patches), torch.from_numpy(local), padded, object_big
    )
    got_torch = (re.numpy() + 1j * im.numpy())[..., None]
    check_rel(ROW, got_torch, expected, TOL_OP, "overlap canvas: pytorch")

    canvas = _complex(rng, (B, padded, padded, 1))
    expected = ref_forward.extract_from_canvas(
        canvas.astype(np.complex128), local.astype(np.float64), N
    )
    got_tf = tf_physics.extract_from_canvas(tf.constant(canvas), tf.constant(local), N).numpy()
    check_rel(ROW, got_tf, expected, TOL_OP, "extract patches: tensorflow")
    canvas_pair = (
        torch.from_numpy(canvas.real[..., 0].copy()),
        torch.from_numpy(canvas.imag[..., 0].copy()),
    )
    got_torch = _from_torch_pair(
        torch_physics.extract_from_canvas(canvas_pair, torch.from_numpy(local), N)
    )
    check_rel(ROW, got_torch, expected, TOL_OP, "extract patches: pytorch")


@pytest.mark.parametrize("N", [16, 64, 128])
def test_far_field(N):
    rng = np.random.default_rng(N)
    field = _complex(rng, (2, N, N, 3))
    expected = ref.far_field(field.astype(np.complex128), axes=(1, 2))
    got_tf = tf_physics.far_field(tf.constant(field)).numpy()
    check_rel(ROW, got_tf, expected, TOL_OP, "far field: tensorflow")
    got_torch = torch_physics.far_field(_torch_pair(field)).numpy()
    check_rel(ROW, got_torch.transpose(0, 2, 3, 1), expected, TOL_OP, "far field: pytorch")


@pytest.mark.parametrize("sigma", [0.5, 1.3])
def test_smoothing(sigma):
    rng = np.random.default_rng(7)
    field = _complex(rng, (2, 32, 32, 2))
    expected = ref_forward.smooth_field(field.astype(np.complex128), sigma)
    got_tf = tf_physics.smooth_field(tf.constant(field), sigma).numpy()
    check_rel(ROW, got_tf, expected, TOL_OP, "smoothing: tensorflow")
    got_torch = _from_torch_pair(torch_physics.smooth_field(_torch_pair(field), sigma))
    check_rel(ROW, got_torch, expected, TOL_OP, "smoothing: pytorch")


@pytest.mark.parametrize(("probe_mask", "sigma"), [(False, 0.0), (True, 0.0), (True, 0.7)])
def test_illumination(probe_mask, sigma):
    rng = np.random.default_rng(11)
    N = 64
    patches = _complex(rng, (2, N, N, 4))
    probe = complex_probe(N)
    expected = ref_forward.illuminate(
        patches.astype(np.complex128), probe.astype(np.complex128), probe_mask, sigma
    )
    got_tf = tf_physics.illuminate(
        tf.constant(patches), tf.constant(probe), probe_mask, sigma
    ).numpy()
    check_rel(ROW, got_tf, expected, TOL_OP, "illumination: tensorflow")
    p = torch.from_numpy(probe)
    got_torch = _from_torch_pair(
        torch_physics.illuminate(_torch_pair(patches), (p.real, p.imag), probe_mask, sigma)
    )
    check_rel(ROW, got_torch, expected, TOL_OP, "illumination: pytorch")


@pytest.mark.parametrize("shape", [(4, 16, 16, 1), (3, 64, 64, 4)])
def test_poisson_nll_and_mae(shape):
    rng = np.random.default_rng(shape[-1])
    # Scaled amplitudes in count units, including exact zeros of the prediction (the log floor).
    pred = rng.uniform(0.0, 40.0, shape).astype(np.float32)
    pred[0, 0, 0, 0] = 0.0
    target = np.sqrt(rng.poisson(pred.astype(np.float64) ** 2 + 1.0)).astype(np.float32)
    expected_nll = ref.poisson_nll(pred.astype(np.float64), target.astype(np.float64))
    expected_mae = ref.mae(pred.astype(np.float64), target.astype(np.float64))
    got_tf_nll, got_tf_mae_t = tf_losses.loss_terms(tf.constant(pred), tf.constant(target))
    got_tf = float(got_tf_nll)
    check_rel(ROW, got_tf, expected_nll, TOL_OP, "poisson nll: tensorflow")
    got_tf_mae = float(got_tf_mae_t)
    check_rel(ROW, got_tf_mae, expected_mae, TOL_OP, "mae: tensorflow")
    nll, mae = torch_losses.loss_terms(torch.from_numpy(pred), torch.from_numpy(target))
    check_rel(ROW, float(nll), expected_nll, TOL_OP, "poisson nll: pytorch")
    check_rel(ROW, float(mae), expected_mae, TOL_OP, "mae: pytorch")


@pytest.mark.parametrize(("N", "probe_scale"), [(64, 4.0), (128, 10.0)])
def test_probe_normalisation(N, probe_scale):
    """The model probe each backend derives from a raw probe equals ``normalize_probe``."""
    from parity_helpers import TF, TORCH, model_config

    raw = complex_probe(N) * np.float32(7.3)
    cfg = model_config(N=N, probe_scale=probe_scale)
    expected = normalize_probe(raw.astype(np.complex128), probe_scale)
    got_tf = TF.export_weights(TF.build_model(cfg, raw, 500.0, seed=0))["physics/probe"]
    check_rel(ROW, got_tf, expected, TOL_OP, "probe normalisation: tensorflow")
    got_torch = TORCH.export_weights(TORCH.build_model(cfg, raw, 500.0, seed=0))["physics/probe"]
    check_rel(ROW, got_torch, expected, TOL_OP, "probe normalisation: pytorch")


@pytest.mark.parametrize(("n_patches", "N", "M", "span"), [(7, 32, 20, 9.0), (40, 64, 20, 30.0)])
def test_stitching(n_patches, N, M, span):
    rng = np.random.default_rng(n_patches)
    patches = _complex(rng, (n_patches, N, N, 1))
    offsets = (rng.uniform(-span, span, (n_patches, 1, 2, 1)) + 50.0).astype(np.float64)
    expected = ref_stitch(patches.astype(np.complex128), offsets, M)
    got_tf = tf_inference.reassemble_position(patches, offsets, M)
    check_rel(ROW, got_tf, expected, TOL_OP, "stitching: tensorflow")
    got_torch = torch_inference.reassemble_position(patches, offsets, M, device="cpu")
    check_rel(ROW, got_torch, expected, TOL_OP, "stitching: pytorch")


STITCHERS = {
    "reference": ref_stitch,
    "tensorflow": tf_inference.reassemble_position,
    "pytorch": torch_inference.reassemble_position,
}


@pytest.mark.parametrize("stitcher", sorted(STITCHERS))
@pytest.mark.parametrize(
    ("shape", "n_offsets", "M", "message"),
    [
        ((2, 16, 16, 3), 2, 8, r"patches must be \(B, N, N, 1\) or \(B, N, N\)"),
        ((2, 16, 16, 1), 2, 20, r"crop size M must be in \[1, N=16\]; found 20"),
        ((2, 16, 16), 3, 8, "2 patches but 3 global offsets"),
    ],
)
def test_stitching_refuses_bad_input_alike(stitcher, shape, n_offsets, M, message):
    patches = np.ones(shape, np.complex64)
    offsets = np.zeros((n_offsets, 1, 2, 1))
    with pytest.raises(ValueError, match=message):
        STITCHERS[stitcher](patches, offsets, M)
