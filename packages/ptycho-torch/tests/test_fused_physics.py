"""``--kernels``: the model with its physics in the Triton kernels of ``ptycho_torch.kernels``.

Each kernel is checked against the numpy reference in ``test_kernels.py``; here the whole model
(network, fused physics, far field, loss) is compared with the same model on framework ops, in
the forward outputs and in every parameter's gradient, and the backend's option resolution is
checked. On a machine without a GPU the kernels run in Triton's CPU interpreter
(``TRITON_INTERPRET=1``, set before Triton is first used). ``nox -s torch`` installs Triton and
sets ``PTYCHO_REQUIRE_TRITON=1`` so that these tests can never be skipped there.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

if os.environ.get("PTYCHO_REQUIRE_TRITON"):
    import triton  # noqa: F401
else:
    pytest.importorskip("triton")

from ptycho_api.config import ModelConfig
from ptycho_api.errors import BackendError
from ptycho_api.execution import ExecutionOptions
from ptycho_torch.backend import Backend
from ptycho_torch.losses import loss_terms
from ptycho_torch.model import build_model

FORWARD_TOLERANCE = 1e-5
"""Relative (norm) difference of float32 outputs: the same arithmetic, summed in another order
(a member sum and a bilinear gather per pixel instead of interpolation matmuls), a few ulps
(6e-8) per op over ~10 ops; a wrong offset sign, weight or probe term errs at order 1e-1."""
GRADIENT_TOLERANCE = 1e-4
"""Relative (norm) difference of each parameter's float32 gradient, and of all of them together:
the forward's rounding amplified by the backward through the network (~15 layers) and the loss's
log (measured: at most 2.2e-5); a missing or misplaced adjoint term errs at order 1e-1."""
ROUNDING_NOISE_FACTOR = 10.0
"""A gradient that is a sum of terms cancelling to a small total (the phase head's bias) moves by
up to 10 % when the input changes by one float32 ulp, on framework ops alone. Such a parameter
is held to ten times that movement instead: a difference within rounding noise certifies the
same gradient; the other parameters and the total still hold the kernels to 1e-4."""


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want))


def _case(gridsize: int, object_big: bool, probe_trainable: bool):
    """A seeded small model with random inputs and in-group offsets within +-5 px.

    The target is the model's own prediction with 20 % multiplicative noise, as data near a
    solution are: the loss is then well conditioned. (Against targets unrelated to the
    prediction, the Poisson term's ``observed / predicted`` reaches 1e5 and a one-ulp change of
    the input moves some gradients by 1e-3 on framework ops alone.)
    """
    rng = np.random.default_rng(11)
    N, C = 64, gridsize * gridsize
    yy, xx = np.mgrid[:N, :N] - N / 2
    probe = (np.exp(-(xx**2 + yy**2) / 200.0) * np.exp(0.02j * xx * yy)).astype(np.complex64)
    config = ModelConfig(N=N, gridsize=gridsize, n_filters_scale=1, object_big=object_big)
    model = build_model(config, probe, 900.0, seed=5, probe_trainable=probe_trainable)
    x = torch.from_numpy(rng.random((3, N, N, C), dtype=np.float32) * 30.0)
    offsets = torch.from_numpy(rng.uniform(-5.0, 5.0, (3, 1, 2, C)).astype(np.float32))
    with torch.no_grad():
        predicted = model(x, offsets)[1]
    noise = torch.from_numpy(rng.uniform(0.8, 1.2, predicted.shape).astype(np.float32))
    return model, x, offsets, predicted * noise


def _run(model, x, offsets, target, fused: bool):
    model.fused_physics = fused
    model.zero_grad(set_to_none=True)
    trimmed, amp, _ = model(x, offsets)
    nll, _ = loss_terms(amp, target)
    nll.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return trimmed.detach(), amp.detach(), grads


@pytest.mark.parametrize(
    ("gridsize", "object_big", "probe_trainable"),
    [(2, True, False), (1, True, False), (2, False, True)],
    ids=["gs2-canvas", "gs1-canvas", "gs2-grid-trainable-probe"],
)
def test_fused_model_matches_framework_ops(gridsize, object_big, probe_trainable):
    model, x, offsets, target = _case(gridsize, object_big, probe_trainable)
    want_obj, want_amp, want_grads = _run(model, x, offsets, target, fused=False)
    got_obj, got_amp, got_grads = _run(model, x, offsets, target, fused=True)
    assert _rel(torch.view_as_real(got_obj), torch.view_as_real(want_obj)) <= FORWARD_TOLERANCE
    assert _rel(got_amp, want_amp) <= FORWARD_TOLERANCE
    assert set(got_grads) == set(want_grads)
    if probe_trainable:
        assert {"probe_real", "probe_imag"} <= set(got_grads)
    # The rounding noise of each gradient: framework ops on the input changed by one ulp.
    ulp = torch.from_numpy(np.random.default_rng(3).choice([-1.0, 1.0], x.shape)).float()
    _, _, noisy_grads = _run(model, x * (1.0 + 1.2e-7 * ulp), offsets, target, fused=False)
    for name, want in want_grads.items():
        noise = _rel(noisy_grads[name], want)
        bound = max(GRADIENT_TOLERANCE, ROUNDING_NOISE_FACTOR * noise)
        assert _rel(got_grads[name], want) <= bound, (name, noise)
    flat = [torch.cat([g[n].flatten() for n in sorted(g)]) for g in (got_grads, want_grads)]
    assert _rel(*flat) <= GRADIENT_TOLERANCE


def test_kernels_option_resolution(monkeypatch):
    backend = Backend()
    backend.apply_execution(ExecutionOptions(device="cpu", kernels="framework"))
    assert not backend.execution.fused_physics
    # auto fuses only on a CUDA GPU: the interpreter is for tests, far slower than framework ops.
    backend.apply_execution(ExecutionOptions(device="cpu", kernels="auto"))
    assert not backend.execution.fused_physics
    backend.apply_execution(ExecutionOptions(device="cpu", kernels="fused"))
    assert backend.execution.fused_physics
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendError, match="--kernels fused: expected the triton package and a "):
        backend.apply_execution(ExecutionOptions(device="cpu", kernels="fused"))


def test_self_check_passes_here_and_a_failing_one_refuses_the_kernels(monkeypatch):
    from ptycho_torch import kernels

    assert kernels.self_check("cpu") <= kernels.SELF_CHECK_TOLERANCE
    # A device on which the kernels compute something else: refused, naming the difference.
    monkeypatch.setattr(kernels, "self_check", lambda device: 0.3)
    with pytest.raises(BackendError, match=r"within 1e-05 of PyTorch's ops on cpu; found a rel"):
        Backend().apply_execution(ExecutionOptions(device="cpu", kernels="fused"))

    def broken(device: str) -> float:
        raise RuntimeError("PTX compile failed")

    monkeypatch.setattr(kernels, "self_check", broken)
    with pytest.raises(BackendError, match="found RuntimeError: PTX compile failed"):
        Backend().apply_execution(ExecutionOptions(device="cpu", kernels="fused"))


def test_predict_with_fused_kernels_matches_framework_ops(scan_64):
    from ptycho_api.config import InferenceConfig
    from ptycho_api.normalization import intensity_scale
    from ptycho_api.workflows import as_container

    scale = intensity_scale(1e9, 64)
    container = as_container(
        scan_64, InferenceConfig(model=ModelConfig(N=64, gridsize=1)), nphotons=1e9
    )
    x = container.X[:16] * np.float32(scale)
    offsets = container.local_offsets[:16]
    backend = Backend()
    model = backend.build_model(
        ModelConfig(N=64, gridsize=1, n_filters_scale=1), container.probe, scale, seed=3
    )
    results = {}
    for kernels in ("framework", "fused"):
        backend.apply_execution(ExecutionOptions(device="cpu", kernels=kernels))
        results[kernels] = backend.predict(model, x, offsets, batch_size=8)
    error = np.linalg.norm(results["fused"] - results["framework"]) / np.linalg.norm(
        results["framework"]
    )
    assert error <= FORWARD_TOLERANCE
