"""The PtychoPINN network and forward model as ``nn.Module``s (physics.md B 7; decisions 1, 2, 4).

Structure and canonical names come only from ``ptycho_api.architecture.network_layout``. Inside,
tensors are channels-first; the public forwards take and return channels-last tensors (NHWC) so
their shapes match B 7.1: ``autoencoder(x_scaled (B,N,N,C), offsets (B,1,2,C))`` ->
``[trimmed_obj (B,N,N,1) complex64, pred_amp_scaled (B,N,N,C), pred_intensity (B,N,N,C)]``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ptycho_api import params as legacy_params
from ptycho_api.architecture import (
    BORDER_CHANNELS,
    Conv,
    DecoderLayout,
    network_layout,
)
from ptycho_api.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho_api.errors import ConfigError
from ptycho_api.normalization import intensity_scale as default_intensity_scale
from ptycho_api.physics import padded_size
from ptycho_api.probe import default_probe, normalize_probe
from ptycho_torch import kernels, physics
from ptycho_torch.modules import DiffractionToObject

__all__ = ["PtychoPINN", "build_model", "create_model_with_gridsize"]

logger = logging.getLogger(__name__)


def _conv(spec: Conv) -> nn.Conv2d:
    """A 3x3 'same' convolution (padding 1) for one canonical conv."""
    return nn.Conv2d(spec.in_channels, spec.out_channels, kernel_size=3, padding=1)


class ConvBlock(nn.Module):
    """ConvPool (``pool``) or ConvUp (``up``) of B 7.2: conv+ReLU, conv+ReLU, then 2x resampling."""

    def __init__(self, pair: tuple[Conv, Conv], kind: str) -> None:
        super().__init__()
        self.conv0 = _conv(pair[0])
        self.conv1 = _conv(pair[1])
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in, H, W)`` -> ``(B, out, H/2, W/2)`` (pool) or ``(B, out, 2H, 2W)`` (up)."""
        x = F.relu(self.conv1(F.relu(self.conv0(x))))
        if self.kind == "pool":
            return F.max_pool2d(x, 2)
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


def _activation(name: str) -> Any:
    return {"sigmoid": torch.sigmoid, "swish": F.silu, "softplus": F.softplus, "relu": F.relu}[name]


def _phase_activation(x: torch.Tensor) -> torch.Tensor:
    return math.pi * torch.tanh(x)


