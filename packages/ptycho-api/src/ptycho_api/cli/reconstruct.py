"""``ptycho reconstruct``: reconstruct a scan with a trained archive (any installed backend)."""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from ptycho_api import params
from ptycho_api.backend import select_backend
from ptycho_api.cli.console import announce, echo, format_metrics_table
from ptycho_api.cli.execution_args import add_execution_options, apply_execution, execution_options
from ptycho_api.cli.outputs import (
    RECONSTRUCT_RUN_FILES,
    RECONSTRUCTION_NPZ,
    claim_output_dir,
    output_errors,
    prepare_output_dir,
    write_reconstruction,
)
from ptycho_api.cli.train import add_data_kind, add_stitching, check_crop
from ptycho_api.config import InferenceConfig, ModelConfig
from ptycho_api.errors import BundleError, ConfigError, DataError
from ptycho_api.hdf5 import read_hdf5_scan
from ptycho_api.plausibility import amplitude_limit, check_raw, check_scan
from ptycho_api.rawdata import RawData
from ptycho_api.stitching import stitch_support
from ptycho_api.streaming import (
    ScanStream,
    StreamUnsupported,
    is_hdf5,
    open_scan,
    reconstruct_stream,
)
from ptycho_api.workflows import (
    as_container,
    load_inference_bundle,
    predict_patches,
    stitch_container,
)

logger = logging.getLogger(__name__)

