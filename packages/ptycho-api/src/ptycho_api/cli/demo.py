"""``ptycho demo``: simulate a train/test pair, train briefly, reconstruct and report metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from ptycho_api.cli.console import announce, echo
from ptycho_api.cli.execution_args import add_execution_options, execution_options
from ptycho_api.cli.outputs import output_errors, prepare_output_dir
from ptycho_api.cli.train import add_common_training, build_config, train_and_report
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.probe import PROBE_KINDS, builtin_probe
from ptycho_api.rawdata import RawData
from ptycho_api.simulation import make_train_test_pair

EXAMPLE = """example:
  ptycho demo                       # about 4 minutes on a 2-core CPU
  ptycho demo --backend torch --output-dir demo-torch --epochs 30
"""

DEMO_TRAIN_IMAGES = 1024
DEMO_TEST_IMAGES = 512
DEMO_NPHOTONS = 1e9
DEMO_PROBE = "defocused"
"""A structured probe: it breaks the twin-image ambiguity of the real, symmetric disk, and the
lines come out sharper in the same training time (docs/quality.md)."""


def demo_config() -> TrainingConfig:
    """The demo's schedule: small network, enough epochs to see the object emerge on a CPU."""
    return TrainingConfig(
        model=ModelConfig(N=64, gridsize=1, n_filters_scale=1),
        nepochs=16,
        batch_size=16,
        n_groups=DEMO_TRAIN_IMAGES,
        nphotons=DEMO_NPHOTONS,
        seed=7,
        output_dir=Path("ptycho-demo"),
    )


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``demo``."""
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="simulate, train and reconstruct on built-in data (a few minutes)",
        description="Runs the whole path on a simulated 'lines' object with phase structure: "
        "simulate a train/test pair, train, reconstruct the test scan, print its metrics beside "
        "the untrained network's (same seed) and the paths of the figures.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_training(p, demo_config(), n_groups_default="--n-images")
    add_execution_options(p)
    p.add_argument(
        "--n-images",
        type=int,
        default=DEMO_TRAIN_IMAGES,
        help=f"training patterns to simulate (default {DEMO_TRAIN_IMAGES})",
    )
    p.add_argument(
        "--n-test",
        type=int,
        default=DEMO_TEST_IMAGES,
        help=f"test patterns to simulate (default {DEMO_TEST_IMAGES})",
    )
    p.add_argument(
        "--probe",
        choices=list(PROBE_KINDS),
        default=DEMO_PROBE,
        help="built-in probe to simulate with: the structured 'defocused' zone-plate probe or the "
        "idealised 'disk'",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo from the command line."""
    base = demo_config()
    # Train on every simulated pattern unless --n-groups says otherwise.
    base.n_groups = args.n_images
    config = build_config(args, base=base)
    out = prepare_output_dir(Path(config.output_dir))
    announce("demo", args, config)
    with output_errors(out):
        return _simulate_train_report(args, config, out)


def _simulate_train_report(args: argparse.Namespace, config: TrainingConfig, out: Path) -> int:
    """The demo's three steps, writing everything under ``out``."""
    echo(f"[1/3] simulating {args.n_images} + {args.n_test} patterns in {out / 'data'} ...")
    train_path, test_path = make_train_test_pair(
        out / "data",
        n_train=args.n_images,
        n_test=args.n_test,
        N=config.model.N,
        nphotons=config.nphotons,
        seed=config.seed if config.seed is not None else 7,
        probe=builtin_probe(args.probe, config.model.N),
        set_phi=True,
    )
    config.train_data_file, config.test_data_file = train_path.resolve(), test_path.resolve()
    echo(f"[2/3] training for {config.nepochs} epoch{'s' if config.nepochs != 1 else ''} ...")
    results = train_and_report(
        config,
        RawData.from_file(train_path),
        RawData.from_file(test_path),
        M=args.M,
        stitch=args.stitch,
        command=args.command_line,
        backend=args.backend,
        execution=execution_options(args),
        baseline=True,
    )
    echo("[3/3] done.")
    written = results.get("outputs", {})
    if "png" in written:
        echo(f"open {written['png']} and {out / 'loss.png'} to see the result")
    return 0
