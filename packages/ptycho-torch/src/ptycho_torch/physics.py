"""Differentiable physics of the forward model in PyTorch (physics.md B 1.1, B 6, B 7.6, B 7.7).

Channels-first inside: images are ``(B, K, H, W)`` real tensors; complex fields travel as a pair
of real tensors ``(re, im)`` until the far field, so every op has plain real gradients. Offsets
are ``[x, y]`` pixels (x = column). The numpy reference in ``ptycho_api`` is the oracle: every
function here matches its counterpart to float32 rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ptycho_api.forward import CANVAS_DENOMINATOR_EPS, canvas_weight, center_mask
from ptycho_api.probe import probe_support_mask

__all__ = [
    "interpolation_matrix",
    "bilinear_sample",
    "translate",
    "overlap_canvas",
    "extract_from_canvas",
    "trim_canvas",
    "gaussian_taps",
    "smooth_field",
    "far_field",
    "border_mask",
    "center_mask_tensor",
    "support_mask_tensor",
]


def interpolation_matrix(
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


def bilinear_sample(
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
    wy = interpolation_matrix(row_start, out_hw[0], height, images.dtype)
    wx = interpolation_matrix(col_start, out_hw[1], width, images.dtype)
    return wy[:, None] @ images @ wx[:, None].transpose(-1, -2)


def translate(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Shift each ``(B, K, H, W)`` real image by ``offsets`` ``(B, 2)`` ``[d_x, d_y]`` -> same shape.

    ``T_d[I](y, x) = I(y - d_y, x - d_x)``: positive ``d_x`` moves content to larger columns (B 1.1).
    For complex fields translate the real and imaginary parts (stack them along K).
    """
    return bilinear_sample(images, -offsets[:, 1], -offsets[:, 0], tuple(images.shape[-2:]))


def _split_offsets(local_offsets: torch.Tensor) -> torch.Tensor:
    """``(B, 1, 2, C)`` offsets -> ``(B*C, 2)`` ``[x, y]`` in flat order ``b*C + c``."""
    return local_offsets[:, 0].transpose(1, 2).reshape(-1, 2)


def center_mask_tensor(N: int, device: torch.device | None = None) -> torch.Tensor:
    """Centre-box mask ``(N, N)`` float32: 1 on rows/cols ``[N/4, 3N/4)`` (B 7.6)."""
    return torch.from_numpy(center_mask(N)).to(device)


def border_mask(N: int, device: torch.device | None = None) -> torch.Tensor:
    """Complement of the centre box, ``(N, N)`` float32 (B 7.4: where the probe_big border lives)."""
    return 1.0 - center_mask_tensor(N, device)


def support_mask_tensor(N: int, device: torch.device | None = None) -> torch.Tensor:
    """Circular probe support ``(N, N)`` float32 (B 6.3)."""
    return torch.from_numpy(probe_support_mask(N)).to(device)


def overlap_canvas(
    re: torch.Tensor,
    im: torch.Tensor,
    local_offsets: torch.Tensor,
    padded: int,
    object_big: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One overlap canvas per group (B 7.6, decision 1): ``(B, K, N, N)`` x2 -> ``(B, P, P)`` x2.

    ``object_big``: canvas = sum_c ``T_{-o_c}[pad(w O_c)]`` / (sum_c ``T_{-o_c}[pad(w)]`` + 1e-9) with
    ``w = canvas_weight(N)`` (1 in the centre box, 0.001 outside), real and imaginary parts
    separately; ``o_c = local_offsets[:, 0, :, c]``. Padding and translation
    are fused: sampling the unpadded patch at padded coordinates is the same as translating the
    zero-padded patch, since padded pixels are zero anyway. Otherwise K == 1 and the patch is
    zero-padded to P x P.
    """
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
    moved = bilinear_sample(stacked, offsets[:, 1] - p, offsets[:, 0] - p, (padded, padded))
    sums = moved.reshape(B, C, 3, padded, padded).sum(dim=1)
    denominator = sums[:, 2] + CANVAS_DENOMINATOR_EPS
    return sums[:, 0] / denominator, sums[:, 1] / denominator


def trim_canvas(canvas: torch.Tensor, N: int) -> torch.Tensor:
    """Central ``N x N`` crop: ``(..., P, P)`` -> ``(..., N, N)``."""
    p = (canvas.shape[-1] - N) // 2
    return canvas[..., p : p + N, p : p + N]


def extract_from_canvas(
    re: torch.Tensor, im: torch.Tensor, local_offsets: torch.Tensor, N: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-extract each member: canvases ``(B, P, P)`` x2 -> ``(B, C, N, N)`` x2 (B 7.6).

    Copy c is translated by ``+o_c`` and its central N x N kept; sampled directly on that crop.
    """
    B, P, _ = re.shape
    C = local_offsets.shape[-1]
    p = (P - N) // 2
    offsets = _split_offsets(local_offsets).to(torch.float64)
    stacked = torch.stack([re, im], dim=1).repeat_interleave(C, dim=0)
    # T_{+o}[canvas] cropped at p: sample at start p - o.
    out = bilinear_sample(stacked, p - offsets[:, 1], p - offsets[:, 0], (N, N))
    out = out.reshape(B, C, 2, N, N)
    return out[:, :, 0], out[:, :, 1]


def gaussian_taps(sigma: float) -> list[float]:
    """Taps ``softmax(-x^2 / (2 sigma^2))`` for x in {-1, 0, 1} (B 6.4)."""
    weights = [math.exp(-(x * x) / (2.0 * sigma * sigma)) for x in (-1.0, 0.0, 1.0)]
    total = sum(weights)
    return [w / total for w in weights]


def smooth_field(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """3x3 separable Gaussian with reflect padding (B 6.4): ``(B, K, N, N)`` real -> same shape."""
    taps = gaussian_taps(sigma)
    rows = F.pad(images, (0, 0, 1, 1), mode="reflect")
    out = taps[0] * rows[..., :-2, :] + taps[1] * rows[..., 1:-1, :] + taps[2] * rows[..., 2:, :]
    cols = F.pad(out, (1, 1, 0, 0), mode="reflect")
    return taps[0] * cols[..., :-2] + taps[1] * cols[..., 1:-1] + taps[2] * cols[..., 2:]


def far_field(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    """Far-field amplitude ``fftshift(|FFT2(psi)|) / N`` over the last two axes (B 6.1), real.

    ``norm="ortho"`` divides by sqrt(h*w) = N. ``abs`` of a complex tensor has a zero (not NaN)
    gradient at 0, which avoids the sqrt-of-zero hazard of ``sqrt(re^2 + im^2)``.
    """
    spectrum = torch.fft.fft2(torch.complex(re, im), norm="ortho")
    return torch.fft.fftshift(spectrum.abs(), dim=(-2, -1))
