"""``ptycho group``: write a random scan's square-shaped groups into its NPZ (key ``groups``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ptycho_api.cli.console import echo, header
from ptycho_api.cli.outputs import output_errors, refuse_existing_file
from ptycho_api.cli.train import add_data_kind
from ptycho_api.grouping import square_groups, square_offsets
from ptycho_api.rawdata import RawData, open_npz, read_members

logger = logging.getLogger(__name__)

EXAMPLE = """example:
  ptycho group data/train_data.npz data/train_square.npz --gridsize 2 --spacing 4
  ptycho group data/test_data.npz data/test_square.npz --gridsize 2 --spacing 4
  ptycho train --train-data data/train_square.npz --test-data data/test_square.npz \\
      --gridsize 2 --config one-patch.yaml    # one-patch.yaml: "model: {object_big: false}"
"""

# Keys RawData reads and writes itself; any other numeric array is copied as it is.
_SCAN_KEYS = frozenset(
    {
        "diff3d",
        "diffraction",
        "probeGuess",
        "xcoords",
        "ycoords",
        "xcoords_start",
        "ycoords_start",
        "scan_index",
        "objectGuess",
        "Y",
        "ground_truth_patches",
        "groups",
        "_metadata",
    }
)


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``group``."""
    p = sub.add_parser(
        "group",
        parents=[common],
        help="give a random scan square-shaped groups (gridsize > 1)",
        description="Write a copy of an NPZ scan with one fixed group per scan position under "
        "the key 'groups': for each member of a gridsize x gridsize square of side pitch "
        "--spacing px around the position, the nearest scan position not yet in the group "
        "(raster order). train and reconstruct then use these groups instead of drawing "
        "members among nearest neighbours, so every group has the same geometry, as on the "
        "published grid scan. Group the training and the test scan alike. On a random scan a "
        "member lies about half the mean distance between neighbouring positions from its "
        "place in the square; the command prints how far. "
        "Patterns are written as amplitudes; other arrays (e.g. 'bad_pixels') are copied.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="NPZ scan to read")
    p.add_argument("output", type=Path, help="NPZ file to write")
    p.add_argument(
        "--gridsize", type=int, default=2, help="members per group side (gridsize**2 per group)"
    )
    p.add_argument(
        "--spacing",
        type=float,
        default=4.0,
        help="distance between neighbouring members of the square, in object pixels",
    )
    add_data_kind(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    p.set_defaults(run=run)


def _other_arrays(path: Path) -> dict[str, np.ndarray]:
    """The scan file's arrays outside the contract (e.g. ``bad_pixels``), never unpickled."""
    with open_npz(path) as npz:
        keys = [k for k in npz.files if k not in _SCAN_KEYS]
        return read_members(npz, path, keys) if keys else {}


def run(args: argparse.Namespace) -> int:
    """Group from the command line."""
    refuse_existing_file(args.output, args.overwrite)
    echo(header("group"))
    raw = RawData.from_file(args.input, data_kind=args.data_kind)
    extra = _other_arrays(args.input)
    groups = square_groups(raw.xcoords, raw.ycoords, args.gridsize, args.spacing, raw.source)
    if raw.groups is not None:
        logger.warning(
            "%s: the scan's %d fixed groups are replaced by square groups",
            args.input,
            len(raw.groups),
        )
    raw.groups = groups
    with output_errors(args.output.parent):
        args.output.parent.mkdir(parents=True, exist_ok=True)
        raw.to_file(args.output, extra=extra)
    points = np.stack([raw.xcoords, raw.ycoords], axis=-1)
    targets = points[:, None, :] + square_offsets(args.gridsize, args.spacing)[None]
    miss = np.linalg.norm(points[groups] - targets, axis=-1)
    echo(
        f"wrote {args.output}: {len(groups)} groups of {groups.shape[1]} "
        f"({args.gridsize} x {args.gridsize}, {args.spacing:g} px apart)"
    )
    echo(
        f"members from their places in the square: median {np.median(miss):.2f} px, "
        f"95th percentile {np.percentile(miss, 95):.2f} px"
    )
    return 0
