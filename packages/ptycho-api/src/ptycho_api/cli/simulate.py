"""``ptycho simulate``: write a simulated scan (or a train/test pair) as contract NPZ files."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ptycho_api.cli.console import echo, header
from ptycho_api.cli.outputs import output_errors, prepare_output_dir
from ptycho_api.errors import DataError
from ptycho_api.grid import grid_layout, simulate_grid, simulate_grid_pair
from ptycho_api.objects import OBJECT_KINDS
from ptycho_api.probe import PROBE_KINDS, builtin_probe, prepare_probe
from ptycho_api.rawdata import RawData, open_npz, read_members
from ptycho_api.simulation import make_train_test_pair, simulate_to_file

EXAMPLE = """example:
  ptycho simulate --output scan.npz --n-images 500 --object lines --seed 1
  ptycho simulate --pair --output-dir data --n-images 1024 --n-test 512 --nphotons 1e6
  ptycho simulate --output mine.npz --object-file my_object.npz --probe-file my_probe.npz
  ptycho simulate --scan grid --gridsize 2 --pair --output-dir grid2 --probe defocused \\
      --probe-smoothing 0.5     # the published grid 'lines' protocol
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
        "--probe",
        choices=list(PROBE_KINDS),
        default="disk",
        help="built-in probe when there is no --probe-file: the idealised 'disk' or a "
        "'defocused' zone-plate probe (default disk)",
    )
    p.add_argument(
        "--probe-smoothing",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="bring the probe to N (edge-padded amplitude, extrapolated quadratic phase) and "
        "smooth it with a Gaussian of SIGMA pixels, as the published protocol prepares its "
        "experimental probe (default 0: the probe is used as it is)",
    )
    p.add_argument(
        "--no-noise", action="store_true", help="noiseless amplitudes (no Poisson sampling)"
    )
    grid = p.add_argument_group(
        "grid scan (--scan grid): the published 'lines' protocol; groups of gridsize^2 patterns "
        "on a regular grid, stored as fixed groups"
    )
    grid.add_argument(
        "--scan",
        choices=("random", "grid"),
        default="random",
        help="random positions (default) or a regular grid of groups",
    )
    grid.add_argument("--gridsize", type=int, default=1, help="patterns per group side (default 1)")
    grid.add_argument(
        "--size", type=int, default=392, help="side of each object image in pixels (default 392)"
    )
    grid.add_argument(
        "--offset", type=int, default=4, help="spacing of a group's patterns in pixels (default 4)"
    )
    grid.add_argument(
        "--outer-offset",
        type=int,
        default=8,
        help="twice the spacing of neighbouring groups, pixels (default 8; training set)",
    )
    grid.add_argument(
        "--outer-offset-test",
        type=int,
        default=20,
        help="the same for the test set of --pair (default 20)",
    )
    grid.add_argument(
        "--n-objects", type=int, default=2, help="object images per grid scan (default 2)"
    )
    p.set_defaults(run=run)


def _array_from(path: Path, key: str) -> np.ndarray:
    with open_npz(path) as npz:
        if key not in npz.files:
            raise DataError(f"{path}: missing key {key!r}; found keys {sorted(npz.files)}")
        return read_members(npz, path, [key])[key]


def _probe(args: argparse.Namespace) -> np.ndarray:
    """The probe of the command line: a file's or a built-in one, prepared when asked."""
    probe = (
        _array_from(args.probe_file, "probeGuess")
        if args.probe_file
        else builtin_probe(args.probe, args.N)
    )
    if args.probe_smoothing:
        probe = np.asarray(probe)
        probe = probe[0] if probe.ndim == 3 else probe
        probe = prepare_probe(probe, max(args.N, probe.shape[-1]), args.probe_smoothing)
    return probe


def _run_grid(args: argparse.Namespace) -> list[Path]:
    """Grid scans: one file, or a train/test pair sharing the training set's intensity scale."""
    probe = np.asarray(_probe(args))
    N = probe.shape[-1]
    if not args.pair:
        if args.output is None:
            raise DataError("simulate: expected --output FILE (or --pair with --output-dir)")
        layout = grid_layout(N, args.gridsize, args.offset, args.outer_offset, args.size)
        scan = simulate_grid(
            layout,
            probe,
            n_objects=args.n_objects,
            nphotons=args.nphotons,
            seed=args.seed,
            obj=args.object,
        )
        return [scan.raw.to_file(args.output)]
    if args.output_dir is None:
        raise DataError("simulate --pair: expected --output-dir; found --output")
    train, test = simulate_grid_pair(
        args.gridsize,
        probe,
        N=N,
        size=args.size,
        offset=args.offset,
        outer_offset_train=args.outer_offset,
        outer_offset_test=args.outer_offset_test,
        n_objects_train=args.n_objects,
        n_objects_test=args.n_objects,
        nphotons=args.nphotons,
        seed=args.seed,
        obj=args.object,
    )
    return [
        train.raw.to_file(Path(args.output_dir) / "train_data.npz"),
        test.raw.to_file(Path(args.output_dir) / "test_data.npz"),
    ]


def run(args: argparse.Namespace) -> int:
    """Simulate and report the files written."""
    echo(header("simulate"))
    directory = args.output_dir if args.output_dir is not None else args.output.parent
    prepare_output_dir(directory)
    with output_errors(directory):
        return _simulate(args)


def _simulate(args: argparse.Namespace) -> int:
    """Simulate into the checked output directory and report the files written."""
    if args.scan == "grid":
        if args.object_file:
            raise DataError(
                "simulate --scan grid: expected a built-in --object; found --object-file"
            )
        for path in _run_grid(args):
            raw = RawData.from_file(path)
            echo(f"wrote {path} ({len(raw.groups)} groups of {raw.groups.shape[1]} patterns)")
        return 0
    kwargs = {
        "nphotons": args.nphotons,
        "poisson_noise": not args.no_noise,
        "obj": _array_from(args.object_file, "objectGuess") if args.object_file else args.object,
    }
    if args.probe_file or args.probe != "disk" or args.probe_smoothing:
        kwargs["probe"] = _probe(args)
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
