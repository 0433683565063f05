"""``--device``, ``--precision``, ``--compile``, ``--channels-last``, ``--kernels``: shared execution options."""

from __future__ import annotations

import argparse
from typing import Any

from ptycho_api.execution import COMPILE_MODES, DEVICES, KERNELS, PRECISIONS, ExecutionOptions

__all__ = ["add_execution_options", "execution_options", "apply_execution"]


def add_execution_options(p: argparse.ArgumentParser, *, precision: str = "32") -> None:
    """Register the execution options on a subcommand (``precision``: its default)."""
    group = p.add_argument_group("execution (either backend; see docs/execution.md)")
    group.add_argument(
        "--device",
        default="auto",
        help=f"{'|'.join(DEVICES)}: auto takes the first GPU when one is visible (default auto)",
    )
    group.add_argument(
        "--precision",
        default=precision,
        help=f"{'|'.join(PRECISIONS)}: IEEE float32, TF32 matmuls on NVIDIA GPUs, bfloat16 "
        "autocast (PyTorch only), or auto: bfloat16 with PyTorch where the CPU or GPU computes "
        f"it in hardware, else 32 (default {precision})",
    )
    group.add_argument(
        "--compile",
        default="off",
        help=f"{'|'.join(COMPILE_MODES)}: torch.compile mode (reduce-overhead adds CUDA graphs); "
        "TensorFlow compiles with XLA for any mode but off (default off)",
    )
    group.add_argument(
        "--channels-last",
        action="store_true",
        help="channels-last memory format for PyTorch convolutions (TensorFlow always is)",
    )
    group.add_argument(
        "--kernels",
        default="auto",
        help=f"{'|'.join(KERNELS)}: the physics around the network in fused kernels (PyTorch: "
        "Triton on a CUDA GPU; TensorFlow: XLA) or framework ops; auto fuses on a CUDA GPU "
        "with triton installed (default auto)",
    )


def execution_options(args: argparse.Namespace) -> ExecutionOptions:
    """The validated options of a parsed command line (``ConfigError`` names a bad flag)."""
    return ExecutionOptions(
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        channels_last=args.channels_last,
        kernels=args.kernels,
    ).validate()


def apply_execution(backend: Any, options: ExecutionOptions | None) -> Any:
    """Apply ``options`` to a backend instance (nothing when None); -> the backend."""
    if options is not None:
        backend.apply_execution(options)
    return backend
