"""Runtime knobs of the PyTorch backend that are not part of the shared config (never bridged)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ptycho_api.errors import ConfigError

__all__ = ["ExecutionConfig"]

_PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "64-true")
_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass
class ExecutionConfig:
    """How Lightning runs: devices, parallelism, numerics. Defaults are safe on a CPU-only machine.

    ``accelerator``/``devices``/``strategy``/``precision`` go to ``lightning.Trainer`` as is
    (``strategy="ddp"`` with ``accelerator="cpu", devices=2`` uses gloo). ``num_workers`` is the
    DataLoader worker count; ``deterministic`` makes Lightning select deterministic kernels;
    ``compile`` wraps the network with ``torch.compile`` (training and prediction): True or a
    mode (``default``, ``reduce-overhead``, ``max-autotune``). ``channels_last`` stores the
    convolution weights in ``torch.channels_last`` format. ``fused_physics`` computes the physics
    around the network with the Triton kernels of ``ptycho_torch.kernels`` (CUDA, or Triton's
    interpreter where ``TRITON_INTERPRET=1``).
    ``enable_progress_bar``: Lightning's per-batch bar; None shows it only when stdout is a
    terminal (in a log file it is a wall of carriage returns; one line per epoch is logged anyway).
    ``resume_from`` is a checkpoint path, or ``"last"`` for ``<output_dir>/checkpoints/last.ckpt``.
    """

    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_workers: int = 0
    deterministic: bool = False
    compile: bool | str = False
    channels_last: bool = False
    fused_physics: bool = False
    enable_progress_bar: bool | None = None
    resume_from: str | Path | None = None

    def validate(self) -> ExecutionConfig:
        """Check the fields; raise ``ConfigError`` naming the first bad one. Returns ``self``."""
        if str(self.precision) not in _PRECISIONS:
            raise ConfigError(
                f"execution.precision: expected one of {list(_PRECISIONS)}; found {self.precision!r}"
            )
        if not isinstance(self.compile, bool) and self.compile not in _COMPILE_MODES:
            raise ConfigError(
                f"execution.compile: expected true, false or one of {list(_COMPILE_MODES)}; "
                f"found {self.compile!r}"
            )
        if (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, int)
            or self.num_workers < 0
        ):
            raise ConfigError(
                f"execution.num_workers: expected an integer >= 0; found {self.num_workers!r}"
            )
        return self

    @property
    def compile_mode(self) -> str | None:
        """The ``torch.compile`` mode, or None when not compiling."""
        if self.compile is False:
            return None
        return "default" if self.compile is True else str(self.compile)
