"""Differentiable physics of the forward model in PyTorch (physics.md B 1.1, B 6, B 7.6, B 7.7).

The public names, argument order and meaning are those of :mod:`ptycho_tf.physics`, in PyTorch's
native layout: images are channels-first ``(B, K, H, W)`` real tensors where TensorFlow has
``(B, H, W, K)``, and a complex field is a pair of real tensors ``(re, im)`` (each of the shape
given) where TensorFlow has one complex64 tensor; a canvas is ``(B, P, P)`` per part where
TensorFlow has ``(B, P, P, 1)``. Fields stay real pairs until the far field so that every op has
plain real gradients and ``torch.compile`` can generate code for all of them. Offsets are
``[x, y]`` pixels (x = column). The numpy reference in ``ptycho_api`` is the oracle: every
function here matches its counterpart to float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ptycho_api import forward as _reference
from ptycho_api.forward import CANVAS_DENOMINATOR_EPS, canvas_weight
from ptycho_api.physics import gaussian_taps
from ptycho_api.probe import probe_support_mask

__all__ = [
    "translate",
    "translate_complex",
    "center_mask",
    "border_mask",
    "support_mask",
    "overlap_canvas",
    "trim_canvas",
    "extract_from_canvas",
    "smooth_field",
    "illuminate",
    "far_field",
]


def _interpolation_matrix(
    start: torch.Tensor, n_out: int, n_in: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Linear-interpolation matrix for sample positions ``start[b] + i``: ``(B,)`` -> ``(B, n_out, n_in)``.

    Row i holds weight ``1 - f`` at column ``a + i`` and ``f`` at ``a + i + 1`` with ``a = floor(start)``,
    ``f = start - a``. A column index outside ``[0, n_in)`` has no matching column, so that corner
    contributes zero: the per-corner zero fill of B 1.1. ``a`` and ``f`` are taken per image (not per
    pixel), so the fraction is the same for every pixel; gradients flow to ``start`` through ``f``.
    """
    # The start (an offset minus an integer margin) and its fraction are formed in float64, as the
    # reference does, so the translation matches it to float32 rounding of the result.
    start = start.to(torch.float64)
    a = torch.floor(start)
    frac = (start - a).to(dtype)[:, None, None]
    i = torch.arange(n_out, device=start.device)
    k = torch.arange(n_in, device=start.device)
    diff = k[None, None, :] - i[None, :, None] - a.to(torch.int64)[:, None, None]
    zero = torch.zeros((), dtype=dtype, device=start.device)
    return torch.where(diff == 0, 1.0 - frac, zero) + torch.where(diff == 1, frac, zero)


def _bilinear_sample(
    images: torch.Tensor,
    row_start: torch.Tensor,
    col_start: torch.Tensor,
    out_hw: tuple[int, int],
) -> torch.Tensor:
    """Sample ``(B, K, H, W)`` images on the grid ``(row_start[b] + i, col_start[b] + j)`` -> ``(B, K, h, w)``.

    Bilinear from the floor corner, corners outside the image contribute zero (B 1.1). The grid of
    one image is a shifted regular grid, so sampling is separable: ``Wy @ image @ Wx^T``.
    """
    height, width = images.shape[-2:]
    wy = _interpolation_matrix(row_start, out_hw[0], height, images.dtype)
    wx = _interpolation_matrix(col_start, out_hw[1], width, images.dtype)
    return wy[:, None] @ images @ wx[:, None].transpose(-1, -2)


