"""Benchmarks of every installed backend through the ``Backend`` protocol (``nox -s bench``).

Each measurement runs in its own subprocess so that its peak memory (max RSS) is its own.
Results go to ``bench-results/<name>.json`` and ``bench-results/<name>.md``; the table is also
printed. Nothing here asserts a timing: figures are recorded, not judged.

    python benchmarks/bench.py --name my-laptop            # everything (about 20-30 min on 2 cores)
    python benchmarks/bench.py --quick                     # smaller sizes, a few minutes
    python benchmarks/bench.py --worker predict --backend tensorflow --N 64 --gridsize 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEED = 1234


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _dataset(n: int, N: int, seed: int = SEED) -> Any:
    from ptycho_api.simulation import simulate_dataset

    return simulate_dataset(n_images=n, N=N, nphotons=1e9, seed=seed)


def _container(raw: Any, N: int, gridsize: int, n_groups: int | None) -> Any:
    from ptycho_api.config import ModelConfig, TrainingConfig
    from ptycho_api.container import create_ptycho_data_container

    cfg = TrainingConfig(model=ModelConfig(N=N, gridsize=gridsize), n_groups=n_groups, seed=SEED)
    if n_groups is None:
        cfg.n_groups = len(raw.xcoords)
    return create_ptycho_data_container(raw, cfg), cfg


def work_predict(backend_name: str, N: int, gridsize: int, n: int) -> dict[str, Any]:
    """Predict throughput of a freshly built model (n_filters_scale 2, batch 64)."""
    from ptycho_api.backend import select_backend
    from ptycho_api.normalization import intensity_scale

    backend = select_backend(backend_name)
    raw = _dataset(max(n, 64), N)
    container, cfg = _container(raw, N, gridsize, n)
    scale = intensity_scale(cfg.nphotons, N)
    model = backend.build_model(cfg.model, container.probe, scale)
    x = container.X * np.float32(scale)
    backend.predict(model, x[:64], container.local_offsets[:64], batch_size=64)  # warm-up
    start = time.perf_counter()
    backend.predict(model, x, container.local_offsets, batch_size=64)
    elapsed = time.perf_counter() - start
    groups = len(container)
    return {
        "groups_per_s": groups / elapsed,
        "patterns_per_s": groups * gridsize * gridsize / elapsed,
        "seconds": elapsed,
        "groups": groups,
    }


def work_train_epoch(backend_name: str, n: int) -> dict[str, Any]:
    """Wall time of one training epoch on n patterns (N=64, gridsize 1, nfs 2, batch 16)."""
    import tempfile

    from ptycho_api.backend import select_backend
    from ptycho_api.config import ModelConfig, TrainingConfig
    from ptycho_api.container import create_ptycho_data_container
    from ptycho_api.normalization import intensity_scale

    backend = select_backend(backend_name)
    raw = _dataset(n, 64)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        base = TrainingConfig(model=ModelConfig(N=64), n_groups=n, seed=SEED, output_dir=Path(tmp))
        container = create_ptycho_data_container(raw, base)
        scale = intensity_scale(base.nphotons, 64)
        for epochs in (1, 2):
            # The difference between a 2-epoch and a 1-epoch run removes start-up and compilation.
            base.nepochs = epochs
            model = backend.build_model(base.model, container.probe, scale)
            start = time.perf_counter()
            backend.train(model, container, None, base)
            times.append(time.perf_counter() - start)
    return {"epoch_seconds": times[1] - times[0], "first_run_seconds": times[0], "patterns": n}


def work_stitch(backend_name: str, n: int) -> dict[str, Any]:
    """Stitch n random complex patches (N=64, M=20) with the backend's on-device stitching."""
    rng = np.random.default_rng(SEED)
    patches = np.empty((n, 64, 64, 1), np.complex64)
    patches.real = rng.standard_normal((n, 64, 64, 1), dtype=np.float32)
    patches.imag = rng.standard_normal((n, 64, 64, 1), dtype=np.float32)
    offsets = rng.uniform(0, 600, size=(n, 1, 2, 1))
    if backend_name == "reference":
        from ptycho_api.stitching import reassemble_position

        fn = reassemble_position
    else:
        from ptycho_api.backend import select_backend

        fn = select_backend(backend_name).reassemble_position
    start = time.perf_counter()
    canvas = fn(patches, offsets, 20)
    return {"seconds": time.perf_counter() - start, "canvas": list(canvas.shape), "patches": n}


