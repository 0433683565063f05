"""``ptycho inspect``: show and verify a model archive without importing any framework."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from ptycho_api.cli.console import echo, header, write_json
from ptycho_api.errors import BundleError

EXAMPLE = """example:
  ptycho inspect run1/wts.h5.zip
  ptycho inspect run1 --json run1/inspection.json
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``inspect``."""
    p = sub.add_parser(
        "inspect",
        parents=[common],
        help="show and verify a model archive",
        description="Print an archive's manifest, parameters, weights and members, and verify "
        "every checksum. Exits 2 when verification fails. Never imports TensorFlow or PyTorch.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("archive", type=Path, help="wts.h5.zip (any name) or a directory holding it")
    p.add_argument("--json", type=Path, dest="json_out", help="also write the report as JSON here")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Inspect from the command line."""
    echo(header("inspect"))
    try:
        bundle = importlib.import_module("ptycho_bundle")
    except ImportError as exc:
        raise BundleError(
            f"ptycho inspect needs ptycho-bundle: pip install ptycho-bundle ({exc})"
        ) from exc
    info = bundle.inspect(args.archive)
    echo(bundle.format_inspection(info))
    if args.json_out:
        echo(f"report: {write_json(args.json_out, info)}")
    if not info["ok"]:
        raise BundleError(
            f"{args.archive}: verification failed: " + "; ".join(map(str, info["errors"]))
        )
    echo("verification: all members ok")
    return 0