def translate(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Shift each ``(B, K, H, W)`` real image by ``offsets`` ``(B, 2)`` ``[d_x, d_y]`` -> same shape.

    ``T_d[I](y, x) = I(y - d_y, x - d_x)``: positive ``d_x`` moves content to larger columns (B 1.1),
    bilinear with per-corner zero fill. Channels share the offset. Differentiable in both inputs.
    """
    return _bilinear_sample(images, -offsets[:, 1], -offsets[:, 0], tuple(images.shape[-2:]))


def translate_complex(
    images: tuple[torch.Tensor, torch.Tensor], offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``translate`` for a complex ``(re, im)`` pair of ``(B, K, H, W)`` images: both parts alike."""
    re, im = images
    # One sampling call for both parts: they share the interpolation matrices.
    moved = translate(torch.cat([re, im], dim=1), offsets)
    return moved[:, : re.shape[1]], moved[:, re.shape[1] :]


def _split_offsets(local_offsets: torch.Tensor) -> torch.Tensor:
    """``(B, 1, 2, C)`` offsets -> ``(B*C, 2)`` ``[x, y]`` in flat order ``b*C + c``."""
    return local_offsets[:, 0].transpose(1, 2).reshape(-1, 2)


def center_mask(N: int) -> torch.Tensor:
    """``(N, N)`` float32 on the CPU: 1 on rows and columns ``[N/4, 3N/4)``, 0 elsewhere (B 7.6)."""
    return torch.from_numpy(_reference.center_mask(N))


def border_mask(N: int) -> torch.Tensor:
    """``(N, N)`` float32: 0 inside the centre box of ``center_mask``, 1 outside (B 7.4)."""
    return 1.0 - center_mask(N)


def support_mask(N: int) -> torch.Tensor:
    """``(N, N)`` float32 circular probe support of B 6.3 (``ptycho_api.probe.probe_support_mask``)."""
    return torch.from_numpy(probe_support_mask(N))


def overlap_canvas(
    patches: tuple[torch.Tensor, torch.Tensor],
    local_offsets: torch.Tensor,
    padded: int,
    object_big: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One overlap canvas per group (B 7.6, decision 1): ``(B, K, N, N)`` pair -> ``(B, P, P)`` pair.

    ``object_big``: canvas = sum_c ``T_{-o_c}[pad(w O_c)]`` / (sum_c ``T_{-o_c}[pad(w)]`` + 1e-9) with
    ``w = canvas_weight(N)`` (1 in the centre box, 0.001 outside), real and imaginary parts
    separately; ``o_c = local_offsets[:, 0, :, c]``. Padding and translation
    are fused: sampling the unpadded patch at padded coordinates is the same as translating the
    zero-padded patch, since padded pixels are zero anyway. Otherwise K == 1 and the patch is
    zero-padded to P x P. ``local_offsets`` ``(B, 1, 2, C)`` float32.
    """
    re, im = patches
    B, K, N, _ = re.shape
    p = (padded - N) // 2
    if not object_big:
        return F.pad(re[:, 0], (p, p, p, p)), F.pad(im[:, 0], (p, p, p, p))
    C = local_offsets.shape[-1]
    offsets = _split_offsets(local_offsets).to(torch.float64)
    weight = torch.from_numpy(canvas_weight(N)).to(device=re.device, dtype=re.dtype)
    weight = weight.expand(B * C, 1, N, N)
    stacked = torch.cat(
        [re.reshape(B * C, 1, N, N) * weight, im.reshape(B * C, 1, N, N) * weight, weight], dim=1
    )
    # T_{-o}[pad_p(I)](i) = I(i - p + o): sample at start o - p.
    moved = _bilinear_sample(stacked, offsets[:, 1] - p, offsets[:, 0] - p, (padded, padded))
    sums = moved.reshape(B, C, 3, padded, padded).sum(dim=1)
    denominator = sums[:, 2] + CANVAS_DENOMINATOR_EPS
    return sums[:, 0] / denominator, sums[:, 1] / denominator


def trim_canvas(
    canvas: tuple[torch.Tensor, torch.Tensor], N: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Central ``N x N`` crop of both parts: ``(B, P, P)`` pair -> ``(B, N, N)`` pair."""
    re, im = canvas
    p = (re.shape[-1] - N) // 2
    return re[..., p : p + N, p : p + N], im[..., p : p + N, p : p + N]


def extract_from_canvas(
    canvas: tuple[torch.Tensor, torch.Tensor], local_offsets: torch.Tensor, N: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-extract each member: canvas ``(B, P, P)`` pair -> ``(B, C, N, N)`` pair (B 7.6).

    Copy c is translated by ``+o_c`` and its central N x N kept; sampled directly on that crop.
    ``local_offsets`` ``(B, 1, 2, C)`` float32.
    """
    re, im = canvas
    B, P, _ = re.shape
    C = local_offsets.shape[-1]
    p = (P - N) // 2
    offsets = _split_offsets(local_offsets).to(torch.float64)
    stacked = torch.stack([re, im], dim=1).repeat_interleave(C, dim=0)
    # T_{+o}[canvas] cropped at p: sample at start p - o.
    out = _bilinear_sample(stacked, p - offsets[:, 1], p - offsets[:, 0], (N, N))
    out = out.reshape(B, C, 2, N, N)
    return out[:, :, 0], out[:, :, 1]


def _smooth(images: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """3-tap separable filter with reflect padding over the last two axes: ``(..., N, N)`` -> same."""
    rows = F.pad(images, (0, 0, 1, 1), mode="reflect")
    out = taps[0] * rows[..., :-2, :] + taps[1] * rows[..., 1:-1, :] + taps[2] * rows[..., 2:, :]
    cols = F.pad(out, (1, 1, 0, 0), mode="reflect")
    return taps[0] * cols[..., :-2] + taps[1] * cols[..., 1:-1] + taps[2] * cols[..., 2:]


def smooth_field(
    field: tuple[torch.Tensor, torch.Tensor], sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 separable Gaussian with reflect padding (B 6.4): ``(B, C, N, N)`` pair -> same.

    Taps ``ptycho_api.physics.gaussian_taps(sigma)``, ``sigma`` in pixels, > 0.
    """
    # Python floats: each product is then a float32 tensor-times-scalar, as for any constant.
    taps = gaussian_taps(sigma).tolist()
    return _smooth(field[0], taps), _smooth(field[1], taps)


def illuminate(
    patches: tuple[torch.Tensor, torch.Tensor],
    probe: tuple[torch.Tensor, torch.Tensor],
    probe_mask: bool = False,
    gaussian_smoothing_sigma: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exit waves (B 7.7): ``(B, C, N, N)`` pair times the ``(N, N)`` pair model probe -> same.

    Optional smoothing (B 6.4, when ``gaussian_smoothing_sigma`` > 0 px) first, then, if
    ``probe_mask``, the circular support of B 6.3.
    """
    (o_re, o_im), (p_re, p_im) = patches, probe
    psi_re = p_re * o_re - p_im * o_im
    psi_im = p_re * o_im + p_im * o_re
    if gaussian_smoothing_sigma > 0:
        psi_re, psi_im = smooth_field((psi_re, psi_im), gaussian_smoothing_sigma)
    if probe_mask:
        support = support_mask(p_re.shape[-1]).to(device=p_re.device, dtype=p_re.dtype)
        psi_re, psi_im = psi_re * support, psi_im * support
    return psi_re, psi_im


def far_field(field: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Far-field amplitude (B 6.1): ``(B, C, N, N)`` pair -> ``(B, C, N, N)`` real.

    ``A = fftshift(|FFT2(field)|) / N`` over the last two axes; DC at ``(N/2, N/2)``.
    ``norm="ortho"`` divides by sqrt(h*w) = N. ``abs`` of a complex tensor has a zero (not NaN)
    gradient at 0, which avoids the sqrt-of-zero hazard of ``sqrt(re^2 + im^2)``.
    """
    spectrum = torch.fft.fft2(torch.complex(*field), norm="ortho")
    return torch.fft.fftshift(spectrum.abs(), dim=(-2, -1))
