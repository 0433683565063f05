"""``ptycho backends``: installed backends, versions, devices, and which one would be selected."""

from __future__ import annotations

import argparse

from ptycho_api.backend import (
    LogFilters,
    discover_log_filters,
    list_backends,
    load_backend,
    resolve_backend,
)
from ptycho_api.cli.console import echo, framework_import_filtered, header
from ptycho_api.errors import BackendError

EXAMPLE = """example:
  ptycho backends
  PTYCHO_BACKEND=torch ptycho backends
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``backends``."""
    p = sub.add_parser(
        "backends",
        parents=[common],
        help="list installed backends and the one that would be selected",
        description="Lists every registered backend (entry-point group ptycho.backends) with its "
        "distribution, version, framework version and devices, and explains which one 'auto' "
        "selects. Imports each backend to check it works.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backend", help="show what this request would select")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List backends from the command line."""
    echo(header("backends"))
    # Every installed backend is imported here, so the filters of all of them apply.
    filters = LogFilters() if args.verbose else discover_log_filters()
    with framework_import_filtered(filters, not args.verbose):
        infos = list_backends()
    if not infos:
        echo(
            "no backend installed: pip install ptycho-tf (TensorFlow) or pip install ptycho-torch (PyTorch)"
        )
    for info in infos:
        if info.importable:
            backend = load_backend(info.name)
            echo(
                f"{info.name:<11} {info.distribution} {info.version}  framework {backend.framework_version()}  "
                f"devices {', '.join(backend.devices())}"
            )
        else:
            echo(f"{info.name:<11} {info.distribution} {info.version}  BROKEN: {info.error}")
    try:
        selection = resolve_backend(args.backend)
    except BackendError as exc:
        echo(f"selected:   none ({exc})")
        return 2 if args.backend else 0
    echo(f"selected:   {selection.name} ({selection.reason})")
    return 0
