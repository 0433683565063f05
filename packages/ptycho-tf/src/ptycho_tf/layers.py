"""Registered Keras layers of the model (physics.md B 7.4-B 7.8). No ``Lambda`` layers anywhere.

Every layer is registered under package ``ptycho`` and has a complete ``get_config``, so a saved
``model.keras`` loads with ``keras.models.load_model(path, safe_mode=True)``. The numerics live in
:mod:`ptycho_tf.physics`.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ptycho_tf import physics

__all__ = [
    "ChannelSlice",
    "PiTanh",
    "BorderMask",
    "CombineComplex",
    "IntensityScaler",
    "Translation",
    "OverlapCanvas",
    "TrimCanvas",
    "ExtractPatches",
    "ProbeIllumination",
    "FarField",
    "Square",
    "CUSTOM_LAYERS",
]

_register = keras.saving.register_keras_serializable(package="ptycho")


@_register
class ChannelSlice(keras.layers.Layer):
    """Channels ``[start:stop]`` of a ``(B, H, W, K)`` tensor (the decoder's trunk split, B 7.4)."""

    def __init__(self, start: int | None = None, stop: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start = start
        self.stop = stop

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return x[..., self.start : self.stop]

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        channels = len(range(input_shape[-1])[self.start : self.stop])
        return (*input_shape[:-1], channels)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@_register
class PiTanh(keras.layers.Layer):
    """Phase activation ``pi * tanh(x)`` (B 7.4), float32 -> float32 radians."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return math.pi * tf.tanh(x)


@_register
class BorderMask(keras.layers.Layer):
    """Zero the central ``N/2 x N/2`` box of ``(B, N, N, K)`` (the probe_big border branch, B 7.4)."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return x * physics.border_mask(x.shape[1])[None, :, :, None]


@_register
class CombineComplex(keras.layers.Layer):
    """Object patches ``A * exp(i Phi)`` (decision 2): two ``(B, N, N, K)`` float32 -> complex64."""

    def call(self, amplitude: tf.Tensor, phase: tf.Tensor) -> tf.Tensor:
        return tf.complex(amplitude * tf.cos(phase), amplitude * tf.sin(phase))

    def compute_output_spec(self, amplitude: Any, phase: Any) -> keras.KerasTensor:
        return keras.KerasTensor(amplitude.shape, dtype="complex64")


@_register
class IntensityScaler(keras.layers.Layer):
    """Multiply (or, with ``inverse=True``, divide) by ``exp(lambda)``, lambda = log s (B 7.7).

    One instance is called twice (input and output scaler), so both share the single weight
    ``log_intensity_scale``; it is trained iff ``scale_trainable`` (decision 4).
    """

    def __init__(self, log_scale: float = 0.0, scale_trainable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_scale_init = float(log_scale)
        self.scale_trainable = bool(scale_trainable)
        self.log_scale = self.add_weight(
            name="log_intensity_scale",
            shape=(),
            initializer=keras.initializers.Constant(self.log_scale_init),
            trainable=self.scale_trainable,
        )

    def call(self, x: tf.Tensor, inverse: bool = False) -> tf.Tensor:
        scale = tf.exp(tf.cast(self.log_scale, x.dtype))
        return x / scale if inverse else x * scale

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "log_scale": self.log_scale_init,
            "scale_trainable": self.scale_trainable,
        }


@_register
class Translation(keras.layers.Layer):
    """Bilinear per-corner zero-fill translation (B 1.1): ``[(B, H, W, K), (B, 2)]`` -> ``(B, H, W, K)``."""

    def call(self, images: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        if images.dtype.is_complex:
            return physics.translate_complex(images, offsets)
        return physics.translate(images, offsets)

    def compute_output_spec(self, images: Any, offsets: Any) -> keras.KerasTensor:
        return keras.KerasTensor(images.shape, dtype=images.dtype)


class _GeometryLayer(keras.layers.Layer):
    """Base of the canvas layers: patch size ``N``, ``gridsize`` and canvas side ``padded``."""

    def __init__(self, N: int, gridsize: int, padded: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.N = int(N)
        self.gridsize = int(gridsize)
        self.padded = int(padded)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "N": self.N,
            "gridsize": self.gridsize,
            "padded": self.padded,
        }


@_register
class OverlapCanvas(_GeometryLayer):
    """Per-group overlap canvas (B 7.6): ``[(B, N, N, K) c64, (B, 1, 2, C)]`` -> ``(B, P, P, 1)`` c64."""

    def __init__(self, N: int, gridsize: int, padded: int, object_big: bool = True, **kwargs: Any):
        super().__init__(N, gridsize, padded, **kwargs)
        self.object_big = bool(object_big)

    def call(self, patches: tf.Tensor, local_offsets: tf.Tensor) -> tf.Tensor:
        return physics.overlap_canvas(patches, local_offsets, self.padded, self.object_big)

    def compute_output_spec(self, patches: Any, local_offsets: Any) -> keras.KerasTensor:
        return keras.KerasTensor((patches.shape[0], self.padded, self.padded, 1), dtype="complex64")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "object_big": self.object_big}


@_register
class TrimCanvas(_GeometryLayer):
    """Central ``N x N`` of the canvas: ``(B, P, P, 1)`` c64 -> ``(B, N, N, 1)`` c64 (``trimmed_obj``)."""

    def call(self, canvas: tf.Tensor) -> tf.Tensor:
        return physics.trim_canvas(canvas, self.N)

    def compute_output_spec(self, canvas: Any) -> keras.KerasTensor:
        return keras.KerasTensor((canvas.shape[0], self.N, self.N, 1), dtype="complex64")


@_register
class ExtractPatches(_GeometryLayer):
    """Re-extraction at ``+o_c`` (B 7.6): ``[(B, P, P, 1), (B, 1, 2, C)]`` c64 -> ``(B, N, N, C)`` c64."""

    def call(self, canvas: tf.Tensor, local_offsets: tf.Tensor) -> tf.Tensor:
        return physics.extract_from_canvas(canvas, local_offsets, self.N)

    def compute_output_spec(self, canvas: Any, local_offsets: Any) -> keras.KerasTensor:
        c = self.gridsize * self.gridsize
        return keras.KerasTensor((canvas.shape[0], self.N, self.N, c), dtype="complex64")


@_register
class ProbeIllumination(keras.layers.Layer):
    """Exit wave ``P_model * patch`` (+ smoothing, + support mask) (B 7.7): c64 -> c64, same shape.

    The normalised probe is held as two ``(N, N)`` float32 weights ``probe_real`` and
    ``probe_imag``, trained iff ``probe_trainable`` (decision 4). Their initial values come from
    :meth:`set_probe` (a fresh model) or from saved weights (a loaded one).
    """

    def __init__(
        self,
        N: int,
        probe_mask: bool = False,
        gaussian_smoothing_sigma: float = 0.0,
        probe_trainable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.N = int(N)
        self.probe_mask = bool(probe_mask)
        self.gaussian_smoothing_sigma = float(gaussian_smoothing_sigma)
        self.probe_trainable = bool(probe_trainable)
        shape = (self.N, self.N)
        self.probe_real = self.add_weight(
            name="probe_real", shape=shape, initializer="zeros", trainable=self.probe_trainable
        )
        self.probe_imag = self.add_weight(
            name="probe_imag", shape=shape, initializer="zeros", trainable=self.probe_trainable
        )

    def set_probe(self, probe: np.ndarray) -> None:
        """Assign the ``(N, N)`` complex model probe (already normalised, B 6.3)."""
        probe = np.asarray(probe, dtype=np.complex64)
        self.probe_real.assign(probe.real)
        self.probe_imag.assign(probe.imag)

    def get_probe(self) -> np.ndarray:
        """The current model probe, ``(N, N)`` complex64."""
        return (self.probe_real.numpy() + 1j * self.probe_imag.numpy()).astype(np.complex64)

    def call(self, patches: tf.Tensor) -> tf.Tensor:
        probe = tf.complex(self.probe_real, self.probe_imag)
        return physics.illuminate(patches, probe, self.probe_mask, self.gaussian_smoothing_sigma)

    def compute_output_spec(self, patches: Any) -> keras.KerasTensor:
        return keras.KerasTensor(patches.shape, dtype="complex64")

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "N": self.N,
            "probe_mask": self.probe_mask,
            "gaussian_smoothing_sigma": self.gaussian_smoothing_sigma,
            "probe_trainable": self.probe_trainable,
        }


@_register
class FarField(keras.layers.Layer):
    """Far-field amplitude ``fftshift(|FFT2|)/N`` (B 6.1): ``(B, N, N, C)`` c64 -> float32."""

    def call(self, field: tf.Tensor) -> tf.Tensor:
        return physics.far_field(field)

    def compute_output_spec(self, field: Any) -> keras.KerasTensor:
        return keras.KerasTensor(field.shape, dtype="float32")


@_register
class Square(keras.layers.Layer):
    """``x ** 2``: predicted intensity (counts) from scaled amplitude (B 7.7)."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.square(x)


CUSTOM_LAYERS: tuple[type[keras.layers.Layer], ...] = (
    ChannelSlice,
    PiTanh,
    BorderMask,
    CombineComplex,
    IntensityScaler,
    Translation,
    OverlapCanvas,
    TrimCanvas,
    ExtractPatches,
    ProbeIllumination,
    FarField,
    Square,
)
"""Every layer class of this module (all registered under package ``ptycho``)."""
