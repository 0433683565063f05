"""Triton kernels of ``ptycho_torch.kernels`` against the numpy oracle and ``ptycho_torch.physics``.

Without a CUDA device the kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1, set below
before anything imports Triton), which is slow: shapes are kept small.

Tolerances. Forward values are O(1) (standard-normal patches and canvases, unit-scale probe).
The oracle works in float64 and rounds once; the kernels and ``physics`` work in float32 and sum
the bilinear corners, the members and (in backward reductions) the batch in different orders, so
each output carries a few float32 roundings of O(1) terms: ``atol=2e-6, rtol=1e-5`` for forwards
(measured max error 1e-6), ``atol=1e-5, rtol=1e-5`` for gradients, which add up to 4*C
corner terms per pixel, and the probe gradient, a sum over all B*C members (measured max 2.4e-6).
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# nox -s torch installs Triton and sets PTYCHO_REQUIRE_TRITON: there a missing Triton fails.
if os.environ.get("PTYCHO_REQUIRE_TRITON"):
    import triton  # noqa: F401
else:
    pytest.importorskip("triton")

from ptycho_api import forward as reference  # noqa: E402
from ptycho_api.physics import padded_size  # noqa: E402
from ptycho_torch import kernels, physics  # noqa: E402

DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
FWD = {"atol": 2e-6, "rtol": 1e-5}
GRAD = {"atol": 1e-5, "rtol": 1e-5}

# (B, C, N, P, offset kind): gridsize 2 with the model's padded size, gridsize 1, offsets large
# enough that whole corners fall outside the patch or canvas, integer offsets (fraction 0), and
# the model's N=64 / P=74 at gridsize 1.
CASES = [
    pytest.param(3, 4, 16, padded_size(16, 2), "normal", id="gs2"),
    pytest.param(3, 1, 16, 16 + 8, "normal", id="gs1"),
    pytest.param(2, 4, 16, 16 + 8, "large", id="large-offsets"),
    pytest.param(3, 4, 16, 16 + 8, "integer", id="integer-offsets"),
    pytest.param(2, 1, 64, padded_size(64, 1), "normal", id="N64"),
]


def _offsets(B: int, C: int, kind: str, seed: int) -> torch.Tensor:
    """``(B, 1, 2, C)`` float32 offsets [x, y] in pixels."""
    rng = np.random.default_rng(seed)
    if kind == "large":
        # Beyond the pad and the patch half-width: some members leave the canvas entirely.
        values = rng.uniform(-20.0, 20.0, (B, 1, 2, C))
    elif kind == "integer":
        values = rng.integers(-4, 5, (B, 1, 2, C)).astype(np.float64)
    else:
        values = rng.normal(0.0, 3.0, (B, 1, 2, C))
    return torch.from_numpy(values.astype(np.float32)).to(DEVICE)


def _randn(*shape: int, seed: int, grad: bool = False) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator).to(DEVICE).requires_grad_(grad)


def _complex_numpy(re: torch.Tensor, im: torch.Tensor) -> np.ndarray:
    return (re.detach().cpu().numpy() + 1j * im.detach().cpu().numpy()).astype(np.complex64)


def _close(got: torch.Tensor, want: torch.Tensor | np.ndarray, tol: dict[str, float]) -> None:
    want = torch.as_tensor(np.asarray(want.detach().cpu() if torch.is_tensor(want) else want))
    torch.testing.assert_close(got.detach().cpu(), want.to(torch.float32), **tol)


def _grads(outputs: tuple[torch.Tensor, ...], inputs: tuple[torch.Tensor, ...], seed: int):
    """Gradients of ``sum(g_k * out_k)`` with fixed random cotangents ``g_k``."""
    loss = sum((out * _randn(*out.shape, seed=seed + k)).sum() for k, out in enumerate(outputs))
    return torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize(("B", "C", "N", "P", "kind"), CASES)
def test_overlap_canvas(B: int, C: int, N: int, P: int, kind: str) -> None:
    re, im = _randn(B, C, N, N, seed=1, grad=True), _randn(B, C, N, N, seed=2, grad=True)
    offsets = _offsets(B, C, kind, seed=3)
    got = kernels.overlap_canvas((re, im), offsets, P)
    # Oracle: channels-last complex patches, (B, P, P, 1) complex canvas.
    patches = np.moveaxis(_complex_numpy(re, im), 1, -1)
    oracle = reference.overlap_canvas(patches, offsets.cpu().numpy(), P)[..., 0]
    _close(got[0], oracle.real, FWD)
    _close(got[1], oracle.imag, FWD)
    want = physics.overlap_canvas((re, im), offsets, P)
    _close(got[0], want[0], FWD)
    _close(got[1], want[1], FWD)
    for g, w in zip(_grads(got, (re, im), 10), _grads(want, (re, im), 10), strict=True):
        _close(g, w, GRAD)


@pytest.mark.parametrize(("B", "C", "N", "P", "kind"), CASES)
def test_extract_illuminate(B: int, C: int, N: int, P: int, kind: str) -> None:
    c_re, c_im = _randn(B, P, P, seed=4, grad=True), _randn(B, P, P, seed=5, grad=True)
    p_re, p_im = _randn(N, N, seed=6, grad=True), _randn(N, N, seed=7, grad=True)
    offsets = _offsets(B, C, kind, seed=8)
    got = kernels.extract_illuminate((c_re, c_im), offsets, N, (p_re, p_im))
    canvas = _complex_numpy(c_re, c_im)[..., None]
    members = reference.extract_from_canvas(canvas, offsets.cpu().numpy(), N)
    oracle = np.moveaxis(reference.illuminate(members, _complex_numpy(p_re, p_im)), -1, 1)
    _close(got[0], oracle.real, FWD)
    _close(got[1], oracle.imag, FWD)
    extracted = physics.extract_from_canvas((c_re, c_im), offsets, N)
    want = physics.illuminate(extracted, (p_re, p_im))
    _close(got[0], want[0], FWD)
    _close(got[1], want[1], FWD)
    inputs = (c_re, c_im, p_re, p_im)
    for g, w in zip(_grads(got, inputs, 20), _grads(want, inputs, 20), strict=True):
        _close(g, w, GRAD)


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "centre-mask"])
def test_object_from_heads(masked: bool) -> None:
    amp = _randn(3, 4, 16, 16, seed=9).abs().requires_grad_(True)
    # Phases over several turns: cos and sin are checked away from the principal interval too.
    phase = (4.0 * _randn(3, 4, 16, 16, seed=10)).requires_grad_(True)
    mask = physics.center_mask(16).to(DEVICE) if masked else None
    got = kernels.object_from_heads(amp, phase, mask)
    scaled = amp * mask if masked else amp
    want = (scaled * torch.cos(phase), scaled * torch.sin(phase))
    oracle = amp.detach().double() * (1.0 if mask is None else mask.double())
    oracle = oracle * torch.exp(1j * phase.detach().double())
    _close(got[0], oracle.real, FWD)
    _close(got[1], oracle.imag, FWD)
    for g, w in zip(_grads(got, (amp, phase), 30), _grads(want, (amp, phase), 30), strict=True):
        _close(g, w, GRAD)


def test_chain_matches_physics() -> None:
    """Heads -> canvas -> exit wave -> far field, as the model chains them: values and gradients
    w.r.t. the heads and a trainable probe match the framework-op composition."""
    B, C, N = 2, 4, 16
    P = padded_size(N, 2)
    amp = _randn(B, C, N, N, seed=11).abs().requires_grad_(True)
    phase = _randn(B, C, N, N, seed=12, grad=True)
    p_re, p_im = _randn(N, N, seed=13, grad=True), _randn(N, N, seed=14, grad=True)
    offsets = _offsets(B, C, "normal", seed=15)
    mask = physics.center_mask(N).to(DEVICE)

    def fused() -> tuple[torch.Tensor, ...]:
        patches = kernels.object_from_heads(amp, phase, mask)
        canvas = kernels.overlap_canvas(patches, offsets, P)
        psi = kernels.extract_illuminate(canvas, offsets, N, (p_re, p_im))
        return (physics.far_field(psi), *physics.trim_canvas(canvas, N))

    def framework() -> tuple[torch.Tensor, ...]:
        patches = (amp * mask * torch.cos(phase), amp * mask * torch.sin(phase))
        canvas = physics.overlap_canvas(patches, offsets, P)
        psi = physics.illuminate(physics.extract_from_canvas(canvas, offsets, N), (p_re, p_im))
        return (physics.far_field(psi), *physics.trim_canvas(canvas, N))

    got, want = fused(), framework()
    for g, w in zip(got, want, strict=True):
        _close(g, w, FWD)
    inputs = (amp, phase, p_re, p_im)
    for g, w in zip(_grads(got, inputs, 40), _grads(want, inputs, 40), strict=True):
        _close(g, w, GRAD)


def test_no_grad_and_partial_grad() -> None:
    """Forward under no_grad (no denominator kept), and gradients only where inputs require them."""
    re, im = _randn(2, 4, 16, 16, seed=16), _randn(2, 4, 16, 16, seed=17)
    offsets = _offsets(2, 4, "normal", seed=18)
    with torch.no_grad():
        got = kernels.overlap_canvas((re, im), offsets, 24)
    want = physics.overlap_canvas((re, im), offsets, 24)
    _close(got[0], want[0], FWD)
    assert not got[0].requires_grad
    # Frozen probe (a buffer in the model): only the canvas gets a gradient.
    c_re, c_im = _randn(2, 24, 24, seed=19, grad=True), _randn(2, 24, 24, seed=20, grad=True)
    probe = (_randn(16, 16, seed=21), _randn(16, 16, seed=22))
    psi = kernels.extract_illuminate((c_re, c_im), offsets, 16, probe)
    want = physics.illuminate(physics.extract_from_canvas((c_re, c_im), offsets, 16), probe)
    for g, w in zip(_grads(psi, (c_re,), 50), _grads(want, (c_re,), 50), strict=True):
        _close(g, w, GRAD)


def test_object_big_false_and_bad_shapes() -> None:
    re, im = _randn(2, 1, 16, 16, seed=23), _randn(2, 1, 16, 16, seed=24)
    offsets = _offsets(2, 1, "normal", seed=25)
    got = kernels.overlap_canvas((re, im), offsets, 24, object_big=False)
    want = physics.overlap_canvas((re, im), offsets, 24, object_big=False)
    _close(got[0], want[0], {"atol": 0.0, "rtol": 0.0})
    with pytest.raises(ValueError, match="one patch per offset"):
        kernels.overlap_canvas((re, im), _offsets(2, 4, "normal", seed=26), 24)
    with pytest.raises(ValueError, match="even margin"):
        kernels.overlap_canvas((re, im), offsets, 23)
    with pytest.raises(ValueError, match="probe"):
        kernels.extract_illuminate((re[:, 0], im[:, 0]), offsets, 8, (re[0, 0], im[0, 0]))


def test_available_and_missing_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kernels.available()
    # Simulate an environment without Triton: importing it fails, the kernels were never loaded.
    monkeypatch.setitem(__import__("sys").modules, "triton", None)
    monkeypatch.setattr(kernels, "_state", {})
    assert not kernels.available()
    amp = torch.ones(1, 1, 4, 4)
    with pytest.raises(ImportError, match="pip install triton") as info:
        kernels.object_from_heads(amp, amp, None)
    assert isinstance(info.value, kernels.TritonUnavailableError)
