"""The published reconstruction-quality protocol (SIM-LINES-4X) on one backend (``nox -s quality``).

Four cases - gridsize 1 and 2, each with the idealised disk probe and an experimental-like
probe - are simulated on the grid protocol of the original PtychoPINN (392 px ``lines``
objects, 2 training and 2 test objects, groups of 2x2 patterns 4 px apart, groups 8 px apart
for training and 20 px apart for testing, 1e9 photons, N = 64), trained, reconstructed and
evaluated with the original's metric conventions on the first test object. Results go to
``bench-results/quality-<backend>-<scale>.json`` (with one figure per case,
``quality-<backend>-<scale>-<case>.png``: reconstruction, ground truth and error maps) and
replace this run's block in ``docs/quality.md``, beside the published figures.

    python benchmarks/quality.py --backend tensorflow --scale cpu     # <= 40 min on 2 cores
    python benchmarks/quality.py --backend pytorch --scale paper      # 60 epochs, one GPU
    python benchmarks/quality.py --backend pytorch --cases gs2_ideal --epochs 2   # a smoke run

``--probe-file`` replaces the built-in experimental-like probe (a defocused zone-plate probe,
``ptycho_api.probe.defocused_probe``) by a measured one, e.g. the Run1084 probe the published
figures used; it is prepared as the original does (``pad_extrapolate`` to N, smoothing 0.5 px).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ptycho_api.execution import DEVICES, PRECISIONS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "quality.md"


@dataclass(frozen=True)
class Case:
    """One row of the published table."""

    name: str
    gridsize: int
    probe: str
    """``disk`` (idealised) or ``experimental``."""
    published: dict[str, float | None]
    """The published amplitude figures: mae, psnr255, ssim, ms_ssim, frc50."""


CASES = (
    Case(
        "gs1_ideal",
        1,
        "disk",
        {"mae": 0.185, "psnr255": 60.67, "ssim": 0.620, "ms_ssim": 0.852, "frc50": 23},
    ),
    Case(
        "gs1_exp",
        1,
        "experimental",
        {"mae": 0.072, "psnr255": 68.89, "ssim": 0.904, "ms_ssim": 0.981, "frc50": 165},
    ),
    Case(
        "gs2_ideal",
        2,
        "disk",
        {"mae": 0.052, "psnr255": 71.34, "ssim": 0.952, "ms_ssim": 0.993, "frc50": 165},
    ),
    Case(
        "gs2_exp",
        2,
        "experimental",
        {"mae": 0.040, "psnr255": 73.03, "ssim": 0.968, "ms_ssim": 0.994, "frc50": None},
    ),
)
"""The published SIM-LINES-4X amplitude figures (60 epochs, batch 16, original metric conventions)."""


@dataclass(frozen=True)
class Scale:
    """How much of the protocol to run: epochs, training groups (None: every group), width."""

    epochs: int
    n_groups: int | None
    note: str
    n_filters_scale: int = 2
    """The model's width; 2 is the default model the published runs used."""


SCALES = {
    # n_filters_scale 1 trains about three times faster per epoch on a CPU than the default
    # width 2; spent on epochs, that time lets gridsize 2 pull away from gridsize 1, which 10
    # epochs at width 2 did not (docs/quality.md).
    "cpu": Scale(
        epochs=20,
        n_groups=1024,
        note="20 epochs on 1,024 training groups, n_filters_scale 1, to fit 40 min on 2 CPU cores",
        n_filters_scale=1,
    ),
    "paper": Scale(
        epochs=60,
        n_groups=4096,
        note="the published 60 epochs on 4,096 of the ~13,500 training groups: one H200, 10 min",
    ),
    "full": Scale(
        epochs=60, n_groups=None, note="the published schedule: 60 epochs on every training group"
    ),
}


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; found {text!r}")
    return value


