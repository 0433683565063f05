"""Batched prediction and on-device stitching (physics.md B 9; decision 13).

``predict_patches`` streams fixed-size batches through a compiled step into a preallocated numpy
array, so memory stays bounded by one batch on the device. ``reassemble_position`` reproduces
``ptycho_api.stitching.reassemble_position``: each crop is accumulated through its
``(M+1) x (M+1)`` bilinear window, chunk by chunk, never at canvas size per patch.
:mod:`ptycho_torch.inference` has the same public names, arguments and shapes.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf

from ptycho_api.stitching import STITCH_DENOMINATOR_EPS, checked_geometry
from ptycho_tf.model import PtychoPINN

__all__ = ["predict_patches", "reassemble_position"]

logger = logging.getLogger(__name__)


class _PatchPredictor:
    """Compiled ``diffraction_to_obj`` step: ``[s X, offsets]`` batches -> object patches."""

    def __init__(self, model: keras.Model, *, jit_compile: bool = False) -> None:
        self.model = model
        self.jit_compile = jit_compile
        self._step = tf.function(self._call, jit_compile=jit_compile, reduce_retracing=True)

    def _call(self, x: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        return self.model([x, offsets], training=False)

    def __call__(
        self, x_scaled: np.ndarray, local_offsets: np.ndarray, batch_size: int = 64
    ) -> np.ndarray:
        """``(B, N, N, C)`` f32 and ``(B, 1, 2, C)`` f32 -> ``(B, N, N, 1)`` complex64 numpy."""
        x_scaled = np.asarray(x_scaled, dtype=np.float32)
        local_offsets = np.asarray(local_offsets, dtype=np.float32)
        if x_scaled.ndim != 4 or local_offsets.shape != (len(x_scaled), 1, 2, x_scaled.shape[-1]):
            raise ValueError(
                "predict: expected x_scaled (B, N, N, C) and local_offsets (B, 1, 2, C); found "
                f"{x_scaled.shape} and {local_offsets.shape}"
            )
        if batch_size < 1:
            raise ValueError(f"predict: batch_size must be >= 1; found {batch_size}")
        n, N = len(x_scaled), x_scaled.shape[1]
        out = np.empty((n, N, N, 1), dtype=np.complex64)
        for lo in range(0, n, batch_size):
            xb = x_scaled[lo : lo + batch_size]
            ob = local_offsets[lo : lo + batch_size]
            short = batch_size - len(xb)
            if short and n > batch_size:
                # Pad the last batch to the full size so the compiled step is reused as is.
                xb = np.concatenate([xb, np.zeros((short, *xb.shape[1:]), xb.dtype)])
                ob = np.concatenate([ob, np.zeros((short, *ob.shape[1:]), ob.dtype)])
            result = self._step(tf.constant(xb), tf.constant(ob)).numpy()
            out[lo : lo + batch_size] = result[: min(batch_size, n - lo)]
        return out


_last_predictor: _PatchPredictor | None = None
"""The compiled step of the last model predicted with, reused while that model is predicted with
again (tracing is slow); holding one per model would keep every old model alive."""


def predict_patches(
    model: PtychoPINN,
    x_scaled: np.ndarray,
    local_offsets: np.ndarray,
    *,
    batch_size: int = 64,
    compiled: bool = False,
) -> np.ndarray:
    """Object patches ``(B, N, N, 1)`` complex64 from s*X ``(B, N, N, C)`` and offsets ``(B, 1, 2, C)``.

    ``model`` is the ``PtychoPINN`` ``build_model`` returns; its ``diffraction_to_obj`` runs as one
    ``tf.function`` step (inference mode), ``batch_size`` groups at a time; ``compiled`` has XLA
    compile that step (``jit_compile``).
    """
    global _last_predictor
    predictor = _last_predictor
    if (
        predictor is None
        or predictor.model is not model.diffraction_to_obj
        or predictor.jit_compile != compiled
    ):
        predictor = _PatchPredictor(model.diffraction_to_obj, jit_compile=compiled)
        _last_predictor = predictor
    return predictor(x_scaled, local_offsets, batch_size=batch_size)


def _shift_windows(crops: tf.Tensor, frac: tf.Tensor) -> tf.Tensor:
    """``(b, M, M)`` crops shifted by ``frac`` ``(b, 2)`` [x, y] in [0, 1) -> ``(b, M+1, M+1)``.

    Output index j is ``(1 - f) crop[j] + f crop[j - 1]`` per axis (bilinear, zero fill).
    """
    fx = frac[:, 0][:, None, None]
    fy = frac[:, 1][:, None, None]
    down = tf.pad(crops, ((0, 0), (0, 1), (0, 0)))
    up = tf.pad(crops, ((0, 0), (1, 0), (0, 0)))
    rows = (1 - fy) * down + fy * up
    right = tf.pad(rows, ((0, 0), (0, 0), (0, 1)))
    left = tf.pad(rows, ((0, 0), (0, 0), (1, 0)))
    return (1 - fx) * right + fx * left


@tf.function(reduce_retracing=True)
def _accumulate(
    crops: tf.Tensor, frac: tf.Tensor, origin: tf.Tensor, side: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Window sums of one chunk on a flat ``side * side`` canvas: (real, imag, weight) float64."""
    width = tf.shape(crops)[1] + 1
    k = tf.range(width)
    rows = origin[:, 1][:, None, None] + k[None, :, None]
    cols = origin[:, 0][:, None, None] + k[None, None, :]
    index = tf.reshape(rows * side + cols, (-1,))
    real = _shift_windows(tf.math.real(crops), frac)
    imag = _shift_windows(tf.math.imag(crops), frac)
    ones = _shift_windows(tf.ones_like(tf.math.real(crops)), frac)
    segments = side * side

    def bin_sum(values: tf.Tensor) -> tf.Tensor:
        return tf.math.unsorted_segment_sum(
            tf.cast(tf.reshape(values, (-1,)), tf.float64), index, segments
        )

    return bin_sum(real), bin_sum(imag), bin_sum(ones)