def work_group(n: int) -> dict[str, Any]:
    """Grouping of n scan positions at gridsize 2 (K=4, one group per position)."""
    from ptycho_api.grouping import select_groups

    rng = np.random.default_rng(SEED)
    x, y = rng.uniform(0, 3000, n), rng.uniform(0, 3000, n)
    start = time.perf_counter()
    groups = select_groups(x, y, 4, K=4, nsamples=n, seed=SEED)
    return {"seconds": time.perf_counter() - start, "groups": int(len(groups)), "positions": n}


def work_quality(backend_name: str, n_train: int, n_test: int, epochs: int) -> dict[str, Any]:
    """Reconstruction quality after a fixed schedule (the demo's: N=64, gridsize 1, nfs 1)."""
    import tempfile

    from ptycho_api.cli.outputs import evaluate_against
    from ptycho_api.config import ModelConfig, TrainingConfig
    from ptycho_api.workflows import run_cdi_example

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainingConfig(
            model=ModelConfig(N=64, n_filters_scale=1),
            nepochs=epochs,
            n_groups=n_train,
            seed=7,
            output_dir=Path(tmp),
            backend=backend_name,
        )
        train, test = _dataset(n_train, 64, seed=7), _dataset(n_test, 64, seed=8)
        start = time.perf_counter()
        amp, phase, results = run_cdi_example(train, test, config)
        elapsed = time.perf_counter() - start
    image = amp * np.exp(1j * phase)
    metrics, _, _ = evaluate_against(
        image, test.objectGuess, results["test_container"].global_offsets, 20
    )
    keep = ("ssim", "psnr", "psnr255", "frc50", "ms_ssim", "mae")
    return {
        "seconds": elapsed,
        "epochs": len(results["history"]["loss"]),
        **{k: list(metrics[k]) for k in keep},
    }


STREAM_DENSITY = 9.0
"""Object pixels per scan position in the streaming benchmark: the object grows with the scan
(about 3 pixels between neighbours, as a dense beamline raster), so the canvas does too."""


def work_stream_data(n: int, path: str) -> dict[str, Any]:
    """Simulate n patterns (N=64) onto a growing object, written to an NPZ 4,096 at a time."""
    from ptycho_api.objects import make_object
    from ptycho_api.physics import extract_patches
    from ptycho_api.probe import default_probe
    from ptycho_api.simulation import illuminate_and_diffract, scan_positions
    from ptycho_api.streaming import write_npz_streamed

    rng = np.random.default_rng(SEED)
    N = 64
    side = int(np.sqrt(n * STREAM_DENSITY)) + N
    obj = make_object("lines", side, rng)
    probe = default_probe(N)
    x, y = scan_positions(n, obj.shape, N // 2, rng)
    s_sim = None

    def chunks():
        nonlocal s_sim
        for lo in range(0, n, 4096):
            patches = extract_patches(
                obj, np.column_stack([x[lo : lo + 4096], y[lo : lo + 4096]]), N
            )
            amplitudes, s_sim = illuminate_and_diffract(patches, probe, 1e9, rng, scale=s_sim)
            yield amplitudes

    start = time.perf_counter()
    small = {"xcoords": x, "ycoords": y, "probeGuess": probe, "objectGuess": obj}
    write_npz_streamed(path, small, "diff3d", (n, N, N), np.float32, chunks())
    return {"seconds": time.perf_counter() - start, "patterns": n, "object_side": side}


def work_archive(backend_name: str, path: str) -> dict[str, Any]:
    """An untrained N=64 gridsize-1 model (n_filters_scale 2) saved to ``path``/wts.h5.zip."""
    from ptycho_api.backend import select_backend
    from ptycho_api.config import ModelConfig, TrainingConfig
    from ptycho_api.normalization import intensity_scale
    from ptycho_api.probe import default_probe

    backend = select_backend(backend_name)
    cfg = TrainingConfig(model=ModelConfig(N=64, gridsize=1), output_dir=Path(path))
    model = backend.build_model(cfg.model, default_probe(64), intensity_scale(cfg.nphotons, 64))
    return {"archive": str(backend.save_archive(model, cfg.output_dir, cfg))}


def work_stream(backend_name: str, model: str, path: str, n: int) -> dict[str, Any]:
    """``ptycho reconstruct`` of the NPZ at ``path`` in this process (streamed, gridsize 1)."""
    import tempfile

    from ptycho_api.cli.main import main as ptycho

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["reconstruct", "--model", model, "--data", path, "--backend", backend_name]
        start = time.perf_counter()
        code = ptycho([*argv, "--output-dir", str(Path(tmp) / "out")])
        elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"ptycho reconstruct exited {code}")
    return {"seconds": elapsed, "patterns": n, "patterns_per_s": n / elapsed}


