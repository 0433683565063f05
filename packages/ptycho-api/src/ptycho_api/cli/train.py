"""``ptycho train``: train a model on an NPZ scan, write the archive, history, plots, metrics."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api.backend import select_backend
from ptycho_api.cli.console import announce, echo, format_metrics_table, write_history, write_json
from ptycho_api.cli.execution_args import add_execution_options, apply_execution, execution_options
from ptycho_api.cli.outputs import (
    PROVENANCE_JSON,
    TRAIN_RUN_FILES,
    UNTRAINED_METRICS_JSON,
    claim_output_dir,
    evaluate_against,
    output_errors,
    prepare_output_dir,
    provenance_record,
    write_reconstruction,
)
from ptycho_api.config import MODEL_TYPES, TrainingConfig, load_config, save_config
from ptycho_api.errors import ConfigError
from ptycho_api.execution import ExecutionOptions
from ptycho_api.plausibility import DATA_KINDS, amplitude_limit, check_raw
from ptycho_api.plots import plot_training_history
from ptycho_api.rawdata import RawData
from ptycho_api.schedule import SCHEDULE
from ptycho_api.stitching import STITCH_MODES, stitch_support
from ptycho_api.workflows import predict_patches, stitch_container, train_cdi_model

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
    "neighbor_count": ("neighbor_count", None),
    "n_filters_scale": ("n_filters_scale", "model"),
    "model_type": ("model_type", "model"),
    "early_stopping": ("early_stopping", None),
}


def _short(value: float) -> str:
    """``1e9`` rather than ``1e+09``: the way the value is written on the command line."""
    return f"{value:g}".replace("e+0", "e").replace("e+", "e")


def add_common_training(
    p: argparse.ArgumentParser,
    defaults: TrainingConfig,
    *,
    n_groups_default: str | None = None,
    gridsize_default: str | None = None,
) -> None:
    """Options shared by ``train`` and ``demo``, with ``defaults``' values shown in the help.

    ``n_groups_default`` and ``gridsize_default``: the help's default text where it is not one
    value (the demo's depend on its scan).
    """
    p.add_argument(
        "--backend",
        help=f"tensorflow|tf|pytorch|torch|auto (default {defaults.backend}: the selection ladder)",
    )
    p.add_argument("--config", type=Path, help="YAML or JSON TrainingConfig (nested 'model:')")
    # These stay None when not given, so that a --config file's values are kept; the help shows
    # what is used when neither the option nor the file sets them.
    o = p.add_argument_group(
        "training options",
        "Each overrides the --config file's value; without either, the default shown applies.",
    )
    o.add_argument(
        "--output-dir", type=Path, help=f"where outputs go (default {defaults.output_dir})"
    )
    o.add_argument("--epochs", type=int, help=f"nepochs (default {defaults.nepochs})")
    o.add_argument(
        "--batch-size",
        type=int,
        help=f"batch_size, a power of two (default {defaults.batch_size})",
    )
    o.add_argument(
        "--gridsize",
        type=int,
        help="model.gridsize: groups of gridsize**2 patterns "
        f"(default {gridsize_default or defaults.model.gridsize})",
    )
    o.add_argument(
        "--neighbor-count",
        type=int,
        help="neighbor_count K: a group's members are drawn among each seed position's K "
        f"nearest neighbours; needs K >= gridsize**2 (default {defaults.neighbor_count})",
    )
    o.add_argument(
        "--n-filters-scale",
        type=int,
        help=f"model.n_filters_scale (default {defaults.model.n_filters_scale})",
    )
    o.add_argument(
        "--n-groups",
        type=int,
        help="n_groups: groups drawn for training, at most one per scan position unless "
        f"enable_oversampling (default {n_groups_default or defaults.n_groups})",
    )
    o.add_argument("--nphotons", type=float, help=f"nphotons (default {_short(defaults.nphotons)})")
    o.add_argument(
        "--no-early-stopping",
        dest="early_stopping",
        action="store_const",
        const=False,
        help="early_stopping false: train all epochs, not stopping once the training loss has "
        f"not improved for {SCHEDULE.early_stopping_patience} epochs "
        f"(default {'on' if defaults.early_stopping else 'off'})",
    )
    o.add_argument(
        "--seed",
        type=int,
        help="seed for grouping, initialisation and shuffling (default "
        f"{'none: unseeded' if defaults.seed is None else defaults.seed})",
    )
    add_stitching(p)


def add_stitching(p: argparse.ArgumentParser) -> None:
    """``-M`` and ``--stitch``: how patches become one image (shared by train, demo, reconstruct)."""
    p.add_argument(
        "-M",
        type=int,
        default=20,
        help="the image's margin around the scan positions, and the crop of --stitch crop, in "
        "pixels (default 20)",
    )
    p.add_argument(
        "--stitch",
        choices=STITCH_MODES,
        default="probe",
        help="probe: each pixel the mean of every patch that holds it, weighted by the "
        "illumination |probe|^2 its group received there, over the network's object box (N/2); "
        "crop: the original PtychoPINN's plain mean of central M x M crops (default probe)",
    )


def check_crop(M: int, N: int) -> None:
    """Refuse ``-M`` outside [1, N] before any work, naming the flag and the pattern size."""
    if not 0 < M <= N:
        raise ConfigError(
            f"-M: expected a stitching margin/crop in [1, {N}] pixels (the pattern size N); "
            f"found {M}"
        )


def add_data_kind(p: argparse.ArgumentParser) -> None:
    """``--data-kind``: what the data files' patterns hold (shared by train and reconstruct)."""
    p.add_argument(
        "--data-kind",
        choices=DATA_KINDS,
        default="auto",
        help="what the patterns hold: counts and intensities are square-rooted, amplitudes kept "
        "as they are; auto: integers are counts, floats amplitudes, and float photon counts are "
        "refused until stated (default auto)",
    )


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
    add_data_kind(p)
    add_execution_options(p)
    add_common_training(p, TrainingConfig())
    p.add_argument(
        "--model-type",
        choices=MODEL_TYPES,
        help="model.model_type: pinn trains through the physics (no labels); supervised trains "
        "the same network against the ground truth ('Y' or 'objectGuess' in --train-data) "
        f"(default {TrainingConfig().model.model_type})",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train into an --output-dir that holds a previous run (wts.h5.zip or checkpoints/), "
        "first removing only that run's known outputs: "
        f"{', '.join(TRAIN_RUN_FILES)} (default: refuse)",
    )
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
    stitch: str = "probe",
    command: Sequence[str],
    backend: str | None = None,
    baseline: bool = False,
    execution: ExecutionOptions | None = None,
) -> dict[str, Any]:
    """Train, write every output into ``config.output_dir``, print where they are.

    ``command`` (the command line) and the data files named in ``config`` go into
    ``provenance.json`` beside ``config.yaml``. With ``baseline`` and ground truth, the untrained
    network (same seed) is scored too, printed beside the trained one and written to
    ``metrics_untrained.json``: what training gained, not just where it ended.
    """
    check_crop(M, config.model.N)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Hashed before training: the record is of the files as they were read, even if they are
    # replaced during a long run.
    provenance = provenance_record(config, command)
    impl = apply_execution(select_backend(backend, config), execution)
    if execution is not None and execution.precision == "auto":
        echo(f"precision auto: {impl.options.precision} on this machine")
    results = train_cdi_model(train_raw, test_raw, config, backend=impl)
    impl, history = results["backend"], results["history"]
    save_config(config, out_dir / "config.yaml")
    provenance["backend"] = {"name": impl.name, "framework_version": impl.framework_version()}
    if execution is not None:
        provenance["execution"] = dataclasses.asdict(execution)
    write_json(out_dir / PROVENANCE_JSON, provenance)
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
        canvas = stitch_container(impl, patches, test, M=M, stitch=stitch)
        truth = test_raw.objectGuess if test_raw is not None else None
        written = write_reconstruction(
            out_dir,
            canvas,
            test.global_offsets,
            M,
            ground_truth=truth,
            title=f"reconstruction ({impl.name})",
            amplitude_max=amplitude_limit(config.model.amp_activation),
            support=stitch_support(stitch, config.model.N, M),
        )
        results["outputs"] = written
        echo(f"reconstruction: {written['npz']}, {written['png']}")
        if "metrics" in written:
            untrained = None
            if baseline:
                untrained = untrained_metrics(results, config, truth, M=M, stitch=stitch)
                write_json(out_dir / UNTRAINED_METRICS_JSON, untrained)
            echo(
                format_metrics_table(
                    written["metrics"], phase=written["truth_has_phase"], baseline=untrained
                )
            )
            echo(f"metrics:  {written['metrics_json']}")
    return results


