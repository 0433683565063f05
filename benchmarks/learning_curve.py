"""Reconstruction quality against training steps on the grid protocol, from one training run.

One case of ``benchmarks/quality.py`` (by default gridsize 2 with the disk, the CPU preset's
width and batch) is trained once with the PyTorch backend, early stopping off; after each epoch
listed in ``--at`` a copy of the model reconstructs the held-out test object and is scored with
both stitchings, as ``quality.py`` scores its final model. ``--constant-rate`` leaves out the
plateau rule (the learning rate stays 1e-3). Rows go to ``bench-results/curve-<tag>.json`` and
stdout; with ``--images`` each row's probe-stitched amplitude and the truth go to
``curve-<tag>.npz``.

    python benchmarks/learning_curve.py --epochs 160 --at 10 20 40 60 80 100 120 160
    python benchmarks/learning_curve.py --epochs 60 --at 20 40 60 --constant-rate

PyTorch only: the snapshots use the Lightning callback hook of ``ptycho_torch.training``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import CASES, ROOT, SCALES, Scale, _positive_int, _probe, training_config  # noqa: E402


def _amplitude(scored: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Amplitude SSIM and FRC50 of each stitching."""
    return {
        mode: {"ssim": float(m["ssim"][0]), "frc50": float(m["frc50"][0])}
        for mode, m in scored["metrics_by_stitch"].items()
    }


def main(argv: list[str] | None = None) -> int:
    """Train once, score at the chosen epochs, write the rows."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=[c.name for c in CASES], default="gs2_ideal")
    parser.add_argument("--epochs", type=_positive_int, default=60)
    parser.add_argument("--at", type=_positive_int, nargs="+", help="epochs to score after")
    cpu = SCALES["cpu"]
    parser.add_argument("--n-groups", type=_positive_int, default=cpu.n_groups)
    parser.add_argument("--n-filters-scale", type=_positive_int, default=cpu.n_filters_scale)
    parser.add_argument("--batch-size", type=_positive_int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--constant-rate", action="store_true", help="no plateau rule: the rate stays 1e-3"
    )
    parser.add_argument("--images", action="store_true", help="also save the amplitudes")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--tag", default="gs2_ideal")
    args = parser.parse_args(argv)
    marks = sorted(set(args.at or [args.epochs]))
    if marks[-1] > args.epochs:
        parser.error(f"--at: expected epochs up to --epochs {args.epochs}; found {marks[-1]}")

    from lightning.pytorch.callbacks import Callback

    from ptycho_api.backend import select_backend
    from ptycho_api.container import create_ptycho_data_container
    from ptycho_api.grid import simulate_grid_pair
    from ptycho_api.grid_quality import score_grid_model
    from ptycho_torch import training

    case = next(c for c in CASES if c.name == args.case)
    t0 = time.perf_counter()
    train, test = simulate_grid_pair(case.gridsize, _probe(case.probe, None, 64), seed=args.seed)
    scale = Scale(args.epochs, args.n_groups, "", args.n_filters_scale)
    config = replace(
        training_config(case, scale, args.seed),
        batch_size=args.batch_size,
        early_stopping=False,
    )
    backend = select_backend("pytorch")
    container = create_ptycho_data_container(train.raw, config)
    s = float(container.intensity_scale)
    model = backend.build_model(
        config.model,
        container.probe,
        s,
        seed=config.seed,
        probe_trainable=config.probe_trainable,
        intensity_scale_trainable=config.intensity_scale_trainable,
    )
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    images: dict[str, np.ndarray] = {}
    args.out.mkdir(parents=True, exist_ok=True)

    class Snapshot(Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            epoch = trainer.current_epoch + 1
            if epoch not in marks:
                return
            minutes = (time.perf_counter() - started) / 60
            # A copy: scoring must not touch the model being trained.
            scored = score_grid_model(
                backend, copy.deepcopy(pl_module.model), s, test, config, stitch="probe"
            )
            row = {
                "epoch": epoch,
                "steps": trainer.global_step,
                "lr": trainer.optimizers[0].param_groups[0]["lr"],
                "train_minutes": round(minutes, 2),
                **_amplitude(scored),
            }
            rows.append(row)
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
            if args.images:
                images[f"epoch{epoch}"] = np.abs(scored["image"])
                images["truth"] = np.abs(scored["truth"])

    # The plateau rule is one of the schedule's callbacks; without it the rate stays constant.
    schedule = (
        mock.patch.object(training, "schedule_callbacks", lambda *a, **k: [])
        if args.constant_rate
        else contextlib.nullcontext()
    )
    with schedule, tempfile.TemporaryDirectory(prefix="curve-") as scratch:
        config = replace(config, output_dir=Path(scratch))
        training.train_model(model, container, config, extra_callbacks=[Snapshot()])
    report = {
        "case": case.name,
        "epochs": args.epochs,
        "n_groups": args.n_groups,
        "n_filters_scale": args.n_filters_scale,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "constant_rate": args.constant_rate,
        "simulate_seconds": round(started - t0, 1),
        "rows": rows,
    }
    (args.out / f"curve-{args.tag}.json").write_text(json.dumps(report, indent=1))
    if images:
        np.savez_compressed(args.out / f"curve-{args.tag}.npz", **images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
