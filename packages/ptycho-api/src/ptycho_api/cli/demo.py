"""``ptycho demo``: simulate a train/test pair, train briefly, reconstruct and report metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from ptycho_api.cli.console import announce, echo
from ptycho_api.cli.execution_args import add_execution_options, execution_options
from ptycho_api.cli.outputs import output_errors, prepare_output_dir
from ptycho_api.cli.train import add_common_training, build_config, train_and_report
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.errors import ConfigError
from ptycho_api.grid import simulate_grid_pair
from ptycho_api.probe import PROBE_KINDS, builtin_probe
from ptycho_api.rawdata import RawData
from ptycho_api.simulation import make_train_test_pair

EXAMPLE = """example:
  ptycho demo                       # 4 min with PyTorch on 2 cores with bfloat16 units,
                                    # 10 min with TensorFlow (docs/quality.md)
  ptycho demo --scan random --output-dir demo-random --backend torch
"""

SCANS = ("grid", "random")
DEMO_NPHOTONS = 1e9
DEMO_GRID_GROUPS = 4096
"""Training groups drawn from the grid scan's 6,724: longer epochs, whose plateau rule decays the
rate later (docs/quality.md, "Quality against training steps")."""
DEMO_TRAIN_IMAGES = 1024
DEMO_TEST_IMAGES = 512
DEMO_PROBE = {"grid": "disk", "random": "defocused"}
"""The grid scan at gridsize 2 learns fastest with the idealised disk (the published gridsize-2
case); on the random scan at gridsize 1 the structured probe breaks the disk's twin-image
ambiguity and the lines come out sharper in the same time (docs/quality.md)."""


def demo_config(scan: str = "grid") -> TrainingConfig:
    """The demo's schedule on ``scan``: small network, enough steps to see the object on a CPU.

    ``grid``: the published grid protocol at gridsize 2 (one patch per group of 2 x 2 patterns),
    4,096 groups for 16 epochs; ``random``: random positions at gridsize 1, 1,024 patterns.
    """
    grid = scan == "grid"
    return TrainingConfig(
        model=ModelConfig(N=64, gridsize=2 if grid else 1, n_filters_scale=1, object_big=not grid),
        nepochs=16,
        batch_size=16,
        n_groups=DEMO_GRID_GROUPS if grid else DEMO_TRAIN_IMAGES,
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
        description="Runs the whole path on simulated 'lines' objects with phase structure: "
        "simulate a train/test pair, train, reconstruct the test scan, print its metrics beside "
        "the untrained network's (same seed) and the paths of the figures. The default grid "
        "scan is the published protocol (groups of 2 x 2 patterns 4 px apart) with one training "
        "and one test object; --scan random uses random positions at gridsize 1.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_training(
        p,
        demo_config(),
        n_groups_default=f"{DEMO_GRID_GROUPS} on the grid scan, --n-images on the random scan",
        gridsize_default="2 on the grid scan, 1 on the random scan",
    )
    add_execution_options(p, precision="auto")
    p.add_argument(
        "--scan",
        choices=SCANS,
        default="grid",
        help="grid: the published grid protocol at gridsize 2, where the lines show within the "
        "demo's minutes; random: random positions grouped by nearest neighbours, the way most "
        "measured scans are taken (default grid)",
    )
    p.add_argument(
        "--n-images",
        type=int,
        help=f"--scan random: training patterns to simulate (default {DEMO_TRAIN_IMAGES})",
    )
    p.add_argument(
        "--n-test",
        type=int,
        help=f"--scan random: test patterns to simulate (default {DEMO_TEST_IMAGES})",
    )
    p.add_argument(
        "--probe",
        choices=list(PROBE_KINDS),
        help="built-in probe to simulate with: the idealised 'disk' or the structured "
        "'defocused' zone-plate probe (default disk on the grid scan, defocused on the random "
        "scan)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo from the command line."""
    if args.scan == "grid":
        for option in ("n_images", "n_test"):
            if getattr(args, option) is not None:
                raise ConfigError(
                    f"--{option.replace('_', '-')}: expected only with --scan random (the grid "
                    "scan's positions are the protocol's; --n-groups sets how many groups "
                    f"train); found {getattr(args, option)} with --scan grid"
                )
    else:
        args.n_images = DEMO_TRAIN_IMAGES if args.n_images is None else args.n_images
        args.n_test = DEMO_TEST_IMAGES if args.n_test is None else args.n_test
    args.probe = args.probe or DEMO_PROBE[args.scan]
    base = demo_config(args.scan)
    if args.scan == "random":
        # Train on every simulated pattern unless --n-groups says otherwise.
        base.n_groups = args.n_images
    config = build_config(args, base=base)
    out = prepare_output_dir(Path(config.output_dir))
    announce("demo", args, config)
    with output_errors(out):
        return _simulate_train_report(args, config, out)


def _simulate(
    args: argparse.Namespace, config: TrainingConfig, data: Path
) -> tuple[RawData, RawData]:
    """Write the demo's ``train_data.npz`` and ``test_data.npz`` under ``data``: -> the scans."""
    seed = config.seed if config.seed is not None else 7
    probe = builtin_probe(args.probe, config.model.N)
    if args.scan == "random":
        echo(f"[1/3] simulating {args.n_images} + {args.n_test} patterns in {data} ...")
        paths = make_train_test_pair(
            data,
            n_train=args.n_images,
            n_test=args.n_test,
            N=config.model.N,
            nphotons=config.nphotons,
            seed=seed,
            probe=probe,
            set_phi=True,
        )
        return RawData.from_file(paths[0]), RawData.from_file(paths[1])
    gridsize = config.model.gridsize
    echo(
        f"[1/3] simulating a grid scan of one training and one test object (groups of "
        f"{gridsize} x {gridsize} patterns) in {data} ..."
    )
    train, test = simulate_grid_pair(
        gridsize,
        probe,
        N=config.model.N,
        n_objects_train=1,
        n_objects_test=1,
        nphotons=config.nphotons,
        seed=seed,
        set_phi=True,
    )
    data.mkdir(parents=True, exist_ok=True)
    for scan, name in ((train.raw, "train_data.npz"), (test.raw, "test_data.npz")):
        # The true patches (Y) only train a supervised model; they would double the files.
        scan.Y = None
        scan.source = str(scan.to_file(data / name))
    echo(f"      {len(train.raw.groups)} training and {len(test.raw.groups)} test groups")
    return train.raw, test.raw


def _simulate_train_report(args: argparse.Namespace, config: TrainingConfig, out: Path) -> int:
    """The demo's three steps, writing everything under ``out``."""
    train, test = _simulate(args, config, out / "data")
    config.train_data_file = Path(train.source).resolve()
    config.test_data_file = Path(test.source).resolve()
    echo(f"[2/3] training for {config.nepochs} epoch{'s' if config.nepochs != 1 else ''} ...")
    results = train_and_report(
        config,
        train,
        test,
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
