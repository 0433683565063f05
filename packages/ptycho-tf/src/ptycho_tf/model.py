"""The PtychoPINN network and forward model in Keras 3 (physics.md B 7; decisions 1, 2, 4, 6).

``build_model`` builds the ``autoencoder`` (three outputs) and ``diffraction_to_obj`` (object
patches only) functional models, which share every layer. Conv structure and canonical names come
only from :func:`ptycho_api.architecture.network_layout`; a conv named ``decoder_amp/block1/conv0``
canonically is the Keras layer ``decoder_amp__block1__conv0``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from ptycho_api import params
from ptycho_api.architecture import Conv, DecoderLayout, network_layout
from ptycho_api.config import ModelConfig, TrainingConfig, require_supported_n
from ptycho_api.normalization import intensity_scale as default_intensity_scale
from ptycho_api.physics import padded_size
from ptycho_api.probe import default_probe, normalize_probe
from ptycho_tf.layers import (
    BorderMask,
    ChannelSlice,
    CombineComplex,
    ExtractPatches,
    FarField,
    IntensityScaler,
    OverlapCanvas,
    PiTanh,
    ProbeIllumination,
    Square,
    TrimCanvas,
)

__all__ = ["PtychoPINN", "build_model", "create_model_with_gridsize"]

logger = logging.getLogger(__name__)

_SCALER_NAME = "intensity_scaler"
_PROBE_NAME = "probe_illumination"
OUTPUT_NAMES = ("trimmed_obj", "pred_amp_scaled", "pred_intensity")


@dataclass
class PtychoPINN:
    """The two Keras models of one network plus what built them.

    ``autoencoder``: ``[s*X (B,N,N,C) f32, local_offsets (B,1,2,C) f32]`` ->
    ``[trimmed_obj (B,N,N,1) c64, pred_amp_scaled (B,N,N,C) f32, pred_intensity (B,N,N,C) f32]``;
    ``diffraction_to_obj``: same inputs -> ``trimmed_obj``. ``intensity_scale`` is the data scale
    s the model was built for (the input is ``s * X``).
    """

    autoencoder: keras.Model
    diffraction_to_obj: keras.Model
    model_config: ModelConfig
    intensity_scale: float
    probe_trainable: bool = False
    intensity_scale_trainable: bool = True

    def predict(self, inputs: list[np.ndarray], **kwargs: Any) -> np.ndarray:
        """Keras ``predict`` of ``diffraction_to_obj``: ``[s*X, offsets]`` -> ``(B, N, N, 1)`` c64."""
        return self.diffraction_to_obj.predict(inputs, **kwargs)

    @property
    def scaler(self) -> IntensityScaler:
        """The shared intensity-scale layer (weight ``log_intensity_scale``)."""
        return self.autoencoder.get_layer(_SCALER_NAME)

    @property
    def probe_layer(self) -> ProbeIllumination:
        """The probe-illumination layer (weights ``probe_real``, ``probe_imag``)."""
        return self.autoencoder.get_layer(_PROBE_NAME)

    def conv_layers(self) -> Iterator[tuple[Conv, Any]]:
        """``(layout conv, Keras Conv2D layer)`` pairs in canonical order."""
        for conv in network_layout(self.model_config).convs():
            yield conv, self.autoencoder.get_layer(_keras_layer_name(conv.name))


def _keras_layer_name(canonical: str) -> str:
    """Keras layer name of a canonical conv prefix (Keras names cannot contain ``/``)."""
    return canonical.replace("/", "__")


class _ConvFactory:
    """Creates 3x3 'same' Conv2D layers with Glorot-uniform kernels and zero biases (B 7.2).

    With a seed, conv i gets kernel seed ``seed + i`` (canonical order), so weights depend only
    on the seed and the layout, not on global random state.
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self.count = 0

    def __call__(self, conv: Conv, activation: str | None = "relu") -> keras.layers.Conv2D:
        seed = None if self.seed is None else self.seed + self.count
        self.count += 1
        return keras.layers.Conv2D(
            conv.out_channels,
            3,
            padding="same",
            activation=activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            bias_initializer="zeros",
            name=_keras_layer_name(conv.name),
        )


