"""``ptycho simulate``: write a simulated scan (or a train/test pair) as contract NPZ files."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ptycho_api.cli.console import echo, header
from ptycho_api.errors import DataError
from ptycho_api.objects import OBJECT_KINDS
from ptycho_api.rawdata import RawData
from ptycho_api.simulation import make_train_test_pair, simulate_to_file

EXAMPLE = """example:
  ptycho simulate --output scan.npz --n-images 500 --object lines --seed 1
  ptycho simulate --pair --output-dir data --n-images 1024 --n-test 512 --nphotons 1e6
  ptycho simulate --output mine.npz --object-file my_object.npz --probe-file my_probe.npz
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``simulate``."""
    p = sub.add_parser(
        "simulate",
        parents=[common],
        help="simulate a scan (NPZ with ground truth)",
        description="Simulate diffraction patterns of a built-in or user object (physics.md B 11.2).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", type=Path, help="NPZ file to write (one dataset)")
    where.add_argument(
        "--output-dir",
        type=Path,
        help="with --pair: directory for train_data.npz and test_data.npz",
    )
    p.add_argument(
        "--pair", action="store_true", help="write a train/test pair (test uses seed + 1)"
    )
    p.add_argument(
        "--n-images",
        type=int,
        default=500,
        help="scan positions (train set with --pair); default 500",
    )
    p.add_argument(
        "--n-test",
        type=int,
        default=None,
        help="scan positions of the test set (default: --n-images)",
    )
    p.add_argument(
        "-N",
        type=int,
        default=64,
        help="pattern size in pixels when the probe is built in (default 64)",
    )
    p.add_argument(
        "--nphotons", type=float, default=1e9, help="expected photons per pattern (default 1e9)"
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument(
        "--object",
        choices=list(OBJECT_KINDS),
        default="lines",
        help="built-in object (default lines)",
    )
    p.add_argument(
        "--object-file", type=Path, help="NPZ holding 'objectGuess' (H, W) to use instead"
    )
    p.add_argument(
        "--probe-file",
        type=Path,
        help="NPZ holding 'probeGuess' (N, N) to use instead of the default probe",
    )
    p.add_argument(
        "--no-noise", action="store_true", help="noiseless amplitudes (no Poisson sampling)"
    )
    p.set_defaults(run=run)


def _array_from(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if key not in npz.files:
                raise DataError(f"{path}: missing key {key!r}; found keys {sorted(npz.files)}")
            return np.asarray(npz[key])
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as NPZ ({exc})") from exc


def run(args: argparse.Namespace) -> int:
    """Simulate and report the files written."""
    echo(header("simulate"))
    kwargs = {
        "nphotons": args.nphotons,
        "poisson_noise": not args.no_noise,
        "obj": _array_from(args.object_file, "objectGuess") if args.object_file else args.object,
    }
    if args.probe_file:
        kwargs["probe"] = _array_from(args.probe_file, "probeGuess")
    else:
        kwargs["N"] = args.N
    if args.pair:
        if args.output_dir is None:
            raise DataError("simulate --pair: expected --output-dir; found --output")
        train, test = make_train_test_pair(
            args.output_dir,
            n_train=args.n_images,
            n_test=args.n_test or args.n_images,
            seed=args.seed,
            **kwargs,
        )
        paths = [train, test]
    else:
        if args.output is None:
            raise DataError("simulate: expected --output FILE (or --pair with --output-dir)")
        paths = [simulate_to_file(args.output, n_images=args.n_images, seed=args.seed, **kwargs)]
    for path in paths:
        raw = RawData.from_file(path)
        echo(
            f"wrote {path} ({len(raw.xcoords)} patterns of {raw.diff3d.shape[1]}x{raw.diff3d.shape[2]})"
        )
    return 0