def reassemble_position(
    patches: np.ndarray, global_offsets: np.ndarray, M: int = 20, *, chunk_size: int = 4096
) -> np.ndarray:
    """Stitch ``(B, N, N, 1)`` complex patches at ``(B, 1, 2, 1)`` float64 offsets -> ``(S, S, 1)`` c64.

    Central ``M x M`` crops, offsets centred on their mean, bilinear placement with zero fill,
    divided by the stitched all-ones crops + 1e-9 (B 9). Sums accumulate in float64 on device.
    """
    patches = np.asarray(patches)
    geom = checked_geometry(patches.shape, global_offsets, M)
    if patches.ndim == 4:
        patches = patches[..., 0]
    n_patches, N = patches.shape[0], patches.shape[1]
    # One spare row and column (as in the reference) keeps the window indexing uniform.
    side = geom.size + 1
    whole = np.floor(geom.offsets)
    frac = (geom.offsets - whole).astype(np.float32)
    origin = (whole.astype(np.int64) + geom.pad).astype(np.int32)
    lo_px = N // 2 - M // 2
    real = imag = weight = None
    for start in range(0, n_patches, chunk_size):
        stop = start + chunk_size
        crop = tf.constant(
            patches[start:stop, lo_px : lo_px + M, lo_px : lo_px + M].astype(np.complex64)
        )
        parts = _accumulate(
            crop, tf.constant(frac[start:stop]), tf.constant(origin[start:stop]), tf.constant(side)
        )
        if real is None:
            real, imag, weight = parts
        else:
            real, imag, weight = real + parts[0], imag + parts[1], weight + parts[2]
    denominator = weight + STITCH_DENOMINATOR_EPS
    image = tf.complex(real / denominator, imag / denominator)
    image = tf.reshape(image, (side, side))[: geom.size, : geom.size]
    logger.debug("stitched %d patches onto a %d x %d canvas", n_patches, geom.size, geom.size)
    return image.numpy().astype(np.complex64)[..., None]