def _probe(kind: str, probe_file: Path | None, N: int) -> np.ndarray:
    from ptycho_api.probe import builtin_probe, prepare_probe

    if kind == "disk":
        return prepare_probe(builtin_probe("disk", N), N, 0.0)
    if probe_file is not None:
        with np.load(probe_file, allow_pickle=False) as npz:
            raw = np.asarray(npz["probeGuess"])
        raw = raw[0] if raw.ndim == 3 else raw
    else:
        raw = builtin_probe("defocused", N)
    return prepare_probe(raw, N, 0.5)


def training_config(case: Case, scale: Scale, seed: int) -> Any:
    """Our recipe for one case (see docs/quality.md for why each setting)."""
    from ptycho_api.config import ModelConfig, TrainingConfig

    return TrainingConfig(
        # The published grid runs predict one object patch per group (object_big False): the
        # group's gridsize**2 patterns all constrain that patch; no overlap canvas.
        model=ModelConfig(
            N=64,
            gridsize=case.gridsize,
            object_big=False,
            n_filters_scale=scale.n_filters_scale,
        ),
        nepochs=scale.epochs,
        batch_size=16,
        n_groups=scale.n_groups,
        nphotons=1e9,
        seed=seed,
    )


def run_case(
    case: Case,
    scale: Scale,
    backend_name: str,
    seed: int,
    probe_file: Path | None,
    figure: Path | None = None,
    device: str = "auto",
    precision: str = "32",
    stitch: str = "crop",
) -> dict[str, Any]:
    """Simulate, train, reconstruct and evaluate one case: -> its row (and ``figure``, a PNG)."""
    from ptycho_api.backend import select_backend
    from ptycho_api.execution import ExecutionOptions
    from ptycho_api.grid import simulate_grid_pair
    from ptycho_api.grid_quality import score_grid_training
    from ptycho_api.plots import plot_reconstruction

    t0 = time.perf_counter()
    probe = _probe(case.probe, probe_file, 64)
    train, test = simulate_grid_pair(case.gridsize, probe, seed=seed)
    config = training_config(case, scale, seed)
    if config.n_groups is None:
        config.n_groups = len(train.raw.groups)
    t_sim = time.perf_counter() - t0
    backend = select_backend(backend_name)
    # Training and prediction on one device (a GPU when visible, with --device auto): without
    # options the PyTorch backend predicts where Lightning left the model, on the host.
    backend.apply_execution(ExecutionOptions(device=device, precision=precision))
    started = time.perf_counter()

    def progress(epoch: int, epochs: int, logs: Any) -> None:
        # A long run (minutes per case on a GPU) shows where it is in its log.
        sys.stderr.write(
            f"quality: {case.name}: epoch {epoch}/{epochs}, loss {logs.get('loss', float('nan')):.6g}, "
            f"{time.perf_counter() - started:.0f} s\n"
        )
        sys.stderr.flush()

    results = score_grid_training(backend, train, test, config, progress=progress, stitch=stitch)
    metrics = results["metrics"]
    history = results["history"]
    if figure is not None:
        image = results["image"]
        plot_reconstruction(
            figure,
            np.abs(image),
            np.angle(image),
            ground_truth=results["truth"],
            title=f"{case.name}: amplitude SSIM {metrics['ssim'][0]:.3f} "
            f"(published {case.published['ssim']})",
        )
    return {
        "case": case.name,
        "gridsize": case.gridsize,
        "probe": case.probe,
        "stitch": stitch,
        "amplitude": _amplitude(metrics),
        "amplitude_by_stitch": {
            mode: _amplitude(scores) for mode, scores in results["metrics_by_stitch"].items()
        },
        "published": case.published,
        "epochs_run": len(history["loss"]),
        "train_groups": config.n_groups,
        "seconds": {
            "simulate": t_sim,
            "train": results["seconds"]["train"],
            "total": time.perf_counter() - t0,
        },
        "final_loss": history["loss"][-1],
    }