EXAMPLE = """example:
  ptycho reconstruct --model run1 --data data/test_data.npz --output-dir recon1
  ptycho reconstruct --model run1/wts.h5.zip --data scan.npz --output-dir r2 --backend torch
"""


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register ``reconstruct``."""
    p = sub.add_parser(
        "reconstruct",
        parents=[common],
        help="reconstruct a scan with a trained model archive",
        description="Predict object patches with a wts.h5.zip model and stitch them; writes "
        "reconstruction.npz (object, amplitude, phase, coverage mask), reconstruction.png and, when the data "
        "hold a ground-truth object, metrics.json.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", type=Path, required=True, help="archive file or directory holding wts.h5.zip"
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="NPZ or HDF5 scan (data contract key names); with a gridsize-1 model and no "
        "--n-groups the patterns are read and reconstructed a chunk at a time, so a scan "
        "larger than memory works",
    )
    add_data_kind(p)
    add_execution_options(p)
    p.add_argument(
        "--output-dir",
        type=Path,
        default=Path("inference_outputs"),
        help="default inference_outputs; refused if it already holds reconstruction.npz "
        "unless --overwrite",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous reconstruction in --output-dir (removes only "
        f"{', '.join(RECONSTRUCT_RUN_FILES)})",
    )
    p.add_argument(
        "--backend",
        help="tensorflow|tf|pytorch|torch|auto; any backend runs any archive (default auto: "
        "the selection ladder)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help="groups per predict batch (default: 64 on a CPU; on a GPU chosen from its free "
        "memory, up to 4,096)",
    )
    p.add_argument(
        "--n-groups", type=int, help="groups to reconstruct (default: one per scan point)"
    )
    p.add_argument(
        "--neighbor-count",
        type=int,
        help="neighbor_count K: a group's members are drawn among each position's K nearest "
        "neighbours; needs K >= gridsize**2 (default max(4, gridsize**2) of the archive's "
        "gridsize)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed for grouping; fixed so runs repeat (default 0)"
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        help="patterns read, predicted and stitched at a time when streaming (default: 16 MiB "
        "of float32 patterns, 1,024 at N=64)",
    )
    add_stitching(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Reconstruct from the command line."""
    if not args.model.exists():
        raise BundleError(f"{args.model}: no such model archive or directory")
    claim_output_dir(
        args.output_dir,
        (RECONSTRUCTION_NPZ,),
        RECONSTRUCT_RUN_FILES,
        overwrite=args.overwrite,
        command="reconstruct",
    )
    prepare_output_dir(args.output_dir)
    announce("reconstruct", args)
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected >= 1 groups; found {args.batch_size}")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ConfigError(f"--chunk-size: expected >= 1 patterns; found {args.chunk_size}")
    with contextlib.ExitStack() as stack:
        try:
            scan: ScanStream | None = stack.enter_context(open_scan(args.data))
        except StreamUnsupported as exc:
            logger.info("%s; reading the scan whole", exc)
            scan = None
        if scan is not None:
            shape = None if scan.objectGuess is None else scan.objectGuess.shape
            check_scan(scan.xcoords, scan.ycoords, scan.N, source=scan.source, object_shape=shape)
        backend = apply_execution(select_backend(args.backend), execution_options(args))
        model, restored = load_inference_bundle(args.model, backend=backend)
        N, gridsize = int(restored["N"]), int(restored["gridsize"])
        check_crop(args.M, N)
        scale = float(restored["intensity_scale"])
        if args.batch_size is None:
            args.batch_size = backend.auto_batch_size(N)
            logger.info("predict batch size %d (automatic)", args.batch_size)
        if scan is not None and gridsize == 1 and args.n_groups is None:
            if scan.N != N:
                raise DataError(
                    f"{scan.source}: N: expected the model's pattern size {N}; found N = {scan.N}"
                )
            echo(f"reconstructing {scan.n_patterns} patterns of {N}x{N} a chunk at a time ...")
            streamed = reconstruct_stream(
                backend,
                model,
                scan,
                scale,
                M=args.M,
                stitch=args.stitch,
                batch_size=args.batch_size,
                chunk=args.chunk_size,
                data_kind=args.data_kind,
            )
            canvas, global_offsets = streamed.canvas, streamed.global_offsets
            ground_truth = scan.objectGuess
            echo(f"{streamed.patterns_per_s:,.0f} patterns/s (prediction and stitching)")
        else:
            stack.close()
            raw = _read_whole(args.data, args.data_kind)
            if scan is None:  # else its positions were checked above
                check_raw(raw)
            config = InferenceConfig(
                model=ModelConfig(N=N, gridsize=gridsize),
                model_path=args.model,
                test_data_file=args.data,
                n_groups=args.n_groups,
                neighbor_count=(
                    max(4, gridsize * gridsize)
                    if args.neighbor_count is None
                    else args.neighbor_count
                ),
                output_dir=args.output_dir,
                seed=args.seed,
            )
            config.validate()
            container = as_container(raw, config, nphotons=float(params.get("nphotons")))
            echo(f"reconstructing {len(container)} groups of {N}x{N} (gridsize {gridsize}) ...")
            patches = predict_patches(backend, model, container, scale, batch_size=args.batch_size)
            canvas = stitch_container(backend, patches, container, M=args.M, stitch=args.stitch)
            global_offsets, ground_truth = container.global_offsets, raw.objectGuess
    with output_errors(args.output_dir):
        written = write_reconstruction(
            args.output_dir,
            canvas,
            global_offsets,
            args.M,
            ground_truth=ground_truth,
            title=f"reconstruction ({backend.name})",
            amplitude_max=amplitude_limit(restored.get("amp_activation")),
            support=stitch_support(args.stitch, N, args.M),
        )
    echo(f"reconstruction: {written['npz']}")
    echo(f"figure:         {written['png']}")
    if "metrics" in written:
        echo(format_metrics_table(written["metrics"], phase=written["truth_has_phase"]))
        echo(f"metrics:        {written['metrics_json']}")
    return 0


def _read_whole(path: Path, data_kind: str) -> RawData:
    """The scan in memory: an NPZ, or an HDF5 file with the NPZ contract's dataset names."""
    if is_hdf5(path):
        return read_hdf5_scan(path, data_kind=data_kind).raw
    return RawData.from_file(path, data_kind=data_kind)
