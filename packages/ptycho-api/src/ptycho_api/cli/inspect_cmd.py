"""``ptycho inspect``: show and verify a model archive without importing any framework."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
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
        "every checksum. Exits 2 when verification fails; an archive without manifest.json "
        "(legacy) is reported as not verified. Never imports TensorFlow or PyTorch.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("archive", type=Path, help="wts.h5.zip (any name) or a directory holding it")
    p.add_argument("--json", type=Path, dest="json_out", help="also write the report as JSON here")
    p.set_defaults(run=run)


def _printable(text: str) -> str:
    """``text`` with non-printable characters escaped, as ``repr`` does: archive strings must not drive the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _say(text: str) -> None:
    """``echo`` to stdout that goes quiet when the reader has gone (``ptycho inspect X | head -1``)."""
    try:
        echo(text)
    except BrokenPipeError:
        # Send the rest (and the interpreter's final flush) to /dev/null instead of failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def run(args: argparse.Namespace) -> int:
    """Inspect from the command line."""
    _say(header("inspect"))
    try:
        bundle = importlib.import_module("ptycho_bundle")
    except ImportError as exc:
        raise BundleError(
            f"ptycho inspect needs ptycho-bundle: pip install ptycho-bundle ({exc})"
        ) from exc
    try:
        info = bundle.inspect(args.archive)
    except BundleError as exc:
        raise BundleError(_printable(str(exc))) from exc
    _say(bundle.format_inspection(info))
    if args.json_out:
        _say(f"report: {write_json(args.json_out, info)}")
    if not info["ok"]:
        raise BundleError(
            _printable(
                f"{args.archive}: verification failed: " + "; ".join(map(str, info["errors"]))
            )
        )
    # "ok" only when a manifest's checksums all matched; a legacy archive has none to check.
    if info.get("verified"):
        _say("verification: all members ok")
    else:
        _say(_printable(f"verification: {info.get('verification', 'not verified')}"))
    return 0
