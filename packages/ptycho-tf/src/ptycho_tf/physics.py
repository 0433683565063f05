"""TensorFlow physics ops matching the numpy reference of ``ptycho_api`` (physics.md B 1.1, B 6, B 7.6).

Plain functions on tensors; the registered Keras layers in :mod:`ptycho_tf.layers` wrap them.
Conventions (B 1): images are channels-last ``(B, H, W, K)``; offsets are ``[x, y]`` pixels with
x the column index; complex fields are complex64 tensors.

:mod:`ptycho_torch.physics` has the same public names with the same argument order and meaning;
there images are channels-first ``(B, K, H, W)`` and a complex field is a ``(re, im)`` pair of
real tensors (canvases ``(B, P, P)`` per part), PyTorch's native layout.
"""

from __future__ import annotations

import math

import tensorflow as tf

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


def _shift_axis(images: tf.Tensor, start: tf.Tensor, axis: int) -> tf.Tensor:
    """Bilinear resampling of ``images`` along ``axis`` (1 or 2) at positions ``start[b] + k``.

    ``images`` ``(B, H, W, K)`` float32; ``start`` ``(B,)`` float32 pixels. Each output sample
    mixes the floor tap and the next one; a tap outside the axis contributes zero (the per-corner
    zero fill of B 1.1, which factorises over the two axes, so two 1-D passes equal the 2-D op).
    """
    n = images.shape[axis]
    lower = tf.floor(start)
    frac = start - lower
    idx0 = tf.cast(lower, tf.int32)[:, None] + tf.range(n, dtype=tf.int32)[None, :]
    idx1 = idx0 + 1
    valid0 = tf.cast((idx0 >= 0) & (idx0 < n), images.dtype)
    valid1 = tf.cast((idx1 >= 0) & (idx1 < n), images.dtype)
    w0 = (1.0 - frac)[:, None] * valid0
    w1 = frac[:, None] * valid1
    g0 = tf.gather(images, tf.clip_by_value(idx0, 0, n - 1), axis=axis, batch_dims=1)
    g1 = tf.gather(images, tf.clip_by_value(idx1, 0, n - 1), axis=axis, batch_dims=1)
    if axis == 1:
        w0, w1 = w0[:, :, None, None], w1[:, :, None, None]
    else:
        w0, w1 = w0[:, None, :, None], w1[:, None, :, None]
    return w0 * g0 + w1 * g1