def _amplitude(metrics: dict[str, Any]) -> dict[str, float]:
    """The amplitude figures of an ``eval_reconstruction`` result."""
    return {k: metrics[k][0] for k in ("mae", "psnr255", "ssim", "ms_ssim", "frc50")}


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def _commit() -> str:
    """The checked-out commit, with ``+changes`` when tracked files differ from it."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        return head + ("+changes" if _git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cell(ours: dict, published: dict, key: str, fmt: str) -> str:
    theirs = "-" if published.get(key) is None else format(published[key], fmt)
    return f"{format(ours[key], fmt)} ({theirs})"


def _other_stitch(stitch: str) -> str:
    """The stitching a report scores beside its own (``crop`` and ``probe``)."""
    return "probe" if stitch == "crop" else "crop"


def markdown_block(report: dict[str, Any]) -> str:
    """The report as a Markdown block: our amplitude figures beside the published ones."""
    stitch = report.get("stitch", "crop")
    other = _other_stitch(stitch)
    head = (
        f"**{report['backend']} / {report['scale']}** - {report['created']}, commit "
        f"`{report['commit']}`, device {report['device']}, {report['epochs']} epochs, "
        f"{report['train_groups']} training groups per case, n_filters_scale "
        f"{report.get('n_filters_scale', 2)}, precision {report.get('precision', '32')}, "
        f"stitching {stitch}, wall time {report['wall_seconds'] / 60:.1f} min. "
        f"Command: `{report['command']}`"
    )
    lines = [
        head,
        "",
        "| case | amp MAE | amp PSNR255 | amp SSIM | amp MS-SSIM | amp FRC50 | "
        f"amp SSIM / FRC50, {other} stitching | train (min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        cells = [
            _cell(row["amplitude"], row["published"], key, fmt)
            for key, fmt in (
                ("mae", ".3f"),
                ("psnr255", ".2f"),
                ("ssim", ".3f"),
                ("ms_ssim", ".3f"),
                ("frc50", ".0f"),
            )
        ]
        alt = row.get("amplitude_by_stitch", {}).get(other)
        cells.append("-" if alt is None else f"{alt['ssim']:.3f} / {alt['frc50']:.0f}")
        lines.append(
            f"| {row['case']} | " + " | ".join(cells) + f" | {row['seconds']['train'] / 60:.1f} |"
        )
    lines += [
        "",
        "Ours (published) per cell. Stitching: `crop`, the original's (each test group keeps the "
        "central tile of the outer stride), as the published figures; `probe`, every pixel of "
        "each patch weighted by the illumination it received (the default of `ptycho "
        "reconstruct`). Both columns come from the same trained model.",
    ]
    return "\n".join(lines) + "\n"


def merge(paths: list[Path], out: Path) -> int:
    """Combine one-case reports of the same backend and scale into one and print its table."""
    reports = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    if not reports:
        raise SystemExit("quality --merge: no report files")
    for key in ("backend", "scale", "stitch", "seed"):
        values = sorted({str(r.get(key)) for r in reports})
        if len(values) > 1:
            raise SystemExit(f"quality --merge: the reports differ in {key}: {values}")
    report = dict(reports[0])
    order = [c.name for c in CASES]
    report["rows"] = sorted(
        (row for r in reports for row in r["rows"]), key=lambda row: order.index(row["case"])
    )
    report["wall_seconds"] = max(r["wall_seconds"] for r in reports)
    cases = [row["case"] for row in report["rows"]]
    env = (
        ""
        if report["scale"] == "paper" and cases == order
        else (f'SCALE={report["scale"]} CASES="{" ".join(cases)}" ')
    )
    report["command"] = f"{env}bash benchmarks/gpu/quality.sh"
    from ptycho_api.atomic import atomic_write_text

    atomic_write_text(
        out / f"quality-{report['backend']}-{report['scale']}.json",
        json.dumps(report, indent=2) + "\n",
    )
    sys.stdout.write(markdown_block(report))
    return 0


def update_doc(doc: Path, key: str, block: str) -> None:
    """Replace (or append) the block between ``<!-- quality:KEY -->`` markers in ``doc``."""
    from ptycho_api.atomic import atomic_write_text

    start, end = f"<!-- quality:{key} -->", f"<!-- /quality:{key} -->"
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Reconstruction quality\n"
    new = f"{start}\n{block}{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + new + after
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    atomic_write_text(doc, text)


def main(argv: list[str] | None = None) -> int:
    """Run the protocol and write the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", help="tensorflow or pytorch (required unless --merge)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument(
        "--cases", nargs="+", choices=[c.name for c in CASES], default=[c.name for c in CASES]
    )
    parser.add_argument(
        "--epochs", type=_positive_int, help="override the scale's epochs (smoke runs)"
    )
    parser.add_argument(
        "--n-groups", type=_positive_int, help="override the scale's training groups"
    )
    parser.add_argument(
        "--n-filters-scale",
        type=_positive_int,
        help="override the scale's model width (n_filters_scale)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="where to train and predict (default auto: a GPU when one is visible)",
    )
    parser.add_argument(
        "--precision",
        default="32",
        choices=PRECISIONS,
        help="default 32; tf32 is what TensorFlow, and so the published runs, used on NVIDIA "
        "GPUs by default",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--stitch",
        choices=("crop", "probe"),
        default="crop",
        help="stitching of the main table: crop (default), the original's kept tile, as the "
        "published figures; probe, weighted by the illumination. The other is scored beside it",
    )
    parser.add_argument(
        "--probe-file",
        type=Path,
        help="NPZ with a measured 'probeGuess' for the experimental cases",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument(
        "--doc", type=Path, default=DOC, help="Markdown file to update (default docs/quality.md)"
    )
    parser.add_argument("--no-doc", action="store_true", help="do not touch the Markdown file")
    parser.add_argument("--tag", help="suffix of the JSON file name (one case per process)")
    parser.add_argument(
        "--merge", nargs="+", type=Path, metavar="JSON", help="combine reports and print the table"
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    if not args.backend:
        parser.error("--backend is required")
    base = SCALES[args.scale]
    scale = Scale(
        args.epochs or base.epochs,
        args.n_groups or base.n_groups,
        base.note,
        args.n_filters_scale or base.n_filters_scale,
    )
    from ptycho_api.backend import select_backend

    backend = select_backend(args.backend)
    t0 = time.perf_counter()
    rows = []
    for case in (c for c in CASES if c.name in args.cases):
        sys.stderr.write(f"quality: {case.name} ({backend.name}, {args.scale}) ...\n")
        figure = args.out / f"quality-{backend.name}-{args.scale}-{case.name}.png"
        args.out.mkdir(parents=True, exist_ok=True)
        row = run_case(
            case,
            scale,
            args.backend,
            args.seed,
            args.probe_file,
            figure,
            args.device,
            args.precision,
            args.stitch,
        )
        sys.stderr.write(
            f"quality: {case.name}: amplitude SSIM {row['amplitude']['ssim']:.3f} "
            f"(published {case.published['ssim']}) in {row['seconds']['total'] / 60:.1f} min\n"
        )
        rows.append(row)
    report = {
        "backend": backend.name,
        "framework": backend.framework_version(),
        "device": ", ".join(backend.devices()),
        "scale": args.scale,
        "epochs": scale.epochs,
        "train_groups": scale.n_groups or "all",
        "n_filters_scale": scale.n_filters_scale,
        "precision": args.precision,
        "stitch": args.stitch,
        "seed": args.seed,
        "probe_file": str(args.probe_file) if args.probe_file else None,
        "commit": _commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "command": "python benchmarks/quality.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "wall_seconds": time.perf_counter() - t0,
        "rows": rows,
    }
    from ptycho_api.atomic import atomic_write_text

    name = f"quality-{backend.name}-{args.scale}" + (f"-{args.tag}" if args.tag else "")
    atomic_write_text(args.out / f"{name}.json", json.dumps(report, indent=2) + "\n")
    block = markdown_block(report)
    if not args.no_doc:
        update_doc(args.doc, f"{backend.name}-{args.scale}", block)
    sys.stdout.write(block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
