"""Triton kernels for the physics around the network (B 7.6, B 7.7): drop-in fused replacements.

What is fused:

* ``object_from_heads``: decoder amplitude and phase heads (times the optional centre mask) to the
  real and imaginary object patches, ``amp*mask*cos(phase)`` and ``amp*mask*sin(phase)``.
* ``overlap_canvas`` (``object_big`` only): canvas weighting, zero padding, bilinear translation of
  every member, the sum over the members of a group and the division by the summed weight,
  in one kernel launch; the weight map and the denominator are computed in the kernel, not read.
* ``extract_illuminate``: re-extraction of every member from its group's canvas (bilinear
  translation and crop) times the probe, giving the exit wave.

Why: these steps are a handful of flops per pixel each, so in framework ops they are bound by
launches and memory traffic (``physics.overlap_canvas`` alone materialises a ``(B*C, 3, P, P)``
stack and two interpolation matrices per image). Each kernel here reads its inputs once and writes
its outputs once. The backward passes are kernels as well. A bilinear translation by a uniform
per-image shift ``s = a + f`` (``a = floor(s)`` in float64, ``f`` in ``[0, 1)``) is
``out[i] = (1-f) in[a+i] + f in[a+i+1]`` with out-of-image corners contributing zero; its adjoint is
again a gather (``g_in[k] = (1-f) g_out[k-a] + f g_out[k-a-1]``), so no backward needs atomics.
The numbers match :mod:`ptycho_torch.physics` to float32 rounding (summation order differs).
Offsets are data: no gradient flows to them (``physics`` would give one through ``f``).

Triton is imported and the kernels are JIT-wrapped on first use, so importing this module needs
no Triton, and ``TRITON_INTERPRET=1`` set any time before the first kernel call selects Triton's
CPU interpreter (which accepts CPU tensors); otherwise the tensors must be on a CUDA device.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

import torch
from torch.autograd.function import FunctionCtx, once_differentiable

from ptycho_api.forward import CANVAS_BORDER_WEIGHT, CANVAS_DENOMINATOR_EPS
from ptycho_torch import physics

__all__ = [
    "TritonUnavailableError",
    "available",
    "self_check",
    "SELF_CHECK_TOLERANCE",
    "interpreter_requested",
    "object_from_heads",
    "overlap_canvas",
    "extract_illuminate",
]

Pair = tuple[torch.Tensor, torch.Tensor]

_BLOCK = 256
"""Pixels per program: every kernel works on flat 1-D blocks of pixels."""
_MAX_PROBE_SPLIT = 64
"""Programs per pixel block in the probe-gradient reduction over B*C (partials summed after)."""

# Bound to ``triton.language`` by ``_load`` (the kernels below refer to it as a global). The kernel
# functions are plain functions until ``_load`` replaces each by its ``triton.jit`` wrapper, so
# kernels calling helpers resolve them to the JIT-ed versions.
tl: Any = None
_state: dict[str, Any] = {}
_lock = threading.Lock()


class TritonUnavailableError(ImportError):
    """Raised when a kernel is called but Triton cannot be imported."""


def interpreter_requested() -> bool:
    """True when ``TRITON_INTERPRET`` is set to a true value (Triton's own spelling rules)."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes")


def available() -> bool:
    """Whether the kernels can run here: Triton importable and CUDA present or the interpreter on."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return interpreter_requested() or torch.cuda.is_available()


# ----------------------------------------------------------------------------------------------
# Kernels (plain functions until ``_load`` JIT-wraps them; annotations are strings, which Triton
# reads for ``constexpr``).


def _split_start(start):
    """Float64 scalar start -> (int32 floor, float32 fraction), as the reference forms them."""
    a = tl.floor(start)
    return a.to(tl.int32), (start - a).to(tl.float32)


def _member_starts(off_ptr, b, c, C, PAD: tl.constexpr, SIGN: tl.constexpr):
    """Member c of group b: split starts of ``SIGN * (o - PAD)`` -> (ay, fy, ax, fx).

    ``SIGN`` 1: where the canvas samples the patch (o - p); -1: where the patch samples the
    canvas (p - o). Offsets ``(B, 1, 2, C)`` are read and widened to float64 as given.
    """
    ox = tl.load(off_ptr + b * 2 * C + c).to(tl.float64)
    oy = tl.load(off_ptr + b * 2 * C + C + c).to(tl.float64)
    ay, fy = _split_start(SIGN * (oy - PAD))
    ax, fx = _split_start(SIGN * (ox - PAD))
    return ay, fy, ax, fx


def _canvas_weight(ky, kx, N: tl.constexpr, BORDER: tl.constexpr):
    """``canvas_weight(N)`` at patch pixels ``(ky, kx)``: 1 in the centre box, BORDER outside."""
    inside = (ky >= N // 4) & (ky < 3 * N // 4) & (kx >= N // 4) & (kx < 3 * N // 4)
    return tl.where(inside, 1.0, BORDER)


def _load_pair(re_ptr, im_ptr, base, y, x, live, H: tl.constexpr, W: tl.constexpr):
    """Load ``(re, im)`` at rows y, columns x of an H x W image at ``base``; 0 outside (and mask)."""
    ok = live & (y >= 0) & (y < H) & (x >= 0) & (x < W)
    idx = base + y * W + x
    return ok, tl.load(re_ptr + idx, mask=ok, other=0.0), tl.load(im_ptr + idx, mask=ok, other=0.0)


def _overlap_corner(re_ptr, im_ptr, base, ky, kx, wgt, live, N: tl.constexpr, BORDER: tl.constexpr):
    """One bilinear corner of a member: ``(wgt*w*re, wgt*w*im, wgt*w)``, zero outside the patch."""
    ok, v_re, v_im = _load_pair(re_ptr, im_ptr, base, ky, kx, live, N, N)
    ww = tl.where(ok, wgt * _canvas_weight(ky, kx, N, BORDER), 0.0)
    return ww * v_re, ww * v_im, ww


def _overlap_fwd_kernel(
    re_ptr,
    im_ptr,
    off_ptr,
    out_re_ptr,
    out_im_ptr,
    den_ptr,
    C,
    N: tl.constexpr,
    P: tl.constexpr,
    PAD: tl.constexpr,
    BORDER: tl.constexpr,
    EPS: tl.constexpr,
    STORE_DEN: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Grid (B, pixel blocks of P*P): weighted bilinear sum of a group's members / summed weight."""
    b = tl.program_id(0)
    pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = pix < P * P
    i = pix // P
    j = pix % P
    # tl.full, not tl.zeros: Triton's standard-library helpers are jit functions bound when Triton
    # is imported, and stay compiled-mode ones if that happened before TRITON_INTERPRET was set
    # (torch.compile imports Triton), which the interpreter then cannot call.
    num_re = tl.full([BLOCK], 0.0, tl.float32)
    num_im = tl.full([BLOCK], 0.0, tl.float32)
    den = tl.full([BLOCK], 0.0, tl.float32)
    for c in range(C):
        # T_{-o}[pad_p(w O)] at canvas pixel i samples the patch at i + o - p.
        ay, fy, ax, fx = _member_starts(off_ptr, b, c, C, PAD, 1)
        base = (b * C + c).to(tl.int64) * (N * N)
        y0 = ay + i
        x0 = ax + j
        r, m, d = _overlap_corner(
            re_ptr, im_ptr, base, y0, x0, (1 - fy) * (1 - fx), live, N, BORDER
        )
        num_re += r
        num_im += m
        den += d
        r, m, d = _overlap_corner(re_ptr, im_ptr, base, y0, x0 + 1, (1 - fy) * fx, live, N, BORDER)
        num_re += r
        num_im += m
        den += d
        r, m, d = _overlap_corner(re_ptr, im_ptr, base, y0 + 1, x0, fy * (1 - fx), live, N, BORDER)
        num_re += r
        num_im += m
        den += d
        r, m, d = _overlap_corner(re_ptr, im_ptr, base, y0 + 1, x0 + 1, fy * fx, live, N, BORDER)
        num_re += r
        num_im += m
        den += d
    den = den + EPS
    out = b.to(tl.int64) * (P * P) + pix
    tl.store(out_re_ptr + out, num_re / den, mask=live)
    tl.store(out_im_ptr + out, num_im / den, mask=live)
    if STORE_DEN:
        tl.store(den_ptr + out, den, mask=live)


def _scaled_corner(g_re_ptr, g_im_ptr, den_ptr, base, y, x, wgt, live, P: tl.constexpr):
    """One adjoint corner of the overlap: ``wgt * g / den`` at canvas pixel (y, x), 0 outside."""
    ok, g_re, g_im = _load_pair(g_re_ptr, g_im_ptr, base, y, x, live, P, P)
    # Masked lanes read a denominator of 1 so they never divide by zero.
    den = tl.load(den_ptr + base + y * P + x, mask=ok, other=1.0)
    scale = wgt / den
    return scale * g_re, scale * g_im


def _overlap_bwd_kernel(
    g_re_ptr,
    g_im_ptr,
    den_ptr,
    off_ptr,
    gp_re_ptr,
    gp_im_ptr,
    C,
    N: tl.constexpr,
    P: tl.constexpr,
    PAD: tl.constexpr,
    BORDER: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Grid (B*C, pixel blocks of N*N): gradient of one member's patch, gathered from the canvas."""
    mem = tl.program_id(0)
    b = mem // C
    c = mem % C
    pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = pix < N * N
    ky = pix // N
    kx = pix % N
    ay, fy, ax, fx = _member_starts(off_ptr, b, c, C, PAD, 1)
    # Patch pixel k feeds canvas pixel k - a with weight 1-f and k - a - 1 with weight f.
    y0 = ky - ay
    x0 = kx - ax
    base = tl.cast(b, tl.int64) * (P * P)
    acc_re, acc_im = _scaled_corner(
        g_re_ptr, g_im_ptr, den_ptr, base, y0, x0, (1 - fy) * (1 - fx), live, P
    )
    r, m = _scaled_corner(g_re_ptr, g_im_ptr, den_ptr, base, y0, x0 - 1, (1 - fy) * fx, live, P)
    acc_re += r
    acc_im += m
    r, m = _scaled_corner(g_re_ptr, g_im_ptr, den_ptr, base, y0 - 1, x0, fy * (1 - fx), live, P)
    acc_re += r
    acc_im += m
    r, m = _scaled_corner(g_re_ptr, g_im_ptr, den_ptr, base, y0 - 1, x0 - 1, fy * fx, live, P)
    acc_re += r
    acc_im += m
    w = _canvas_weight(ky, kx, N, BORDER)
    out = mem.to(tl.int64) * (N * N) + pix
    tl.store(gp_re_ptr + out, w * acc_re, mask=live)
    tl.store(gp_im_ptr + out, w * acc_im, mask=live)


def _extract_member(
    c_re_ptr,
    c_im_ptr,
    off_ptr,
    b,
    c,
    i,
    j,
    live,
    C,
    N: tl.constexpr,
    P: tl.constexpr,
    PAD: tl.constexpr,
):
    """Member c of group b re-extracted at patch pixels (i, j): canvas sampled at p - o + (i, j)."""
    ay, fy, ax, fx = _member_starts(off_ptr, b, c, C, PAD, -1)
    base = tl.cast(b, tl.int64) * (P * P)
    y0 = ay + i
    x0 = ax + j
    _, r00, m00 = _load_pair(c_re_ptr, c_im_ptr, base, y0, x0, live, P, P)
    _, r01, m01 = _load_pair(c_re_ptr, c_im_ptr, base, y0, x0 + 1, live, P, P)
    _, r10, m10 = _load_pair(c_re_ptr, c_im_ptr, base, y0 + 1, x0, live, P, P)
    _, r11, m11 = _load_pair(c_re_ptr, c_im_ptr, base, y0 + 1, x0 + 1, live, P, P)
    w00 = (1 - fy) * (1 - fx)
    w01 = (1 - fy) * fx
    w10 = fy * (1 - fx)
    w11 = fy * fx
    o_re = w00 * r00 + w01 * r01 + w10 * r10 + w11 * r11
    o_im = w00 * m00 + w01 * m01 + w10 * m10 + w11 * m11
    return o_re, o_im


def _extract_fwd_kernel(
    c_re_ptr,
    c_im_ptr,
    off_ptr,
    p_re_ptr,
    p_im_ptr,
    psi_re_ptr,
    psi_im_ptr,
    C,
    N: tl.constexpr,
    P: tl.constexpr,
    PAD: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Grid (B*C, pixel blocks of N*N): exit wave = probe * member re-extracted from the canvas."""
    mem = tl.program_id(0)
    b = mem // C
    c = mem % C
    pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = pix < N * N
    o_re, o_im = _extract_member(
        c_re_ptr, c_im_ptr, off_ptr, b, c, pix // N, pix % N, live, C, N, P, PAD
    )
    p_re = tl.load(p_re_ptr + pix, mask=live, other=0.0)
    p_im = tl.load(p_im_ptr + pix, mask=live, other=0.0)
    out = mem.to(tl.int64) * (N * N) + pix
    tl.store(psi_re_ptr + out, p_re * o_re - p_im * o_im, mask=live)
    tl.store(psi_im_ptr + out, p_re * o_im + p_im * o_re, mask=live)


def _probe_adjoint_corner(
    g_re_ptr, g_im_ptr, p_re_ptr, p_im_ptr, base, y, x, wgt, live, N: tl.constexpr
):
    """One adjoint corner of the extraction: ``wgt * conj(probe) * g_psi`` at (y, x), 0 outside."""
    ok, g_re, g_im = _load_pair(g_re_ptr, g_im_ptr, base, y, x, live, N, N)
    _, p_re, p_im = _load_pair(p_re_ptr, p_im_ptr, 0, y, x, ok, N, N)
    return wgt * (p_re * g_re + p_im * g_im), wgt * (p_re * g_im - p_im * g_re)


def _extract_bwd_canvas_kernel(
    g_re_ptr,
    g_im_ptr,
    off_ptr,
    p_re_ptr,
    p_im_ptr,
    gc_re_ptr,
    gc_im_ptr,
    C,
    N: tl.constexpr,
    P: tl.constexpr,
    PAD: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Grid (B, pixel blocks of P*P): canvas gradient, gathered over the members of the group."""
    b = tl.program_id(0)
    pix = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = pix < P * P
    ky = pix // P
    kx = pix % P
    acc_re = tl.full([BLOCK], 0.0, tl.float32)
    acc_im = tl.full([BLOCK], 0.0, tl.float32)
    for c in range(C):
        ay, fy, ax, fx = _member_starts(off_ptr, b, c, C, PAD, -1)
        base = (b * C + c).to(tl.int64) * (N * N)
        # Canvas pixel k feeds patch pixel k - a with weight 1-f and k - a - 1 with weight f.
        y0 = ky - ay
        x0 = kx - ax
        r, m = _probe_adjoint_corner(
            g_re_ptr, g_im_ptr, p_re_ptr, p_im_ptr, base, y0, x0, (1 - fy) * (1 - fx), live, N
        )
        acc_re += r
        acc_im += m
        r, m = _probe_adjoint_corner(
            g_re_ptr, g_im_ptr, p_re_ptr, p_im_ptr, base, y0, x0 - 1, (1 - fy) * fx, live, N
        )
        acc_re += r
        acc_im += m
        r, m = _probe_adjoint_corner(
            g_re_ptr, g_im_ptr, p_re_ptr, p_im_ptr, base, y0 - 1, x0, fy * (1 - fx), live, N
        )
        acc_re += r
        acc_im += m
        r, m = _probe_adjoint_corner(
            g_re_ptr, g_im_ptr, p_re_ptr, p_im_ptr, base, y0 - 1, x0 - 1, fy * fx, live, N
        )
        acc_re += r
        acc_im += m
    out = b.to(tl.int64) * (P * P) + pix
    tl.store(gc_re_ptr + out, acc_re, mask=live)
    tl.store(gc_im_ptr + out, acc_im, mask=live)


def _extract_bwd_probe_kernel(
    g_re_ptr,
    g_im_ptr,
    c_re_ptr,
    c_im_ptr,
    off_ptr,
    part_re_ptr,
    part_im_ptr,
    M,
    C,
    SPLIT,
    N: tl.constexpr,
    P: tl.constexpr,
    PAD: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Grid (pixel blocks of N*N, SPLIT): partial probe gradients over members pid1, pid1+SPLIT, ..."""
    pix = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    split = tl.program_id(1)
    live = pix < N * N
    i = pix // N
    j = pix % N
    acc_re = tl.full([BLOCK], 0.0, tl.float32)
    acc_im = tl.full([BLOCK], 0.0, tl.float32)
    # A fixed stride over the members (no atomics): the reduction order, hence the result, is
    # deterministic; the SPLIT partials are summed afterwards.
    for mem in range(split, M, SPLIT):
        b = mem // C
        c = mem % C
        o_re, o_im = _extract_member(c_re_ptr, c_im_ptr, off_ptr, b, c, i, j, live, C, N, P, PAD)
        at = tl.cast(mem, tl.int64) * (N * N) + pix
        g_re = tl.load(g_re_ptr + at, mask=live, other=0.0)
        g_im = tl.load(g_im_ptr + at, mask=live, other=0.0)
        # d psi / d probe = member: the gradient is conj(member) * g_psi.
        acc_re += o_re * g_re + o_im * g_im
        acc_im += o_re * g_im - o_im * g_re
    out = split.to(tl.int64) * (N * N) + pix
    tl.store(part_re_ptr + out, acc_re, mask=live)
    tl.store(part_im_ptr + out, acc_im, mask=live)


def _heads_fwd_kernel(
    amp_ptr,
    phase_ptr,
    mask_ptr,
    re_ptr,
    im_ptr,
    total,
    HW,
    HAS_MASK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Grid (blocks of all elements): ``(amp*mask*cos(phase), amp*mask*sin(phase))``."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < total
    amp = tl.load(amp_ptr + offs, mask=live, other=0.0)
    phase = tl.load(phase_ptr + offs, mask=live, other=0.0)
    if HAS_MASK:
        # The (H, W) mask repeats every H*W elements of the contiguous (..., H, W) heads.
        amp = amp * tl.load(mask_ptr + offs % HW, mask=live, other=0.0)
    tl.store(re_ptr + offs, amp * tl.cos(phase), mask=live)
    tl.store(im_ptr + offs, amp * tl.sin(phase), mask=live)


def _heads_bwd_kernel(
    amp_ptr,
    phase_ptr,
    mask_ptr,
    g_re_ptr,
    g_im_ptr,
    g_amp_ptr,
    g_phase_ptr,
    total,
    HW,
    HAS_MASK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Grid (blocks of all elements): gradients of ``object_from_heads`` w.r.t. amp and phase."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < total
    amp = tl.load(amp_ptr + offs, mask=live, other=0.0)
    phase = tl.load(phase_ptr + offs, mask=live, other=0.0)
    g_re = tl.load(g_re_ptr + offs, mask=live, other=0.0)
    g_im = tl.load(g_im_ptr + offs, mask=live, other=0.0)
    cos = tl.cos(phase)
    sin = tl.sin(phase)
    along = g_re * cos + g_im * sin
    if HAS_MASK:
        mask = tl.load(mask_ptr + offs % HW, mask=live, other=0.0)
        along = along * mask
        amp = amp * mask
    tl.store(g_amp_ptr + offs, along, mask=live)
    tl.store(g_phase_ptr + offs, amp * (g_im * cos - g_re * sin), mask=live)


_JIT_NAMES = (
    "_split_start",
    "_member_starts",
    "_canvas_weight",
    "_load_pair",
    "_overlap_corner",
    "_overlap_fwd_kernel",
    "_scaled_corner",
    "_overlap_bwd_kernel",
    "_extract_member",
    "_extract_fwd_kernel",
    "_probe_adjoint_corner",
    "_extract_bwd_canvas_kernel",
    "_extract_bwd_probe_kernel",
    "_heads_fwd_kernel",
    "_heads_bwd_kernel",
)


def _load() -> None:
    """Import Triton and JIT-wrap the kernels once (interpreter or compiler is chosen here)."""
    if _state:
        return
    with _lock:
        if _state:
            return
        try:
            import triton
            import triton.language as language
        except ImportError as err:
            raise TritonUnavailableError(
                "ptycho_torch.kernels needs Triton: pip install triton "
                "(then run on a CUDA device, or set TRITON_INTERPRET=1 for the CPU interpreter)"
            ) from err
        namespace = globals()
        namespace["tl"] = language
        for name in _JIT_NAMES:
            namespace[name] = triton.jit(namespace[name])
        _state["interpret"] = interpreter_requested()


def _check_device(*tensors: torch.Tensor) -> None:
    """Raise unless the tensors share one device the loaded kernels can run on."""
    _load()
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(
            f"ptycho_torch.kernels: tensors on several devices: {sorted(map(str, devices))}"
        )
    device = devices.pop()
    if device.type != "cuda" and not _state["interpret"]:
        raise RuntimeError(
            f"ptycho_torch.kernels: tensors on {device} need TRITON_INTERPRET=1 set before the "
            "first kernel call (Triton compiles for CUDA devices only)"
        )


def _f32(t: torch.Tensor) -> torch.Tensor:
    """Contiguous float32 view or copy (no copy for a contiguous float32 tensor)."""
    return t.to(torch.float32).contiguous()


def _offsets(local_offsets: torch.Tensor, B: int) -> tuple[torch.Tensor, int]:
    """Validate ``(B, 1, 2, C)`` offsets -> (contiguous offsets in their own float dtype, C)."""
    if local_offsets.ndim != 4 or local_offsets.shape[:3] != (B, 1, 2):
        raise ValueError(
            f"local_offsets must be ({B}, 1, 2, C); found {tuple(local_offsets.shape)}"
        )
    if not local_offsets.is_floating_point():
        local_offsets = local_offsets.to(torch.float64)
    # The kernels widen to float64 themselves, so a float64 offset is used exactly as given.
    return local_offsets.detach().contiguous(), local_offsets.shape[-1]


# ----------------------------------------------------------------------------------------------
# Autograd wrappers.


class _OverlapCanvas(torch.autograd.Function):
    """``overlap_canvas`` for ``object_big``: patches ``(B, C, N, N)`` pair -> canvas ``(B, P, P)`` pair."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        re: torch.Tensor,
        im: torch.Tensor,
        offsets: torch.Tensor,
        padded: int,
        save: bool,
    ) -> Pair:
        """Launch the one forward kernel; keep the denominator for the backward when ``save``."""
        B, C, N, _ = re.shape
        out_re = re.new_empty((B, padded, padded))
        out_im = torch.empty_like(out_re)
        den = torch.empty_like(out_re) if save else out_re
        grid = (B, -(-(padded * padded) // _BLOCK))
        _overlap_fwd_kernel[grid](
            re, im, offsets, out_re, out_im, den, C,
            N=N, P=padded, PAD=(padded - N) // 2, BORDER=CANVAS_BORDER_WEIGHT,
            EPS=CANVAS_DENOMINATOR_EPS, STORE_DEN=save, BLOCK=_BLOCK,
        )  # fmt: skip
        if save:
            ctx.save_for_backward(offsets, den)
        ctx.shape = (B, C, N, padded)
        return out_re, out_im

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_re: torch.Tensor, g_im: torch.Tensor) -> tuple[Any, ...]:
        """Gradient w.r.t. the real and imaginary patches (offsets are data: none)."""
        offsets, den = ctx.saved_tensors
        B, C, N, P = ctx.shape
        gp_re = den.new_empty((B, C, N, N))
        gp_im = torch.empty_like(gp_re)
        grid = (B * C, -(-(N * N) // _BLOCK))
        _overlap_bwd_kernel[grid](
            _f32(g_re), _f32(g_im), den, offsets, gp_re, gp_im, C,
            N=N, P=P, PAD=(P - N) // 2, BORDER=CANVAS_BORDER_WEIGHT, BLOCK=_BLOCK,
        )  # fmt: skip
        return gp_re, gp_im, None, None, None


class _ExtractIlluminate(torch.autograd.Function):
    """Canvas ``(B, P, P)`` pair, offsets, probe ``(N, N)`` pair -> exit wave ``(B, C, N, N)`` pair."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        c_re: torch.Tensor,
        c_im: torch.Tensor,
        offsets: torch.Tensor,
        N: int,
        p_re: torch.Tensor,
        p_im: torch.Tensor,
    ) -> Pair:
        """Launch the one forward kernel."""
        B, P, _ = c_re.shape
        C = offsets.shape[-1]
        psi_re = c_re.new_empty((B, C, N, N))
        psi_im = torch.empty_like(psi_re)
        grid = (B * C, -(-(N * N) // _BLOCK))
        _extract_fwd_kernel[grid](
            c_re, c_im, offsets, p_re, p_im, psi_re, psi_im, C,
            N=N, P=P, PAD=(P - N) // 2, BLOCK=_BLOCK,
        )  # fmt: skip
        ctx.save_for_backward(c_re, c_im, offsets, p_re, p_im)
        ctx.shape = (B, C, N, P)
        return psi_re, psi_im

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_re: torch.Tensor, g_im: torch.Tensor) -> tuple[Any, ...]:
        """Gradients w.r.t. the canvas parts and the probe parts (each only when needed)."""
        c_re, c_im, offsets, p_re, p_im = ctx.saved_tensors
        B, C, N, P = ctx.shape
        PAD = (P - N) // 2
        g_re, g_im = _f32(g_re), _f32(g_im)
        gc_re = gc_im = gpr = gpi = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            gc_re = c_re.new_empty((B, P, P))
            gc_im = torch.empty_like(gc_re)
            grid = (B, -(-(P * P) // _BLOCK))
            _extract_bwd_canvas_kernel[grid](
                g_re, g_im, offsets, p_re, p_im, gc_re, gc_im, C,
                N=N, P=P, PAD=PAD, BLOCK=_BLOCK,
            )  # fmt: skip
        if ctx.needs_input_grad[4] or ctx.needs_input_grad[5]:
            M = B * C
            split = max(1, min(M, _MAX_PROBE_SPLIT))
            part_re = c_re.new_empty((split, N, N))
            part_im = torch.empty_like(part_re)
            grid = (-(-(N * N) // _BLOCK), split)
            _extract_bwd_probe_kernel[grid](
                g_re, g_im, c_re, c_im, offsets, part_re, part_im, M, C, split,
                N=N, P=P, PAD=PAD, BLOCK=_BLOCK,
            )  # fmt: skip
            gpr, gpi = part_re.sum(dim=0), part_im.sum(dim=0)
        return gc_re, gc_im, None, None, gpr, gpi


class _ObjectFromHeads(torch.autograd.Function):
    """Heads ``(..., H, W)`` amp and phase, optional ``(H, W)`` mask -> object ``(re, im)``."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, amp: torch.Tensor, phase: torch.Tensor, mask: torch.Tensor | None
    ) -> Pair:
        """Launch the one forward kernel."""
        re = torch.empty_like(amp)
        im = torch.empty_like(amp)
        total = amp.numel()
        HW = amp.shape[-2] * amp.shape[-1]
        grid = (-(-total // _BLOCK),)
        # Without a mask the pointer argument is unused; any tensor will do.
        mask_arg = amp if mask is None else mask
        _heads_fwd_kernel[grid](
            amp, phase, mask_arg, re, im, total, HW, HAS_MASK=mask is not None, BLOCK=_BLOCK
        )
        ctx.save_for_backward(amp, phase, mask_arg)
        ctx.has_mask = mask is not None
        return re, im

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_re: torch.Tensor, g_im: torch.Tensor) -> tuple[Any, ...]:
        """Gradients w.r.t. amp and phase (the mask is a constant)."""
        amp, phase, mask_arg = ctx.saved_tensors
        g_amp = torch.empty_like(amp)
        g_phase = torch.empty_like(amp)
        total = amp.numel()
        HW = amp.shape[-2] * amp.shape[-1]
        grid = (-(-total // _BLOCK),)
        _heads_bwd_kernel[grid](
            amp, phase, mask_arg, _f32(g_re), _f32(g_im), g_amp, g_phase, total, HW,
            HAS_MASK=ctx.has_mask, BLOCK=_BLOCK,
        )  # fmt: skip
        return g_amp, g_phase, None


# ----------------------------------------------------------------------------------------------
# Public drop-in functions.


def object_from_heads(amp: torch.Tensor, phase: torch.Tensor, mask: torch.Tensor | None) -> Pair:
    """``(B, C, N, N)`` amp and phase, ``(N, N)`` mask or None -> ``(amp*mask*cos, amp*mask*sin)``."""
    if amp.shape != phase.shape or amp.ndim < 2:
        raise ValueError(f"amp {tuple(amp.shape)} and phase {tuple(phase.shape)} must match")
    _check_device(amp, phase, *([] if mask is None else [mask]))
    if mask is not None:
        if mask.shape[-2:] != amp.shape[-2:] or mask.numel() != amp.shape[-2] * amp.shape[-1]:
            raise ValueError(f"mask must be {tuple(amp.shape[-2:])}; found {tuple(mask.shape)}")
        mask = _f32(mask.detach())
    if amp.numel() == 0:
        empty = amp.new_zeros(amp.shape, dtype=torch.float32)
        return empty, empty.clone()
    return _ObjectFromHeads.apply(_f32(amp), _f32(phase), mask)


def overlap_canvas(
    patches: Pair, local_offsets: torch.Tensor, padded: int, object_big: bool = True
) -> Pair:
    """Fused ``physics.overlap_canvas``: ``(B, C, N, N)`` pair -> ``(B, P, P)`` canvas pair.

    ``object_big=False`` (a plain zero pad, nothing to fuse) is delegated to ``physics``.
    """
    re, im = patches
    if not object_big:
        return physics.overlap_canvas(patches, local_offsets, padded, object_big=False)
    if re.ndim != 4 or im.shape != re.shape:
        raise ValueError(f"patches must be two equal (B, C, N, N); found {re.shape}, {im.shape}")
    B, K, N, _ = re.shape
    offsets, C = _offsets(local_offsets, B)
    if K != C:
        raise ValueError(f"object_big needs one patch per offset: {K} patch channels, {C} offsets")
    if padded < N or (padded - N) % 2:
        raise ValueError(f"padded size {padded} must be >= N={N} with an even margin")
    _check_device(re, im, offsets)
    if B == 0:
        empty = re.new_zeros((0, padded, padded), dtype=torch.float32)
        return empty, empty.clone()
    save = torch.is_grad_enabled() and (re.requires_grad or im.requires_grad)
    return _OverlapCanvas.apply(_f32(re), _f32(im), offsets, padded, save)


def extract_illuminate(canvas: Pair, local_offsets: torch.Tensor, N: int, probe: Pair) -> Pair:
    """Fused ``physics.extract_from_canvas`` then ``physics.illuminate`` (no smoothing or mask).

    Canvas ``(B, P, P)`` pair, offsets ``(B, 1, 2, C)``, probe ``(N, N)`` pair -> ``(B, C, N, N)`` pair.
    """
    c_re, c_im = canvas
    p_re, p_im = probe
    if c_re.ndim != 3 or c_im.shape != c_re.shape or c_re.shape[1] != c_re.shape[2]:
        raise ValueError(f"canvas must be two equal (B, P, P); found {c_re.shape}, {c_im.shape}")
    if p_re.shape != (N, N) or p_im.shape != (N, N):
        raise ValueError(f"probe must be two ({N}, {N}); found {p_re.shape}, {p_im.shape}")
    B, P, _ = c_re.shape
    offsets, C = _offsets(local_offsets, B)
    _check_device(c_re, c_im, offsets, p_re, p_im)
    if B * C == 0:
        empty = c_re.new_zeros((B, C, N, N), dtype=torch.float32)
        return empty, empty.clone()
    return _ExtractIlluminate.apply(_f32(c_re), _f32(c_im), offsets, N, _f32(p_re), _f32(p_im))


SELF_CHECK_TOLERANCE = 1e-5
"""Largest relative (norm) difference ``self_check`` accepts: float32 results of the same
arithmetic summed in another order differ by a few ulps (6e-8) per op; a kernel miscompiled or
mis-indexed on a device errs at order 1e-1."""


@functools.cache
def self_check(device: str) -> float:
    """Kernels against ``ptycho_torch.physics`` on ``device`` (e.g. ``"cuda:0"``), once per process.

    A small seeded case (2 groups of 4 members, N 16, offsets within +-4 px, a complex probe):
    the object, the canvas and the exit wave forward, and the gradients w.r.t. amplitude, phase
    and probe of a quadratic loss. Returns the largest relative (norm) difference; the backend
    uses the kernels only when it is within ``SELF_CHECK_TOLERANCE``.
    """
    gen = torch.Generator().manual_seed(0)
    B, C, N, P = 2, 4, 16, 24

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(device)

    offsets = rand(B, 1, 2, C) * 8.0 - 4.0
    inputs = (rand(B, C, N, N), rand(B, C, N, N) * 6.0 - 3.0, rand(N, N), rand(N, N) - 0.5)
    results = []
    for fused in (False, True):
        amp, phase, p_re, p_im = (t.clone().requires_grad_(True) for t in inputs)
        if fused:
            obj = object_from_heads(amp, phase, None)
            canvas = overlap_canvas(obj, offsets, P)
            psi = extract_illuminate(canvas, offsets, N, (p_re, p_im))
        else:
            obj = (amp * torch.cos(phase), amp * torch.sin(phase))
            canvas = physics.overlap_canvas(obj, offsets, P)
            psi = physics.illuminate(physics.extract_from_canvas(canvas, offsets, N), (p_re, p_im))
        loss = (psi[0] ** 2).sum() + (psi[1] ** 2).sum()
        grads = torch.autograd.grad(loss, (amp, phase, p_re, p_im))
        results.append([*obj, *canvas, *psi, *grads])
    worst = 0.0
    for want, got in zip(*results, strict=True):
        diff = torch.linalg.vector_norm(got.detach() - want.detach())
        worst = max(worst, float(diff / torch.linalg.vector_norm(want.detach())))
    return worst
