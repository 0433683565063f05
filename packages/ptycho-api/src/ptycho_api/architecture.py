"""The network's structure and canonical weight names, shared by both backends (parity.md 1).

Both backends build the encoder/decoders of physics.md B 7.2-B 7.5 from :func:`network_layout`
and export/import weights under the names of :func:`canonical_weight_shapes`, so their key sets
are identical by construction. Layouts: conv kernels ``(kh, kw, in, out)`` float32 (HWIO),
biases ``(out,)`` float32, ``physics/log_intensity_scale`` ``()`` float32 and ``physics/probe``
``(N, N)`` complex64 (the normalised probe used by the model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ptycho_api.config import ModelConfig, require_supported_n
from ptycho_api.errors import ConfigError

__all__ = [
    "KERNEL_SIZE",
    "BORDER_CHANNELS",
    "Conv",
    "DecoderLayout",
    "NetworkLayout",
    "encoder_filters",
    "decoder_filters",
    "network_layout",
    "canonical_weight_shapes",
    "conv_weight_count",
    "check_canonical_weights",
    "LOG_SCALE_KEY",
    "PROBE_KEY",
]

KERNEL_SIZE = 3
LOG_SCALE_KEY = "physics/log_intensity_scale"
"""Canonical weight: log(lambda), the model's (possibly trained) intensity scale, ``()`` float32."""
PROBE_KEY = "physics/probe"
"""Canonical weight: the normalised probe the model uses, ``(N, N)`` complex64."""
BORDER_CHANNELS = 4
"""The decoder's last 4 trunk channels feed the probe_big border branch (B 7.4)."""

_ENCODER = {64: (32, 64, 128), 128: (16, 32, 64, 128), 256: (8, 16, 32, 64, 128)}
_DECODER = {64: (64, 32), 128: (128, 64, 32), 256: (256, 128, 64, 32)}


@dataclass(frozen=True)
class Conv:
    """One 3x3 'same' convolution: canonical name prefix and channel counts."""

    name: str
    in_channels: int
    out_channels: int

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """Canonical (HWIO) kernel shape ``(3, 3, in, out)``."""
        return (KERNEL_SIZE, KERNEL_SIZE, self.in_channels, self.out_channels)

    @property
    def n_weights(self) -> int:
        """Kernel plus bias element count."""
        return KERNEL_SIZE * KERNEL_SIZE * self.in_channels * self.out_channels + self.out_channels


@dataclass(frozen=True)
class DecoderLayout:
    """One decoder (amplitude or phase): trunk ConvUp blocks and the head (B 7.4).

    ``trunk`` holds pairs of convs (each pair followed by x2 nearest upsampling). With
    ``pad_object`` the ``head`` conv reads all but the last 4 trunk channels at N/2 and is
    zero-padded by N/4; ``border`` (probe_big only) is a ConvUp pair on the last 4 channels and
    ``border_head`` its output conv. Without ``pad_object``, ``up`` is a ConvUp pair on the whole
    trunk output and ``head`` follows it at full resolution.
    """

    prefix: str
    trunk: tuple[tuple[Conv, Conv], ...]
    head: Conv
    up: tuple[Conv, Conv] | None
    border: tuple[Conv, Conv] | None
    border_head: Conv | None

    def convs(self) -> list[Conv]:
        """Every conv of this decoder in canonical order."""
        out = [c for pair in self.trunk for c in pair]
        if self.up is not None:
            out.extend(self.up)
        out.append(self.head)
        if self.border is not None and self.border_head is not None:
            out.extend(self.border)
            out.append(self.border_head)
        return out


@dataclass(frozen=True)
class NetworkLayout:
    """Encoder (ConvPool pairs) and the two decoders for one ModelConfig."""

    N: int
    channels: int
    out_channels: int
    encoder: tuple[tuple[Conv, Conv], ...]
    decoder_amp: DecoderLayout
    decoder_phase: DecoderLayout

    def convs(self) -> list[Conv]:
        """Every conv of the network in canonical order."""
        enc = [c for pair in self.encoder for c in pair]
        return enc + self.decoder_amp.convs() + self.decoder_phase.convs()


def encoder_filters(N: int, n_filters_scale: int) -> list[int]:
    """Filters of the encoder's ConvPool blocks for patch size N (B 7.3)."""
    require_supported_n(N)
    return [f * n_filters_scale for f in _ENCODER[N]]