def _conv_pair(make: _ConvFactory, pair: tuple[Conv, Conv], x: Any) -> Any:
    return make(pair[1])(make(pair[0])(x))


def _decoder(make: _ConvFactory, layout: DecoderLayout, cfg: ModelConfig, x: Any, amp: bool) -> Any:
    """One decoder (B 7.4): trunk of ConvUp blocks, then the head -> ``(B, N, N, K)`` float32."""
    N = cfg.N
    name = layout.prefix
    for i, pair in enumerate(layout.trunk):
        x = _conv_pair(make, pair, x)
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}__up{i}")(x)

    def activate(y: Any, suffix: str) -> Any:
        if amp:
            return keras.layers.Activation(cfg.amp_activation, name=f"{name}__{suffix}")(y)
        return PiTanh(name=f"{name}__{suffix}")(y)

    if not cfg.pad_object:
        assert layout.up is not None
        y = _conv_pair(make, layout.up, x)
        y = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}__up_head")(y)
        return activate(make(layout.head, activation=None)(y), "activation")
    centre = ChannelSlice(None, -4, name=f"{name}__centre_channels")(x)
    centre = activate(make(layout.head, activation=None)(centre), "activation")
    centre = keras.layers.ZeroPadding2D(N // 4, name=f"{name}__pad")(centre)
    if layout.border is None or layout.border_head is None:
        return centre
    border = ChannelSlice(-4, None, name=f"{name}__border_channels")(x)
    border = _conv_pair(make, layout.border, border)
    border = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}__border_up")(
        border
    )
    border = make(layout.border_head, activation="swish")(border)
    border = BorderMask(name=f"{name}__border_mask")(border)
    return keras.layers.Add(name=f"{name}__combine")([centre, border])