def translate(images: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    """Shift real images by per-image sub-pixel offsets (B 1.1): ``(B, H, W, K)`` -> same.

    ``offsets`` ``(B, 2)`` float32 ``[d_x, d_y]``; output(y, x) = input(y - d_y, x - d_x),
    bilinear with per-corner zero fill. Channels share the offset. Differentiable in both inputs.
    """
    offsets = tf.cast(offsets, images.dtype)
    rows = _shift_axis(images, -offsets[:, 1], axis=1)
    return _shift_axis(rows, -offsets[:, 0], axis=2)


def translate_complex(images: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    """``translate`` for complex64 ``(B, H, W, K)`` images: real and imaginary parts alike."""
    stacked = tf.concat([tf.math.real(images), tf.math.imag(images)], axis=-1)
    moved = translate(stacked, offsets)
    k = images.shape[-1]
    return tf.complex(moved[..., :k], moved[..., k:])


def center_mask(N: int) -> tf.Tensor:
    """``(N, N)`` float32: 1 on rows and columns ``[N/4, 3N/4)``, 0 elsewhere (B 7.6)."""
    inside = tf.logical_and(tf.range(N) >= N // 4, tf.range(N) < 3 * N // 4)
    line = tf.cast(inside, tf.float32)
    return line[:, None] * line[None, :]


def border_mask(N: int) -> tf.Tensor:
    """``(N, N)`` float32: 0 inside the centre box of ``center_mask``, 1 outside (B 7.4)."""
    return 1.0 - center_mask(N)


def support_mask(N: int) -> tf.Tensor:
    """``(N, N)`` float32 circular probe support of B 6.3 (``ptycho_api.probe.probe_support_mask``)."""
    return tf.constant(probe_support_mask(N), dtype=tf.float32)


def _split_offsets(local_offsets: tf.Tensor) -> tf.Tensor:
    """``(B, 1, 2, C)`` offsets -> flat ``(B*C, 2)`` ``[x, y]`` in flat order ``b*C + c``."""
    offsets = tf.transpose(local_offsets[:, 0], (0, 2, 1))
    return tf.reshape(offsets, (-1, 2))


def _pad_to(images: tf.Tensor, size: int) -> tf.Tensor:
    """Zero-pad ``(B, N, N, K)`` symmetrically to ``(B, size, size, K)``."""
    p = (size - images.shape[1]) // 2
    return tf.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))


def overlap_canvas(
    patches: tf.Tensor, local_offsets: tf.Tensor, padded: int, object_big: bool = True
) -> tf.Tensor:
    """One overlap canvas per group (B 7.6, decision 1): ``(B, N, N, K)`` c64 -> ``(B, P, P, 1)`` c64.

    ``object_big``: the weighted average of the members, each padded patch times
    ``canvas_weight`` (1 in the centre box, 0.001 outside) translated by ``-o_c``, divided by the
    translated weights' sum plus 1e-9 (real and imaginary parts separately). Otherwise the
    single channel is zero-padded to ``P x P``. ``local_offsets`` ``(B, 1, 2, C)`` float32.
    """
    if not object_big:
        return _pad_to(patches, padded)
    N = patches.shape[1]
    C = local_offsets.shape[-1]
    # (B, N, N, C) -> (B*C, N, N) in flat order, then weighted real, weighted imag and the
    # weight as three channels so that one translation call moves numerator and denominator.
    flat = tf.reshape(tf.transpose(patches, (0, 3, 1, 2)), (-1, N, N))
    weight = tf.broadcast_to(tf.constant(canvas_weight(N)), tf.shape(flat))
    stacked = tf.stack([tf.math.real(flat) * weight, tf.math.imag(flat) * weight, weight], axis=-1)
    moved = translate(_pad_to(stacked, padded), -_split_offsets(local_offsets))
    summed = tf.reduce_sum(tf.reshape(moved, (-1, C, padded, padded, 3)), axis=1)
    denominator = summed[..., 2:3] + CANVAS_DENOMINATOR_EPS
    return tf.complex(summed[..., 0:1] / denominator, summed[..., 1:2] / denominator)


def trim_canvas(canvas: tf.Tensor, N: int) -> tf.Tensor:
    """Central ``N x N`` crop: ``(B, P, P, 1)`` -> ``(B, N, N, 1)``."""
    p = (canvas.shape[1] - N) // 2
    return canvas[:, p : p + N, p : p + N, :]


def extract_from_canvas(canvas: tf.Tensor, local_offsets: tf.Tensor, N: int) -> tf.Tensor:
    """Re-extract each member: canvas ``(B, P, P, 1)`` c64 -> ``(B, N, N, C)`` c64 (B 7.6).

    Copy c of the canvas is translated by ``+o_c`` and its central ``N x N`` crop kept.
    """
    P = canvas.shape[1]
    C = local_offsets.shape[-1]
    parts = tf.concat([tf.math.real(canvas), tf.math.imag(canvas)], axis=-1)
    copies = tf.reshape(tf.repeat(parts[:, None], C, axis=1), (-1, P, P, 2))
    moved = trim_canvas(translate(copies, _split_offsets(local_offsets)), N)
    members = tf.complex(moved[..., 0], moved[..., 1])
    return tf.transpose(tf.reshape(members, (-1, C, N, N)), (0, 2, 3, 1))


def smooth_field(field: tf.Tensor, sigma: float) -> tf.Tensor:
    """3x3 separable Gaussian with reflect padding (B 6.4): ``(B, N, N, C)`` c64 -> same.

    Taps ``ptycho_api.physics.gaussian_taps(sigma)``, ``sigma`` in pixels, > 0.
    """
    # Python floats: each product is then a float32 tensor-times-scalar, as for any constant.
    taps = gaussian_taps(sigma).tolist()
    parts = tf.concat([tf.math.real(field), tf.math.imag(field)], axis=-1)
    n = parts.shape[1]
    padded = tf.pad(parts, ((0, 0), (1, 1), (0, 0), (0, 0)), mode="REFLECT")
    rows = sum(t * padded[:, i : i + n] for i, t in enumerate(taps))
    padded = tf.pad(rows, ((0, 0), (0, 0), (1, 1), (0, 0)), mode="REFLECT")
    out = sum(t * padded[:, :, i : i + n] for i, t in enumerate(taps))
    k = field.shape[-1]
    return tf.complex(out[..., :k], out[..., k:])


def illuminate(
    patches: tf.Tensor,
    probe: tf.Tensor,
    probe_mask: bool = False,
    gaussian_smoothing_sigma: float = 0.0,
) -> tf.Tensor:
    """Exit waves (B 7.7): ``(B, N, N, C)`` c64 times the ``(N, N)`` c64 model probe -> same.

    Optional smoothing (B 6.4, when ``gaussian_smoothing_sigma`` > 0 px) first, then, if
    ``probe_mask``, the circular support of B 6.3.
    """
    psi = patches * probe[None, :, :, None]
    if gaussian_smoothing_sigma > 0:
        psi = smooth_field(psi, gaussian_smoothing_sigma)
    if probe_mask:
        support = support_mask(probe.shape[0])
        psi = psi * tf.complex(support, tf.zeros_like(support))[None, :, :, None]
    return psi


def far_field(field: tf.Tensor) -> tf.Tensor:
    """Far-field amplitude (B 6.1): ``(B, N, N, C)`` c64 -> ``(B, N, N, C)`` float32.

    ``A = fftshift(|FFT2(field)|) / N`` over the two spatial axes; DC at ``(N/2, N/2)``.
    """
    h, w = field.shape[1], field.shape[2]
    spectrum = tf.signal.fft2d(tf.transpose(field, (0, 3, 1, 2)))
    amplitude = tf.abs(spectrum) / math.sqrt(h * w)
    amplitude = tf.roll(amplitude, shift=(h // 2, w // 2), axis=(2, 3))
    return tf.transpose(amplitude, (0, 2, 3, 1))
