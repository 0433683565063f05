"""Argument parsing, dispatch to subcommands, exit codes (DESIGN.md section 7).

Exit codes: 0 success; 2 usage, configuration, data, archive or backend errors (a one-line
message, a traceback only with ``-v``); 1 unexpected failures.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence

from ptycho_api import __version__
from ptycho_api.backend import discover_log_filters
from ptycho_api.cli import (
    backends_cmd,
    convert,
    demo,
    evaluate,
    group,
    inspect_cmd,
    reconstruct,
    simulate,
    train,
)
from ptycho_api.cli.console import configure_logging, echo, quiet_framework_start
from ptycho_api.errors import PtychoError
from ptycho_api.rawdata import memory_limit_note

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)

COMMANDS = (simulate, convert, group, train, reconstruct, evaluate, inspect_cmd, backends_cmd, demo)
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and examples as written and appends each option's real default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        # Flags (nargs 0) and options without a default would only add "default: None/False"
        # noise; help that already states its default is left as written.
        if (
            action.nargs == 0
            or action.default in (None, argparse.SUPPRESS)
            or "default" in text
            or not action.option_strings
        ):
            return action.help
        return f"{text} (default %(default)s)"


class PtychoParser(argparse.ArgumentParser):
    """The top-level parser: an unknown option is refused with the closest known one named."""

    commands: Mapping[str, argparse.ArgumentParser] = {}

    def parse_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """Parse as argparse does; unrecognised arguments exit 2 from the subcommand's parser."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            target = self.commands.get(getattr(parsed, "command", None) or "", self)
            target.error(unrecognized_message(extras, target))
        return parsed


def unrecognized_message(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """``unrecognized arguments: ...`` with a "did you mean" for each mistyped option."""
    # Compared without the dashes, which would make any two long options look alike
    # ("--bogus" and "--verbose"). argparse keeps no public list of a parser's options.
    known = {opt.lstrip("-"): opt for action in parser._actions for opt in action.option_strings}
    hints = []
    for arg in extras:
        if len(arg) < 2 or not arg.startswith("-") or arg[1].isdigit():
            continue  # a value, or a negative number, not an option
        name = arg.split("=", 1)[0]
        close = difflib.get_close_matches(name.lstrip("-"), list(known), n=1, cutoff=0.6)
        if close:
            hints.append((name, known[close[0]]))
    message = f"unrecognized arguments: {' '.join(extras)}"
    if len(hints) == 1:
        message += f"; did you mean {hints[0][1]}?"
    elif hints:
        message += "; did you mean " + ", ".join(f"{c} for {a}" for a, c in hints) + "?"
    return message


def build_parser() -> argparse.ArgumentParser:
    """The ``ptycho`` parser with every subcommand registered."""
    parser = PtychoParser(
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
    sub = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        required=True,
        parser_class=argparse.ArgumentParser,
    )
    for module in COMMANDS:
        module.add_parser(sub, common)
    # Set here rather than in each module, so that every subcommand's --help shows its defaults.
    for command in sub.choices.values():
        command.formatter_class = HelpFormatter
    parser.commands = dict(sub.choices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ptycho`` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Recorded in a training run's provenance.json.
    args.command_line = ["ptycho", *(sys.argv[1:] if argv is None else argv)]
    verbosity = -1 if args.quiet else args.verbose
    configure_logging(verbosity)
    if verbosity < 1:
        # Each installed backend says (ptycho.log_filters) which framework start-up chatter and
        # developer notices drown the output of a run; some of it must be set before a backend
        # imports its framework, so it is applied now for all of them. -v keeps everything.
        quiet_framework_start(discover_log_filters())
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
    except BrokenPipeError:
        # The reader left (``ptycho backends | head -1``): what it wanted was read. The
        # interpreter's last flush goes to /dev/null instead of failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    except MemoryError:
        if args.verbose:
            traceback.print_exc()
        echo(
            f"ptycho {args.command}: error: out of memory: the inputs need more memory than this "
            f"process may use{memory_limit_note()}; use a smaller input or more memory",
            err=True,
        )
        return EXIT_USAGE
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