def build_model(
    model_config: ModelConfig,
    probe: np.ndarray,
    intensity_scale: float,
    *,
    probe_trainable: bool = False,
    intensity_scale_trainable: bool = True,
    seed: int | None = None,
    probe_is_normalized: bool = False,
) -> PtychoPINN:
    """Build both models for ``model_config`` (B 7), raw probe ``(N, N)`` c64 and data scale s.

    The probe is normalised here (``P / (probe_scale * mean|mask P|)``, B 6.3) unless
    ``probe_is_normalized``; lambda starts at ``log(intensity_scale)``. ``seed`` fixes the
    Glorot-uniform kernel draws. Raises ``ConfigError`` for N not in {64, 128, 256}.
    """
    model_config.validate()
    N = require_supported_n(model_config.N)
    probe = np.asarray(probe)
    if probe.shape != (N, N):
        raise ValueError(f"probe: expected shape ({N}, {N}); found {probe.shape}")
    if not (math.isfinite(intensity_scale) and intensity_scale > 0):
        raise ValueError(
            f"intensity_scale: expected a finite number > 0; found {intensity_scale!r}"
        )
    model_probe = (
        probe.astype(np.complex64)
        if probe_is_normalized
        else normalize_probe(probe, model_config.probe_scale)
    )
    layout = network_layout(model_config)
    C = layout.channels
    gridsize = model_config.gridsize
    padded = padded_size(N, gridsize)
    make = _ConvFactory(seed)

    x_in = keras.Input((N, N, C), name="input", dtype="float32")
    offsets_in = keras.Input((1, 2, C), name="input_positions", dtype="float32")
    scaler = IntensityScaler(
        math.log(intensity_scale), intensity_scale_trainable, name=_SCALER_NAME
    )
    x = scaler(x_in, inverse=True)
    for i, pair in enumerate(layout.encoder):
        x = _conv_pair(make, pair, x)
        x = keras.layers.MaxPooling2D(2, 2, name=f"encoder__pool{i}")(x)
    amplitude = _decoder(make, layout.decoder_amp, model_config, x, amp=True)
    phase = _decoder(make, layout.decoder_phase, model_config, x, amp=False)
    patches = CombineComplex(name="object_patches")(amplitude, phase)

    canvas = OverlapCanvas(N, gridsize, padded, model_config.object_big, name="overlap_canvas")(
        patches, offsets_in
    )
    trimmed = TrimCanvas(N, gridsize, padded, name=OUTPUT_NAMES[0])(canvas)
    extracted = ExtractPatches(N, gridsize, padded, name="extract_patches")(canvas, offsets_in)
    probe_layer = ProbeIllumination(
        N,
        model_config.probe_mask,
        model_config.gaussian_smoothing_sigma,
        probe_trainable,
        name=_PROBE_NAME,
    )
    psi = probe_layer(extracted)
    amp = FarField(name="far_field")(psi)
    pred_amp_scaled = scaler(amp)
    pred_amp_scaled = keras.layers.Identity(name=OUTPUT_NAMES[1])(pred_amp_scaled)
    pred_intensity = Square(name=OUTPUT_NAMES[2])(pred_amp_scaled)

    autoencoder = keras.Model(
        [x_in, offsets_in], [trimmed, pred_amp_scaled, pred_intensity], name="autoencoder"
    )
    diffraction_to_obj = keras.Model([x_in, offsets_in], trimmed, name="diffraction_to_obj")
    probe_layer.set_probe(model_probe)
    logger.debug(
        "built TF model N=%d gridsize=%d n_filters_scale=%d (%d weights)",
        N,
        gridsize,
        model_config.n_filters_scale,
        autoencoder.count_params(),
    )
    return PtychoPINN(
        autoencoder,
        diffraction_to_obj,
        model_config,
        float(intensity_scale),
        probe_trainable=probe_trainable,
        intensity_scale_trainable=intensity_scale_trainable,
    )


def create_model_with_gridsize(
    gridsize: int,
    N: int,
    config: ModelConfig | TrainingConfig | None = None,
    *,
    probe: np.ndarray | None = None,
    intensity_scale: float | None = None,
    seed: int | None = None,
) -> tuple[keras.Model, keras.Model]:
    """Seed-compatible builder: -> ``(autoencoder, diffraction_to_obj)`` sharing weights (B 7).

    ``config`` gives the model settings (its ``N``/``gridsize`` are overridden by the arguments)
    and, for a ``TrainingConfig``, the trainable flags and seed. Without ``probe`` the
    ``params.cfg['probe']`` of the process is used when it has the right size, else the default
    probe; without ``intensity_scale``, ``params.cfg['intensity_scale']`` or
    ``sqrt(nphotons)/(N/2)``.
    """
    training = config if isinstance(config, TrainingConfig) else None
    base = training.model if training is not None else (config or ModelConfig())
    model_config = ModelConfig(**{**vars(base), "N": N, "gridsize": gridsize})
    if probe is None:
        cfg_probe = params.cfg.get("probe")
        if cfg_probe is not None and np.shape(np.squeeze(cfg_probe)) == (N, N):
            probe = np.squeeze(np.asarray(cfg_probe))
        else:
            probe = default_probe(N)
    if intensity_scale is None:
        intensity_scale = params.cfg.get("intensity_scale") or default_intensity_scale(
            float(params.cfg.get("nphotons", 1e9)), N
        )
    models = build_model(
        model_config,
        probe,
        float(intensity_scale),
        probe_trainable=training.probe_trainable if training else False,
        intensity_scale_trainable=training.intensity_scale_trainable if training else True,
        seed=seed if seed is not None else (training.seed if training else None),
    )
    return models.autoencoder, models.diffraction_to_obj