def untrained_metrics(
    results: dict[str, Any], config: TrainingConfig, truth: Any, *, M: int, stitch: str = "probe"
) -> dict[str, Any]:
    """Metrics of the network as training found it (same seed and probe) on the test scan."""
    impl, test, scale = results["backend"], results["test_container"], results["intensity_scale"]
    model = impl.build_model(
        config.model,
        results["train_container"].probe,
        scale,
        seed=config.seed,
        probe_trainable=config.probe_trainable,
        intensity_scale_trainable=config.intensity_scale_trainable,
    )
    canvas = stitch_container(
        impl, predict_patches(impl, model, test, scale), test, M=M, stitch=stitch
    )
    image = np.squeeze(np.asarray(canvas)).astype(np.complex64)
    metrics, _, _ = evaluate_against(image, truth, test.global_offsets, M)
    return metrics


def run(args: argparse.Namespace) -> int:
    """Train from the command line."""
    config = build_config(args)
    # Absolute, so that config.yaml says which files trained the model wherever it is read.
    config.train_data_file = args.train_data.resolve()
    config.test_data_file = args.test_data.resolve() if args.test_data else None
    claim_output_dir(
        Path(config.output_dir),
        ("wts.h5.zip", "checkpoints"),
        TRAIN_RUN_FILES,
        overwrite=args.overwrite,
        command="train",
    )
    prepare_output_dir(Path(config.output_dir))
    announce("train", args, config)
    train_raw = check_raw(RawData.from_file(args.train_data, data_kind=args.data_kind))
    test_raw = (
        check_raw(RawData.from_file(args.test_data, data_kind=args.data_kind))
        if args.test_data
        else None
    )
    width = int(train_raw.diff3d.shape[1])
    if config.model.N != width:
        # As Ptychodus does: the patch size is the data's pattern width.
        logger.info("model.N set to %d, the width of the training patterns", width)
        config.model.N = width
        config.validate()
    with output_errors(Path(config.output_dir)):
        train_and_report(
            config,
            train_raw,
            test_raw,
            M=args.M,
            stitch=args.stitch,
            command=args.command_line,
            backend=args.backend,
            execution=execution_options(args),
        )
    return 0