WORKERS = {
    "predict": lambda a: work_predict(a.backend, a.N, a.gridsize, a.n),
    "train_epoch": lambda a: work_train_epoch(a.backend, a.n),
    "stitch": lambda a: work_stitch(a.backend, a.n),
    "group": lambda a: work_group(a.n),
    "quality": lambda a: work_quality(a.backend, a.n, a.n_test, a.epochs),
    "stream_data": lambda a: work_stream_data(a.n, a.path),
    "archive": lambda a: work_archive(a.backend, a.path),
    "stream": lambda a: work_stream(a.backend, a.model, a.path, a.n),
}


def run_worker(args: argparse.Namespace) -> None:
    """Worker mode: one measurement, JSON on the last stdout line."""
    result = WORKERS[args.worker](args)
    result["peak_rss_mb"] = _peak_rss_mb()
    sys.stdout.write(json.dumps(result) + "\n")


def _measure(task: str, **kwargs: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", task]
    for key, value in kwargs.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    sys.stderr.write(f"bench: {task} {kwargs} ...\n")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _installed_backends() -> list[str]:
    from ptycho_api.backend import discover_backends

    return sorted(discover_backends())


def _stream(name: str, files: dict[int, Path], tmp: Path) -> dict[str, Any]:
    """Streamed reconstructions of each simulated file with one backend, and their RSS ratio."""
    model = tmp / f"model-{name}"
    made = _measure("archive", backend=name, path=model)
    if "error" in made:
        return {"stream_small": made, "stream_large": made}
    small, large = sorted(files)
    entry = {
        f"stream_{label}": _measure("stream", backend=name, model=model, path=files[n], n=n)
        for label, n in (("small", small), ("large", large))
    }
    if all("peak_rss_mb" in e for e in entry.values()):
        ratio = entry["stream_large"]["peak_rss_mb"] / entry["stream_small"]["peak_rss_mb"]
        entry["stream_large"]["rss_ratio"] = ratio
    return entry


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement for every installed backend (``--only stream``: streaming only)."""
    import tempfile

    q = args.quick
    sizes = {
        "predict": 256 if q else 2048,
        "train": 256 if q else 2048,
        "stitch": 2000 if q else 20000,
        "group": 10000 if q else 100000,
        "quality": (256, 128, 2) if q else (1024, 512, 12),
        "stream": (500, 5000) if q else (5000, 50000),
    }
    everything = args.only == "all"
    report: dict[str, Any] = {
        "name": args.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "quick": q,
        "only": args.only,
        "sizes": sizes,
        "shared": {},
        "backends": {},
    }
    if everything:
        report["shared"] = {
            "group_gridsize2": _measure("group", n=sizes["group"]),
            "stitch_reference": _measure("stitch", backend="reference", n=sizes["stitch"]),
        }
    with tempfile.TemporaryDirectory() as tmp:
        files = {n: Path(tmp) / f"scan-{n}.npz" for n in sizes["stream"]}
        for n, path in files.items():
            report["shared"][f"stream_data_{n}"] = _measure("stream_data", n=n, path=path)
        for name in _installed_backends():
            entry: dict[str, Any] = {}
            if everything:
                for N, g in ((64, 1), (64, 2), (128, 1)):
                    entry[f"predict_N{N}_g{g}"] = _measure(
                        "predict", backend=name, N=N, gridsize=g, n=sizes["predict"]
                    )
                entry["train_epoch"] = _measure("train_epoch", backend=name, n=sizes["train"])
                entry["stitch"] = _measure("stitch", backend=name, n=sizes["stitch"])
                n_train, n_test, epochs = sizes["quality"]
                entry["quality"] = _measure(
                    "quality", backend=name, n=n_train, n_test=n_test, epochs=epochs
                )
            entry.update(_stream(name, files, Path(tmp)))
            report["backends"][name] = entry
    return report


def _fmt(entry: dict[str, Any], key: str, unit: str = "") -> str:
    if "error" in entry:
        return f"error: {entry['error'][:60]}"
    value = entry.get(key)
    if isinstance(value, list):
        return f"{value[0]:.3f} / {value[1]:.3f}"
    if isinstance(value, float) and value < 10:
        return f"{value:.3f}{unit}"
    return f"{value:,.1f}{unit}" if isinstance(value, int | float) else "-"


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table (one row per figure, one column per backend)."""
    names = list(report["backends"])
    lines = [
        f"# Benchmark {report['name']} ({report['created']}, {report['machine']['cpus']} CPUs"
        f"{', quick sizes' if report['quick'] else ''})",
        "",
        "| figure | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    rows = [
        ("predict N=64 g=1 (patterns/s)", "predict_N64_g1", "patterns_per_s"),
        ("predict N=64 g=2 (patterns/s)", "predict_N64_g2", "patterns_per_s"),
        ("predict N=128 g=1 (patterns/s)", "predict_N128_g1", "patterns_per_s"),
        ("peak RSS predict N=64 g=1 (MB)", "predict_N64_g1", "peak_rss_mb"),
        ("train epoch (s)", "train_epoch", "epoch_seconds"),
        ("peak RSS train (MB)", "train_epoch", "peak_rss_mb"),
        ("stitch (s)", "stitch", "seconds"),
        ("peak RSS stitch (MB)", "stitch", "peak_rss_mb"),
        ("quality run (s)", "quality", "seconds"),
        ("SSIM amp / phase", "quality", "ssim"),
        ("MS-SSIM amp / phase", "quality", "ms_ssim"),
        ("PSNR amp / phase (dB)", "quality", "psnr"),
        ("PSNR255 amp / phase (dB)", "quality", "psnr255"),
        ("FRC50 amp / phase", "quality", "frc50"),
        ("streamed reconstruct, small scan (patterns/s)", "stream_small", "patterns_per_s"),
        ("streamed reconstruct, large scan (patterns/s)", "stream_large", "patterns_per_s"),
        ("peak RSS streamed reconstruct, small scan (MB)", "stream_small", "peak_rss_mb"),
        ("peak RSS streamed reconstruct, large scan (MB)", "stream_large", "peak_rss_mb"),
        ("peak RSS ratio large / small (target < 1.2)", "stream_large", "rss_ratio"),
    ]
    for label, section, key in rows:
        cells = [_fmt(report["backends"][n].get(section, {}), key) for n in names]
        if any(cell != "-" for cell in cells):  # rows of sections not run (--only) are left out
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    shared = report["shared"]
    if "sizes" in report and report.get("only", "all") == "all":
        z = report["sizes"]
        n_train, n_test, epochs = z["quality"]
        lines += [
            "",
            f"Sizes: predict {z['predict']:,} groups per case (n_filters_scale 2, batch 64); "
            f"train epoch {z['train']:,} patterns (N=64, gridsize 1, n_filters_scale 2, batch 16); "
            f"stitch {z['stitch']:,} patches (N=64, M=20); quality {n_train:,} train / "
            f"{n_test:,} test patterns, {epochs} epochs (the demo's model: n_filters_scale 1); "
            f"streamed reconstruct of {z['stream'][0]:,} and {z['stream'][1]:,} simulated patterns "
            "(N=64, n_filters_scale 2, untrained, written to disk 4,096 at a time; ptycho "
            "reconstruct in a fresh process, whose peak RSS is reported).",
        ]
    if "group_gridsize2" not in shared:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        f"Shared (numpy): grouping {shared['group_gridsize2'].get('positions', '?')} positions at "
        f"gridsize 2: {_fmt(shared['group_gridsize2'], 'seconds', ' s')}, peak "
        f"{_fmt(shared['group_gridsize2'], 'peak_rss_mb', ' MB')}; reference stitching of "
        f"{shared['stitch_reference'].get('patches', '?')} patches: "
        f"{_fmt(shared['stitch_reference'], 'seconds', ' s')}, peak "
        f"{_fmt(shared['stitch_reference'], 'peak_rss_mb', ' MB')}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the benchmarks (or one worker) and write the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", default=platform.node() or "bench")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--N", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--gridsize", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--n-test", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        choices=("all", "stream"),
        default="all",
        help="'stream': only the streaming reconstruction figures",
    )
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return
    report = run_all(args)
    from ptycho_api.atomic import atomic_write_text

    table = markdown(report)
    atomic_write_text(args.out / f"{args.name}.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out / f"{args.name}.md", table)
    sys.stdout.write(table)


if __name__ == "__main__":
    main()