class Decoder(nn.Module):
    """Amplitude or phase decoder (B 7.4): ConvUp trunk to N/2, then the head layout of decision 2."""

    def __init__(self, layout: DecoderLayout, N: int, activation: Any, pad_object: bool) -> None:
        super().__init__()
        self.trunk = nn.ModuleList(ConvBlock(pair, "up") for pair in layout.trunk)
        self.up = ConvBlock(layout.up, "up") if layout.up is not None else None
        self.head = _conv(layout.head)
        self.border = ConvBlock(layout.border, "up") if layout.border is not None else None
        self.border_head = _conv(layout.border_head) if layout.border_head is not None else None
        self.activation = activation
        self.pad_object = pad_object
        self.quarter = N // 4
        self.register_buffer("border_mask", physics.border_mask(N), persistent=False)
        self._names = [c.name for c in layout.convs()]

    def convs(self) -> dict[str, nn.Conv2d]:
        """Canonical conv name -> module, in the order of ``DecoderLayout.convs``."""
        modules = [m for block in self.trunk for m in (block.conv0, block.conv1)]
        if self.up is not None:
            modules += [self.up.conv0, self.up.conv1]
        modules.append(self.head)
        if self.border is not None and self.border_head is not None:
            modules += [self.border.conv0, self.border.conv1, self.border_head]
        return dict(zip(self._names, modules, strict=True))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder output ``(B, 128*nfs, 8, 8)`` -> head output ``(B, K, N, N)`` (activated)."""
        for block in self.trunk:
            z = block(z)
        if not self.pad_object:
            assert self.up is not None
            return self.activation(self.head(self.up(z)))
        q = self.quarter
        out = F.pad(self.activation(self.head(z[:, :-BORDER_CHANNELS])), (q, q, q, q))
        if self.border is not None and self.border_head is not None:
            border = F.silu(self.border_head(self.border(z[:, -BORDER_CHANNELS:])))
            out = out + border * self.border_mask
        return out


class PtychoPINN(nn.Module):
    """The ``autoencoder`` of B 7.1: CNN -> object patches -> overlap canvas -> probe -> |FFT| -> scale.

    ``intensity_scale`` is the data scale s the model was built for (inputs are s * X).
    ``log_intensity_scale`` (lambda = log s) is an ``nn.Parameter`` iff ``intensity_scale_trainable``
    and the normalised probe's real and imaginary parts are parameters iff ``probe_trainable``
    (decision 4); otherwise they are buffers (constant, still saved in the state_dict).
    ``fused_physics`` (not saved): compute the physics around the network with the Triton
    kernels of :mod:`ptycho_torch.kernels` instead of framework ops (same float32 numbers).
    """

    def __init__(
        self,
        model_config: ModelConfig,
        probe: np.ndarray,
        intensity_scale: float,
        *,
        probe_trainable: bool = False,
        intensity_scale_trainable: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.layout = network_layout(model_config)
        self.model_config = model_config
        N = model_config.N
        self.N = N
        self.channels = self.layout.channels
        self.padded = padded_size(N, model_config.gridsize)
        self.encoder = nn.ModuleList(ConvBlock(pair, "pool") for pair in self.layout.encoder)
        amp_act = _activation(model_config.amp_activation)
        self.decoder_amp = Decoder(self.layout.decoder_amp, N, amp_act, model_config.pad_object)
        self.decoder_phase = Decoder(
            self.layout.decoder_phase, N, _phase_activation, model_config.pad_object
        )
        model_probe = normalize_probe(np.asarray(probe), model_config.probe_scale)
        # The data scale s stays with the model (the archive records it); lambda starts at log s
        # and may be trained away from it.
        self.intensity_scale = float(intensity_scale)
        lam = torch.tensor(math.log(intensity_scale), dtype=torch.float32)
        re = torch.from_numpy(np.ascontiguousarray(model_probe.real, dtype=np.float32))
        im = torch.from_numpy(np.ascontiguousarray(model_probe.imag, dtype=np.float32))
        self.register_buffer("log_intensity_scale", lam)
        self.register_buffer("probe_real", re)
        self.register_buffer("probe_imag", im)
        self.set_trainable(probe=probe_trainable, intensity_scale=intensity_scale_trainable)
        self.register_buffer("center_mask", physics.center_mask(N), persistent=False)
        self.register_buffer("support_mask", physics.support_mask(N), persistent=False)
        self.fused_physics = False
        self.reset_parameters(generator)

    @property
    def probe_trainable(self) -> bool:
        """Whether the probe is a trained parameter (decision 4)."""
        return isinstance(self.probe_real, nn.Parameter)

    @property
    def intensity_scale_trainable(self) -> bool:
        """Whether lambda = log s is a trained parameter (decision 4)."""
        return isinstance(self.log_intensity_scale, nn.Parameter)

    def set_trainable(self, *, probe: bool, intensity_scale: bool) -> None:
        """Make lambda and the probe parameters (trained) or buffers (constant), keeping their values."""
        for names, trainable in (
            (("log_intensity_scale",), intensity_scale),
            (("probe_real", "probe_imag"), probe),
        ):
            for name in names:
                value = getattr(self, name).detach().clone()
                delattr(self, name)
                if trainable:
                    setattr(self, name, nn.Parameter(value))
                else:
                    self.register_buffer(name, value)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Glorot-uniform kernels and zero biases (B 7.2; PyTorch's own defaults differ)."""
        for conv in self.convs().values():
            nn.init.xavier_uniform_(conv.weight, generator=generator)
            nn.init.zeros_(conv.bias)

    def convs(self) -> dict[str, nn.Conv2d]:
        """Every conv by canonical name, in canonical order (``NetworkLayout.convs``)."""
        names = [c.name for pair in self.layout.encoder for c in pair]
        modules = [m for block in self.encoder for m in (block.conv0, block.conv1)]
        out = dict(zip(names, modules, strict=True))
        out.update(self.decoder_amp.convs())
        out.update(self.decoder_phase.convs())
        return out

    def _decode(self, x_scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, N, C)`` s*X (NHWC) -> decoder amplitude and phase ``(B, K, N, N)`` each."""
        z = x_scaled.permute(0, 3, 1, 2) / torch.exp(self.log_intensity_scale)
        for block in self.encoder:
            z = block(z)
        return self.decoder_amp(z), self.decoder_phase(z)

    def object_heads(self, x_scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, N, C)`` s*X -> the decoders' amplitude and phase (radians) ``(B, N, N, K)``.

        What supervised mode trains (``ptycho_api.supervised``); TF's ``object_patches`` layer
        combines the same two tensors.
        """
        amp, phase = self._decode(x_scaled)
        return amp.permute(0, 2, 3, 1), phase.permute(0, 2, 3, 1)

    def object_patches(self, x_scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, N, C)`` s*X (NHWC) -> real and imaginary object patches ``(B, K, N, N)`` each."""
        amp, phase = self._decode(x_scaled)
        # Under bf16 autocast only the network runs in bfloat16; the physics stays float32.
        amp, phase = amp.float(), phase.float()
        # The reference forward model keeps only the centre box without probe_big
        # (a no-op with pad_object, whose decoder is already zero outside it).
        mask = None if self.model_config.probe_big else self.center_mask
        if self.fused_physics:
            return kernels.object_from_heads(amp, phase, mask)
        if mask is not None:
            amp = amp * mask
        return amp * torch.cos(phase), amp * torch.sin(phase)

    def canvas(
        self, x_scaled: torch.Tensor, local_offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-group overlap canvases ``(B, P, P)`` (real, imag) from NHWC inputs (B 7.6)."""
        patches = self.object_patches(x_scaled)
        with _float32(x_scaled):
            if self.fused_physics and self.model_config.object_big:
                return kernels.overlap_canvas(patches, local_offsets, self.padded)
            return physics.overlap_canvas(
                patches, local_offsets, self.padded, self.model_config.object_big
            )

    def forward(
        self, x_scaled: torch.Tensor, local_offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B,N,N,C)`` s*X, ``(B,1,2,C)`` offsets -> trimmed_obj ``(B,N,N,1)`` complex64,
        pred_amp_scaled and pred_intensity ``(B,N,N,C)`` float32 (B 7.1)."""
        offsets = local_offsets
        c_re, c_im = self.canvas(x_scaled, offsets)
        with _float32(x_scaled):
            return self._diffract(c_re, c_im, offsets)

    def _diffract(
        self, c_re: torch.Tensor, c_im: torch.Tensor, offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The forward model of B 7 from the overlap canvases (float32 physics)."""
        trimmed = torch.complex(*physics.trim_canvas((c_re, c_im), self.N))
        probe = (self.probe_real, self.probe_imag)
        sigma = self.model_config.gaussian_smoothing_sigma
        if self.fused_physics:
            psi_re, psi_im = kernels.extract_illuminate((c_re, c_im), offsets, self.N, probe)
        else:
            o_re, o_im = physics.extract_from_canvas((c_re, c_im), offsets, self.N)
            psi_re, psi_im = physics.illuminate((o_re, o_im), probe)
        if sigma > 0:
            psi_re, psi_im = physics.smooth_field((psi_re, psi_im), sigma)
        if self.model_config.probe_mask:
            psi_re = psi_re * self.support_mask
            psi_im = psi_im * self.support_mask
        amp = physics.far_field((psi_re, psi_im)) * torch.exp(self.log_intensity_scale)
        pred_amp_scaled = amp.permute(0, 2, 3, 1)
        return trimmed[..., None], pred_amp_scaled, pred_amp_scaled * pred_amp_scaled

    def object_canvas_crop(
        self, x_scaled: torch.Tensor, local_offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary parts ``(B, N, N)`` of the trimmed object (real tensors only, so the
        whole computation can be compiled; complex ops are outside ``torch.compile``'s codegen)."""
        c_re, c_im = self.canvas(x_scaled, local_offsets)
        return physics.trim_canvas((c_re, c_im), self.N)

    def predict_object(self, x_scaled: torch.Tensor, local_offsets: torch.Tensor) -> torch.Tensor:
        """The ``diffraction_to_obj`` output: ``(B, N, N, 1)`` complex64 trimmed object patches."""
        return torch.complex(*self.object_canvas_crop(x_scaled, local_offsets))[..., None]


def _float32(reference: torch.Tensor) -> torch.autocast:
    """Autocast off on ``reference``'s device: the physics runs float32 inside ``bf16-mixed``."""
    return torch.autocast(reference.device.type, enabled=False)


def build_model(
    model_config: ModelConfig,
    probe: np.ndarray,
    intensity_scale: float,
    *,
    probe_trainable: bool = False,
    intensity_scale_trainable: bool = True,
    seed: int | None = None,
) -> PtychoPINN:
    """A fresh ``PtychoPINN`` from a raw ``(N, N)`` probe and scale s; ``seed`` fixes the initial weights."""
    model_config.validate()
    probe = np.asarray(probe)
    if probe.shape != (model_config.N, model_config.N):
        raise ConfigError(
            f"probe: expected shape ({model_config.N}, {model_config.N}) for model.N; found {probe.shape}"
        )
    generator = None
    if seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    return PtychoPINN(
        model_config,
        probe,
        float(intensity_scale),
        probe_trainable=probe_trainable,
        intensity_scale_trainable=intensity_scale_trainable,
        generator=generator,
    )


def create_model_with_gridsize(
    gridsize: int,
    N: int,
    config: ModelConfig | TrainingConfig | InferenceConfig | None = None,
    *,
    probe: np.ndarray | None = None,
    intensity_scale: float | None = None,
) -> tuple[PtychoPINN, DiffractionToObject]:
    """``(autoencoder, diffraction_to_obj)`` for ``gridsize`` and ``N`` (B 7; the TF builder's twin).

    ``config`` supplies the other model settings (a ``TrainingConfig`` also the trainable flags
    and the seed). ``probe`` defaults to ``params.cfg['probe']`` when it has shape (N, N), else the
    default probe; ``intensity_scale`` to ``params.cfg['intensity_scale']``, else s from nphotons.
    """
    if config is None:
        config = ModelConfig()
    model_config = config if isinstance(config, ModelConfig) else config.model
    model_config = replace(model_config, gridsize=gridsize, N=N)
    if probe is None:
        stored = legacy_params.cfg.get("probe")
        stored = None if stored is None else np.asarray(stored)
        if stored is not None and stored.reshape(-1).size == N * N:
            probe = stored.reshape(N, N)
        else:
            probe = default_probe(N)
    if intensity_scale is None:
        intensity_scale = legacy_params.cfg.get("intensity_scale") or default_intensity_scale(
            float(getattr(config, "nphotons", None) or legacy_params.cfg.get("nphotons", 1e9)), N
        )
    training = config if isinstance(config, TrainingConfig) else None
    autoencoder = build_model(
        model_config,
        probe,
        float(intensity_scale),
        probe_trainable=training.probe_trainable if training else False,
        intensity_scale_trainable=training.intensity_scale_trainable if training else True,
        seed=getattr(config, "seed", None),
    )
    return autoencoder, DiffractionToObject(autoencoder)
