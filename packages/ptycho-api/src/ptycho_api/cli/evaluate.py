"""``ptycho evaluate``: metrics of a reconstruction against a ground-truth object."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ptycho_api.cli.console import echo, format_metrics_table, header, write_json
from ptycho_api.cli.outputs import RECONSTRUCTION_NPZ, evaluate_against, output_errors
from ptycho_api.errors import DataError
from ptycho_api.metrics import has_phase_structure
from ptycho_api.rawdata import RawData, open_npz, read_members

EXAMPLE = """example:
  ptycho evaluate --reconstruction recon1/reconstruction.npz --ground-truth data/test_data.npz
"""

RECON_KEYS = ("object", "global_offsets", "M")


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``evaluate``."""
    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="metrics of a reconstruction against ground truth",
        description="Crop the ground-truth object to the scanned region and compute MAE, MSE, "
        "PSNR (peak = range, and peak 255), SSIM, MS-SSIM and FRC50 for amplitude and phase "
        "(physics.md B 12).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--reconstruction",
        type=Path,
        required=True,
        help=f"{RECONSTRUCTION_NPZ} written by train/reconstruct",
    )
    p.add_argument(
        "--ground-truth", type=Path, required=True, help="NPZ scan holding 'objectGuess'"
    )
    p.add_argument(
        "--output",
        type=Path,
        help="metrics JSON to write (default: metrics.json beside the reconstruction)",
    )
    p.set_defaults(run=run)


def _load_reconstruction(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with open_npz(path) as npz:
        missing = [k for k in RECON_KEYS if k not in npz.files]
        if missing:
            raise DataError(
                f"{path}: missing key(s) {missing}; expected {list(RECON_KEYS)}, found {sorted(npz.files)}"
            )
        arrays = read_members(npz, path, RECON_KEYS)
    if arrays["M"].size != 1 or arrays["M"].dtype.kind not in "iu":
        raise DataError(f"{path}: key 'M': expected one integer crop size; found {arrays['M']!r}")
    return arrays["object"], arrays["global_offsets"], int(arrays["M"])


def run(args: argparse.Namespace) -> int:
    """Evaluate from the command line."""
    echo(header("evaluate"))
    image, offsets, M = _load_reconstruction(args.reconstruction)
    truth = RawData.from_file(args.ground_truth).objectGuess
    if truth is None:
        raise DataError(f"{args.ground_truth}: missing key 'objectGuess' (the ground-truth object)")
    metrics, _, aligned_truth = evaluate_against(image, truth, offsets, M)
    echo(format_metrics_table(metrics, phase=has_phase_structure(aligned_truth)))
    target = args.output or args.reconstruction.with_name("metrics.json")
    with output_errors(target.parent):
        echo(f"metrics: {write_json(target, metrics)}")
    return 0