def decoder_filters(N: int, n_filters_scale: int) -> list[int]:
    """Filters of each decoder's trunk ConvUp blocks for patch size N (B 7.4)."""
    require_supported_n(N)
    return [f * n_filters_scale for f in _DECODER[N]]


def _pair(prefix: str, cin: int, cout: int) -> tuple[Conv, Conv]:
    return (Conv(f"{prefix}/conv0", cin, cout), Conv(f"{prefix}/conv1", cout, cout))


def _decoder(prefix: str, cfg: ModelConfig, enc_out: int, k: int) -> DecoderLayout:
    nfs = cfg.n_filters_scale
    trunk = []
    cin = enc_out
    for i, f in enumerate(decoder_filters(cfg.N, nfs)):
        trunk.append(_pair(f"{prefix}/block{i}", cin, f))
        cin = f
    side_filters = nfs * 2048 // cfg.N
    if cfg.pad_object:
        if cin <= BORDER_CHANNELS:
            raise ConfigError(
                f"model.n_filters_scale: the decoder needs more than {BORDER_CHANNELS} channels; "
                f"found {cin} with n_filters_scale={nfs}"
            )
        head = Conv(f"{prefix}/head", cin - BORDER_CHANNELS, k)
        border = border_head = None
        if cfg.probe_big:
            border = _pair(f"{prefix}/border/block0", BORDER_CHANNELS, side_filters)
            border_head = Conv(f"{prefix}/border/head", side_filters, k)
        return DecoderLayout(prefix, tuple(trunk), head, None, border, border_head)
    up = _pair(f"{prefix}/up/block0", cin, side_filters)
    head = Conv(f"{prefix}/head", side_filters, k)
    return DecoderLayout(prefix, tuple(trunk), head, up, None, None)


def network_layout(cfg: ModelConfig) -> NetworkLayout:
    """The full conv structure for ``cfg`` (validated; N must be 64, 128 or 256)."""
    cfg.validate()
    require_supported_n(cfg.N)
    c = cfg.n_channels
    k = c if cfg.object_big else 1
    encoder = []
    cin = c
    for i, f in enumerate(encoder_filters(cfg.N, cfg.n_filters_scale)):
        encoder.append(_pair(f"encoder/block{i}", cin, f))
        cin = f
    return NetworkLayout(
        N=cfg.N,
        channels=c,
        out_channels=k,
        encoder=tuple(encoder),
        decoder_amp=_decoder("decoder_amp", cfg, cin, k),
        decoder_phase=_decoder("decoder_phase", cfg, cin, k),
    )


def canonical_weight_shapes(cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Canonical name -> (shape, dtype) of every exported tensor for ``cfg``, in canonical order."""
    layout = network_layout(cfg)
    f32 = np.dtype(np.float32)
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for conv in layout.convs():
        out[f"{conv.name}/kernel"] = (conv.kernel_shape, f32)
        out[f"{conv.name}/bias"] = ((conv.out_channels,), f32)
    out[LOG_SCALE_KEY] = ((), f32)
    out[PROBE_KEY] = ((cfg.N, cfg.N), np.dtype(np.complex64))
    return out


def conv_weight_count(cfg: ModelConfig) -> int:
    """Number of conv weights (kernels + biases) of the network; B 15 gives the golden values."""
    return sum(conv.n_weights for conv in network_layout(cfg).convs())


def check_canonical_weights(weights: Mapping[str, np.ndarray], cfg: ModelConfig) -> None:
    """Raise ``ConfigError`` unless ``weights`` has exactly the canonical keys, shapes and dtypes."""
    expected = canonical_weight_shapes(cfg)
    missing = [k for k in expected if k not in weights]
    extra = sorted(k for k in weights if k not in expected)
    if missing or extra:
        raise ConfigError(
            "canonical weights do not match the model "
            f"(N={cfg.N}, gridsize={cfg.gridsize}, n_filters_scale={cfg.n_filters_scale}, "
            f"object_big={cfg.object_big}, probe_big={cfg.probe_big}, pad_object={cfg.pad_object}): "
            f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"unexpected {extra[:8]}{' ...' if len(extra) > 8 else ''}"
        )
    for key, (shape, dtype) in expected.items():
        arr = np.asarray(weights[key])
        if arr.shape != shape:
            raise ConfigError(
                f"canonical weight {key!r}: expected shape {shape}; found {arr.shape}"
            )
        if arr.dtype != dtype:
            raise ConfigError(
                f"canonical weight {key!r}: expected dtype {dtype}; found {arr.dtype}"
            )
