"""Execution options a user sets for either backend, in one vocabulary (``--device``, ``--precision``,
``--compile``, ``--channels-last``, ``--kernels``, ``--batch-size``).

Each backend maps them onto its framework (``Backend.apply_execution``):

========================  ==========================================  ==========================================
option                    PyTorch                                     TensorFlow
========================  ==========================================  ==========================================
``device``                model and batches on ``cpu`` / ``cuda:0``   ops placed on ``/CPU:0`` / ``/GPU:0``
``precision="32"``        IEEE float32 everywhere (TF32 off)          float32 (TF32 off)
``precision="tf32"``      TF32 matmuls and convolutions on NVIDIA     TF32 matmuls and convolutions on NVIDIA
                          GPUs (float32 elsewhere; CPUs unchanged)    GPUs (float32 elsewhere; CPUs unchanged)
``precision="bf16-mixed"``  network under ``torch.autocast`` bfloat16  not supported: refused with an error
                          (Lightning's ``bf16-mixed`` in training);
                          physics and outputs float32
``precision="auto"``      ``bf16-mixed`` where the device has         ``32``
                          bfloat16 arithmetic (a CPU with AVX-512
                          BF16 or AMX, a CUDA GPU that supports
                          bfloat16), else ``32``
``compile``               ``torch.compile`` with that mode            XLA ``jit_compile`` (any mode but ``off``)
``channels_last``         ``torch.channels_last`` memory format       always (Keras is NHWC): accepted, no-op
``kernels="fused"``       the physics around the network in our own   the model compiled with XLA, which fuses
                          Triton kernels (needs a CUDA GPU and        the physics' elementwise ops
                          ``triton``)
``kernels="auto"``        fused on a CUDA GPU with ``triton`` and     framework ops (XLA only with ``compile``)
                          ``compile`` off, else framework ops
========================  ==========================================  ==========================================

The default (``auto``, ``32``, ``off``, no channels-last, ``auto`` kernels) is exact and safe on
any machine: the fused kernels compute the same float32 physics as the framework ops (their tests
bound the difference by float32 rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

from ptycho_api.errors import ConfigError

__all__ = [
    "DEVICES",
    "PRECISIONS",
    "COMPILE_MODES",
    "KERNELS",
    "BF16_REL_TOLERANCE",
    "ExecutionOptions",
    "auto_batch_size",
]

DEVICES = ("auto", "cpu", "gpu")
"""``auto``: the first GPU when one is visible, else the CPU; ``gpu`` fails without one."""
PRECISIONS = ("32", "tf32", "bf16-mixed", "auto")
"""``auto``: the backend's fastest precision within ``BF16_REL_TOLERANCE`` on this device (the
demo's default); each backend resolves it in ``apply_execution``."""
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
"""``torch.compile`` modes (``reduce-overhead`` adds CUDA graphs); XLA has one: any but ``off``."""

KERNELS = ("auto", "framework", "fused")
"""Who computes the physics around the network: ``framework`` ops, our ``fused`` kernels, or
``auto`` (fused where they pay off: a CUDA GPU)."""

BF16_REL_TOLERANCE = 2e-2
"""Bound on ``||bf16 - f32|| / ||f32||`` of predicted object patches. bfloat16 keeps 8
significant bits (unit roundoff 2^-9 = 2.0e-3); a convolution sums its products in float32
under autocast, so each layer adds about one rounding of its inputs and weights, and the
network's ~15 convolutions in depth give sqrt(15) * 2 * 2.0e-3 = 1.5e-2 as a random walk. A
wrong cast (float16 overflow, a lost scale) errs at order 1."""

_ALIASES = {"cuda": "gpu", "32-true": "32", "bf16": "bf16-mixed", "none": "off"}


@dataclass(frozen=True)
class ExecutionOptions:
    """How a backend runs (not part of the model archive). See the module table."""

    device: str = "auto"
    precision: str = "32"
    compile: str = "off"
    channels_last: bool = False
    kernels: str = "auto"

    def validate(self) -> ExecutionOptions:
        """Normalise aliases (``cuda``, ``32-true``, ``bf16``, ``none``) and check every field."""
        fields = {
            "device": DEVICES,
            "precision": PRECISIONS,
            "compile": COMPILE_MODES,
            "kernels": KERNELS,
        }
        values = {}
        for name, allowed in fields.items():
            value = str(getattr(self, name)).strip().lower()
            value = _ALIASES.get(value, value)
            if value not in allowed:
                raise ConfigError(
                    f"execution {name} (--{name}): expected one of {', '.join(allowed)}; "
                    f"found {getattr(self, name)!r}"
                )
            values[name] = value
        if not isinstance(self.channels_last, bool):
            raise ConfigError(
                f"execution channels_last (--channels-last): expected true or false; found "
                f"{self.channels_last!r}"
            )
        return ExecutionOptions(channels_last=self.channels_last, **values)

    def describe(self) -> str:
        """One line for the run header, e.g. ``device auto, precision 32, compile off, kernels auto``."""
        text = (
            f"device {self.device}, precision {self.precision}, compile {self.compile}, "
            f"kernels {self.kernels}"
        )
        return text + (", channels-last" if self.channels_last else "")


AUTO_BATCH_CPU = 64
"""Inference batch on a CPU: larger batches measured no faster on 2-16 cores."""
AUTO_BATCH_MAX = 4096
"""Largest automatic batch: beyond it a GPU is saturated and only latency grows."""
_BYTES_PER_GROUP_PIXEL = 4 * 256
"""Inference working set per input pixel: float32 activations of up to 256 channels at the
input's resolution (the widest decoder stage at n_filters_scale 2 holds 128, doubled for the
framework's temporaries)."""


def auto_batch_size(N: int, free_bytes: int | None) -> int:
    """Inference batch: 64 on a CPU (``free_bytes`` None); on a GPU half the free memory over
    the per-group working set, a power of two in [64, 4096]."""
    if free_bytes is None:
        return AUTO_BATCH_CPU
    per_group = N * N * _BYTES_PER_GROUP_PIXEL
    fit = max(1, free_bytes // 2 // per_group)
    return int(min(AUTO_BATCH_MAX, max(AUTO_BATCH_CPU, 2 ** (fit.bit_length() - 1))))
