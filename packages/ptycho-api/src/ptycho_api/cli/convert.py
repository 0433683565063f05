"""``ptycho convert``: turn an HDF5 beamline scan into a contract NPZ (needs ``ptycho-api[hdf5]``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ptycho_api.cli.console import echo, header
from ptycho_api.cli.outputs import output_errors, refuse_existing_file
from ptycho_api.cli.train import add_data_kind
from ptycho_api.hdf5 import POSITION_UNITS, read_hdf5_scan
from ptycho_api.plausibility import check_scan

EXAMPLE = """example:
  ptycho convert scan.h5 scan.npz --diffraction-key /entry/data/counts \\
      --x-key /entry/scan/x --y-key /entry/scan/y --probe-key /entry/probe \\
      --mask-key /entry/detector/bad_pixels --positions-unit m \\
      --energy-ev 8000 --distance-m 2.0 --detector-pixel-m 75e-6
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``convert``."""
    p = sub.add_parser(
        "convert",
        parents=[common],
        help="convert an HDF5 scan to a contract NPZ",
        description="Read patterns, positions, probe and a bad-pixel mask from an HDF5 file and "
        "write a contract NPZ: positions in object pixels, patterns as amplitudes sqrt(counts) "
        "with bad pixels set to 0, the mask under the key 'bad_pixels'. Needs h5py "
        "(pip install 'ptycho-api[hdf5]').",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="HDF5 scan to read")
    p.add_argument("output", type=Path, help="NPZ file to write")
    p.add_argument("--diffraction-key", default="diff3d", help="(M, N, N) patterns dataset")
    p.add_argument("--x-key", default="xcoords", help="(M,) x positions (columns) dataset")
    p.add_argument("--y-key", default="ycoords", help="(M,) y positions (rows) dataset")
    p.add_argument("--probe-key", default="probeGuess", help="(N, N) complex probe dataset")
    p.add_argument(
        "--mask-key", help="(N, N) bad-pixel mask dataset, non-zero = bad (default: none)"
    )
    p.add_argument(
        "--positions-unit",
        choices=POSITION_UNITS,
        default="px",
        help="px: object pixels; m: metres, divided by the object pixel lambda z / (N p)",
    )
    wave = p.add_mutually_exclusive_group()
    wave.add_argument("--wavelength-m", type=float, help="photon wavelength in metres")
    wave.add_argument("--energy-ev", type=float, help="photon energy in eV (instead of wavelength)")
    p.add_argument("--distance-m", type=float, help="sample-detector distance in metres")
    p.add_argument("--detector-pixel-m", type=float, help="detector pixel size in metres")
    add_data_kind(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Convert from the command line."""
    refuse_existing_file(args.output, args.overwrite)
    echo(header("convert"))
    scan = read_hdf5_scan(
        args.input,
        diffraction_key=args.diffraction_key,
        x_key=args.x_key,
        y_key=args.y_key,
        probe_key=args.probe_key,
        mask_key=args.mask_key,
        positions_unit=args.positions_unit,
        wavelength_m=args.wavelength_m,
        energy_ev=args.energy_ev,
        distance_m=args.distance_m,
        detector_pixel_m=args.detector_pixel_m,
        data_kind=args.data_kind,
    )
    raw = scan.raw
    check_scan(raw.xcoords, raw.ycoords, raw.N, source=str(args.input))
    extra = {} if scan.bad_pixels is None else {"bad_pixels": scan.bad_pixels}
    with output_errors(args.output.parent):
        args.output.parent.mkdir(parents=True, exist_ok=True)
        raw.to_file(args.output, extra=extra)
    echo(f"wrote {args.output}: {len(raw)} patterns of {raw.N}x{raw.N}")
    if scan.object_pixel_m is not None:
        echo(f"object pixel: {scan.object_pixel_m:.4g} m")
    if scan.bad_pixels is not None:
        echo(f"bad pixels:   {int(scan.bad_pixels.sum())} set to 0 (key 'bad_pixels')")
    if scan.mean_counts is not None:
        echo(
            f"mean counts per pattern: {scan.mean_counts:.4g} (train with --nphotons {scan.mean_counts:.4g})"
        )
    return 0
