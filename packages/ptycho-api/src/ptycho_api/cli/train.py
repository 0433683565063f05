"""``ptycho train``: train a model on an NPZ scan, write the archive, history, plots, metrics."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ptycho_api.cli.console import announce, echo, format_metrics_table, write_history
from ptycho_api.cli.outputs import write_reconstruction
from ptycho_api.config import TrainingConfig, load_config, save_config
from ptycho_api.plots import plot_training_history
from ptycho_api.rawdata import RawData
from ptycho_api.workflows import predict_patches, stitch_patches, train_cdi_model

logger = logging.getLogger(__name__)

EXAMPLE = """example:
  ptycho train --train-data data/train_data.npz --test-data data/test_data.npz \\
      --epochs 20 --gridsize 1 --n-groups 1024 --output-dir run1 --backend torch
  ptycho train --config train.yaml --train-data scan.npz --output-dir run2
"""

OVERRIDES = {
    "epochs": ("nepochs", None),
    "batch_size": ("batch_size", None),
    "n_groups": ("n_groups", None),
    "nphotons": ("nphotons", None),
    "seed": ("seed", None),
    "gridsize": ("gridsize", "model"),
    "n_filters_scale": ("n_filters_scale", "model"),
}


def add_common_training(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``demo``: backend, config file, overrides, output dir."""
    p.add_argument("--backend", help="tensorflow|tf|pytorch|torch|auto (default: selection ladder)")
    p.add_argument("--config", type=Path, help="YAML or JSON TrainingConfig (nested 'model:')")
    p.add_argument(
        "--output-dir", type=Path, help="where outputs go (default: the config's output_dir)"
    )
    p.add_argument("--epochs", type=int, help="override nepochs")
    p.add_argument("--batch-size", type=int, help="override batch_size (a power of two)")
    p.add_argument("--gridsize", type=int, help="override model.gridsize")
    p.add_argument("--n-filters-scale", type=int, help="override model.n_filters_scale")
    p.add_argument("--n-groups", type=int, help="override n_groups (groups drawn for training)")
    p.add_argument("--nphotons", type=float, help="override nphotons")
    p.add_argument("--seed", type=int, help="seed for grouping, initialisation and shuffling")
    p.add_argument("-M", type=int, default=20, help="stitching crop size in pixels (default 20)")


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``train``."""
    p = sub.add_parser(
        "train",
        parents=[common],
        help="train a model on an NPZ scan",
        description="Train PtychoPINN; writes wts.h5.zip, history.{json,csv}, loss.png and, with "
        "--test-data, the stitched reconstruction (NPZ + PNG) and metrics.json (with ground truth).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--train-data", type=Path, required=True, help="training NPZ (data contract)")
    p.add_argument(
        "--test-data", type=Path, help="test NPZ: reconstructed and evaluated after training"
    )
    add_common_training(p)
    p.set_defaults(run=run)


def build_config(args: argparse.Namespace, base: TrainingConfig | None = None) -> TrainingConfig:
    """The TrainingConfig from ``--config`` (or ``base``/defaults) with command-line overrides."""
    config = load_config(args.config, TrainingConfig) if args.config else (base or TrainingConfig())
    for option, (field, section) in OVERRIDES.items():
        value = getattr(args, option, None)
        if value is not None:
            setattr(config.model if section == "model" else config, field, value)
    if args.output_dir is not None:
        config.output_dir = args.output_dir
    if args.backend is not None:
        config.backend = args.backend
    return config.validate()


def train_and_report(
    config: TrainingConfig,
    train_raw: RawData,
    test_raw: RawData | None,
    *,
    M: int,
    backend: str | None = None,
) -> dict[str, Any]:
    """Train, write every output into ``config.output_dir``, print where they are."""
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = train_cdi_model(train_raw, test_raw, config, backend=backend)
    impl, history = results["backend"], results["history"]
    save_config(config, out_dir / "config.yaml")
    json_path, csv_path = write_history(out_dir, history)
    loss_png = plot_training_history(
        out_dir / "loss.png",
        {k: v for k, v in history.items() if k != "lr"},
        title=f"training loss ({impl.name})",
    )
    echo(f"archive:  {results['archive']}")
    echo(f"history:  {json_path}, {csv_path}")
    echo(f"loss plot: {loss_png}")
    test = results["test_container"]
    if test is not None:
        echo(f"reconstructing {len(test)} test groups ...")
        patches = predict_patches(impl, results["model"], test, results["intensity_scale"])
        canvas = stitch_patches(impl, patches, test.global_offsets, M=M)
        truth = test_raw.objectGuess if test_raw is not None else None
        written = write_reconstruction(
            out_dir,
            canvas,
            test.global_offsets,
            M,
            ground_truth=truth,
            title=f"reconstruction ({impl.name})",
        )
        results["outputs"] = written
        echo(f"reconstruction: {written['npz']}, {written['png']}")
        if "metrics" in written:
            echo(format_metrics_table(written["metrics"]))
            echo(f"metrics:  {written['metrics_json']}")
    return results


def run(args: argparse.Namespace) -> int:
    """Train from the command line."""
    config = build_config(args)
    announce("train", args, config)
    train_raw = RawData.from_file(args.train_data)
    test_raw = RawData.from_file(args.test_data) if args.test_data else None
    width = int(train_raw.diff3d.shape[1])
    if config.model.N != width:
        # As Ptychodus does: the patch size is the data's pattern width.
        logger.info("model.N set to %d, the width of the training patterns", width)
        config.model.N = width
        config.validate()
    train_and_report(config, train_raw, test_raw, M=args.M, backend=args.backend)
    return 0
