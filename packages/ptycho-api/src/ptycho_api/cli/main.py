"""Argument parsing, dispatch to subcommands, exit codes (DESIGN.md section 7).

Exit codes: 0 success; 2 usage, configuration, data, archive or backend errors (a one-line
message, a traceback only with ``-v``); 1 unexpected failures.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from ptycho_api import __version__
from ptycho_api.cli import backends_cmd, demo, evaluate, inspect_cmd, reconstruct, simulate, train
from ptycho_api.cli.console import FRAMEWORK_MODULES, configure_logging, echo
from ptycho_api.errors import PtychoError

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)

COMMANDS = (simulate, train, reconstruct, evaluate, inspect_cmd, backends_cmd, demo)
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The ``ptycho`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="ptycho",
        description="PtychoPINN: physics-informed neural-network ptychography on TensorFlow or PyTorch.",
        epilog="Run 'ptycho COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument("--version", action="version", version=f"ptycho-api {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more output (-vv: debug); tracebacks on errors",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ptycho`` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    verbosity = -1 if args.quiet else args.verbose
    configure_logging(verbosity)
    if verbosity < 1:
        # TensorFlow's C++ start-up chatter (oneDNN notes, "no CUDA driver") drowns the output of
        # a CPU run; it must be set before a backend imports TensorFlow. -v keeps it.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=FRAMEWORK_MODULES)
    try:
        return int(args.run(args) or EXIT_OK)
    except PtychoError as exc:
        if args.verbose:
            traceback.print_exc()
        echo(f"ptycho {args.command}: error: {exc}", err=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        echo(f"ptycho {args.command}: interrupted", err=True)
        return 130
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        echo(
            f"ptycho {args.command}: unexpected error: {type(exc).__name__}: {exc} "
            "(run with -v for the traceback)",
            err=True,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
