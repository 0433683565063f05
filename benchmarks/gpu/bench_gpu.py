"""GPU throughput of the PyTorch backend: the table of issue 15, each execution option, the
roofline fraction and a streamed reconstruction of a million patterns (``bench.sh`` runs it).

Prediction is timed with inputs already on the device (what the network and the physics cost)
and through ``Backend.predict`` (numpy in and out, what a user gets). "full" is the model's object
path (network + overlap-canvas physics, what ``predict`` runs), "bare" the network alone.
Training is Lightning's epoch (data held on the GPU by ``training.resident_device``) and a
plain PyTorch loop over the same device-resident patterns (forward, Poisson NLL, backward,
fused Adam): the loop is the baseline the Lightning figure should approach.

    python benchmarks/gpu/bench_gpu.py --out bench-results           # on the GPU machine
    python benchmarks/gpu/bench_gpu.py --device cpu --quick          # a smoke run anywhere
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptycho_api.atomic import atomic_write_text
from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.errors import BackendError
from ptycho_api.execution import ExecutionOptions
from ptycho_api.normalization import intensity_scale
from ptycho_api.probe import default_probe
from ptycho_torch import kernels
from ptycho_torch.backend import Backend
from ptycho_torch.losses import total_loss
from ptycho_torch.modules import ObjectCrop

N = 64
SECTIONS = ("predict", "user", "training", "stream", "compile")
"""The benchmark's parts, in the order they run (the slow compiled rows last)."""
PEAK_FLOPS = {"32": 67e12, "tf32": 400e12, "bf16-mixed": 790e12}
"""H200 dense peaks (FP32 CUDA cores, TF32 and BF16 tensor cores) for the roofline fraction."""


def _log(row: dict) -> None:
    sys.stderr.write(json.dumps(row) + "\n")
    sys.stderr.flush()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step: Callable[[], Any], items: int, device: torch.device, seconds: float) -> float:
    """Items per second of ``step`` after 3 warm-up calls, timed for at least ``seconds``."""
    for _ in range(3):
        step()
    _sync(device)
    calls, start = 0, time.perf_counter()
    while True:
        step()
        calls += 1
        if calls % 5 == 0:
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return calls * items / elapsed


def _model(backend: Backend) -> torch.nn.Module:
    cfg = ModelConfig(N=N, gridsize=1, n_filters_scale=2)
    return backend.build_model(cfg, default_probe(N), intensity_scale(1e9, N), seed=1)


def _inputs(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, N, N, 1, generator=g) * 30.0
    return x.to(device), torch.zeros(batch, 1, 2, 1, device=device)


def flops_per_pattern(model: torch.nn.Module, device: torch.device) -> float:
    """Forward FLOP of the bare network for one pattern (PyTorch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    x, _ = _inputs(8, device)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model._decode(x)
    return counter.get_total_flops() / 8


def predict_figures(
    device: torch.device, batches: list[int], seconds: float, compiled: bool
) -> list[dict]:
    """Full and bare predict rates per option and batch, inputs on the device; the
    ``torch.compile`` options (minutes of compiling) when ``compiled``, the others otherwise."""
    framework, fused = "framework", "fused"
    options = [
        ExecutionOptions(precision="32", kernels=framework),
        ExecutionOptions(precision="tf32", kernels=framework),
        ExecutionOptions(precision="tf32", kernels=fused),
        ExecutionOptions(precision="tf32", channels_last=True, kernels=fused),
        ExecutionOptions(precision="bf16-mixed", kernels=framework),
        ExecutionOptions(precision="bf16-mixed", kernels=fused),
        ExecutionOptions(precision="bf16-mixed", channels_last=True, kernels=fused),
        ExecutionOptions(precision="tf32", compile="default", kernels=framework),
        ExecutionOptions(precision="bf16-mixed", compile="reduce-overhead", kernels=framework),
    ]
    options = [o for o in options if (o.compile != "off") == compiled]
    if device.type == "cpu":
        options = [o for o in options if o.kernels == framework and o.compile == "off"]
        options = [o for o in options if not o.channels_last]
    rows = []
    for opt in options:
        backend = Backend()
        try:
            backend.apply_execution(
                ExecutionOptions(
                    device=device.type.replace("cuda", "gpu"),
                    precision=opt.precision,
                    compile=opt.compile,
                    channels_last=opt.channels_last,
                    kernels=opt.kernels,
                )
            )
        except BackendError as exc:  # e.g. the fused kernels failing their self-check here
            rows.append({"options": opt.describe(), "error": str(exc)})
            _log(rows[-1])
            continue
        model = _model(backend).to(device).eval()
        model.fused_physics = backend.execution.fused_physics
        if opt.channels_last:
            model.to(memory_format=torch.channels_last)
        full: torch.nn.Module = ObjectCrop(model)
        bare = model._decode
        if opt.compile != "off":
            full = torch.compile(full, mode=opt.compile)
            bare = torch.compile(bare, mode=opt.compile)
        cast = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if opt.precision == "bf16-mixed"
            else contextlib.nullcontext()
        )
        for batch in batches:
            x, o = _inputs(batch, device)
            with torch.inference_mode(), cast:
                rate_full = _rate(lambda f=full, x=x, o=o: f(x, o), batch, device, seconds)
                rate_bare = _rate(lambda f=bare, x=x: f(x), batch, device, seconds)
            rows.append(
                {
                    "options": opt.describe(),
                    "precision": opt.precision,
                    "batch": batch,
                    "full": rate_full,
                    "bare": rate_bare,
                    "ratio": rate_full / rate_bare,
                }
            )
            _log(rows[-1])
        torch._dynamo.reset()
    return rows


def user_predict(device: torch.device, batch: int, n: int) -> float:
    """``Backend.predict`` on n numpy patterns (host copies included), patterns/s."""
    backend = Backend()
    backend.apply_execution(
        ExecutionOptions(device="gpu" if device.type == "cuda" else "cpu", precision="tf32")
    )
    model = _model(backend)
    x = np.random.default_rng(0).random((n, N, N, 1), dtype=np.float32) * 30
    offsets = np.zeros((n, 1, 2, 1), np.float32)
    backend.predict(model, x[:batch], offsets[:batch], batch_size=batch)
    start = time.perf_counter()
    backend.predict(model, x, offsets, batch_size=batch)
    return n / (time.perf_counter() - start)


def training_figures(device: torch.device, n: int, batches: list[int]) -> list[dict]:
    """Lightning epochs (2-epoch minus 1-epoch run) and a plain loop, patterns/s."""
    from ptycho_api.container import PtychoDataContainer

    rng = np.random.default_rng(0)
    X = (rng.random((n, N, N, 1), dtype=np.float32) * 0.5).astype(np.float32)
    zeros = np.zeros((n, 1, 2, 1), np.float32)
    container = PtychoDataContainer(
        X=X,
        Y_I=np.ones_like(X),
        Y_phi=np.zeros_like(X),
        coords_nominal=zeros,
        coords_true=zeros.copy(),
        probe=default_probe(N).astype(np.complex64),
        norm_Y_I=1.0,
        intensity_scale=intensity_scale(1e9, N),
        nn_indices=np.arange(n, dtype=np.int64)[:, None],
        global_offsets=np.zeros((n, 1, 2, 1), np.float64),
        local_offsets=zeros.copy(),
    )
    rows = []
    for precision in ("tf32", "bf16-mixed"):
        for batch in batches:
            backend = Backend()
            backend.apply_execution(
                ExecutionOptions(
                    device="gpu" if device.type == "cuda" else "cpu", precision=precision
                )
            )
            times = []
            with tempfile.TemporaryDirectory() as tmp:
                for epochs in (1, 2):
                    cfg = TrainingConfig(
                        model=ModelConfig(N=N, gridsize=1, n_filters_scale=2),
                        nepochs=epochs,
                        batch_size=batch,
                        n_groups=n,
                        seed=1,
                        output_dir=Path(tmp) / str(epochs),
                    )
                    model = _model(backend)
                    start = time.perf_counter()
                    backend.train(model, container, None, cfg)
                    times.append(time.perf_counter() - start)
            lightning_rate = n * 0.95 / max(times[1] - times[0], 1e-9)
            rows.append(
                {
                    "precision": precision,
                    "batch": batch,
                    "lightning": lightning_rate,
                    "plain_loop": _plain_loop(backend, device, precision, X, batch),
                }
            )
            _log(rows[-1])
    return rows


def _plain_loop(
    backend: Backend, device: torch.device, precision: str, X: np.ndarray, batch: int
) -> float:
    """Forward, Poisson NLL, backward and fused Adam over device-resident data, patterns/s."""
    model = _model(backend).to(device).train()
    model.fused_physics = backend.execution.fused_physics  # the physics Lightning trains with
    x_all = torch.from_numpy(X).to(device) * float(intensity_scale(1e9, N))
    o = torch.zeros(batch, 1, 2, 1, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    cast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16-mixed"
        else contextlib.nullcontext()
    )
    steps = len(X) // batch
    state = {"i": 0}

    def step() -> None:
        i = state["i"] % steps
        state["i"] += 1
        x = x_all[i * batch : (i + 1) * batch]
        with cast:
            _, amplitude, _ = model(x, o)
            loss = total_loss(amplitude, x, 1.0, 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _rate(step, batch, device, 3.0)


def streaming_figure(n: int, device: str, batch: int, workdir: Path, log: Path) -> dict:
    """``ptycho reconstruct`` of an n-pattern NPZ in a child process: rate and peak RSS.

    The child's own output (its run header, stages and final rate) goes to ``log`` as it runs,
    so a run stopped at its time limit still shows which stage it reached.
    """
    from ptycho_api.streaming import write_npz_streamed

    path = workdir / f"scan-{n}.npz"
    rng = np.random.default_rng(1)
    side = int(np.sqrt(n * 9.0)) + N
    x, y = rng.uniform(N, side - N, n), rng.uniform(N, side - N, n)
    base = (rng.random((4096, N, N), dtype=np.float32) * 3).astype(np.float32)
    chunks = (base[: min(4096, n - lo)] for lo in range(0, n, 4096))
    start = time.perf_counter()
    small = {"xcoords": x, "ycoords": y, "probeGuess": default_probe(N)}
    write_npz_streamed(path, small, "diff3d", (n, N, N), np.float32, chunks)
    written = time.perf_counter() - start
    _log({"stage": "scan written", "patterns": n, "bytes": path.stat().st_size, "seconds": written})
    backend = Backend()
    model_dir = workdir / "model"
    cfg = TrainingConfig(model=ModelConfig(N=N, gridsize=1), output_dir=model_dir)
    backend.save_archive(_model(backend), model_dir, cfg)
    # The child reports its own peak RSS (RUSAGE_CHILDREN would also count compile workers).
    child = (
        "import resource, sys; from ptycho_api.cli.main import main; code = main(sys.argv[1:]); "
        "sys.stderr.write(f'\\nPEAK_RSS_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}'); "
        "sys.exit(code)"
    )
    cmd = [
        sys.executable,
        "-c",
        child,
        "reconstruct",
        "--model",
        str(model_dir),
        "--data",
        str(path),
        "--output-dir",
        str(workdir / "recon"),
        "--backend",
        "torch",
        "--device",
        device,
        "--precision",
        "tf32",
        "--batch-size",
        str(batch),
    ]
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as sink:
        proc = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - start
    output = log.read_text(encoding="utf-8", errors="replace")
    peak = [line for line in output.splitlines() if line.startswith("PEAK_RSS_KB ")]
    rss = int(peak[-1].split()[1]) / 1024 if peak else float("nan")
    path.unlink()
    result = {
        "patterns": n,
        "write_seconds": written,
        "seconds": elapsed,
        "patterns_per_s": n / elapsed,
        "peak_rss_mb": rss,
        "exit": proc.returncode,
    }
    if proc.returncode:
        result["stderr"] = output[-2000:]
    _log(result)
    return result


def markdown(report: dict) -> str:
    """The figures as Markdown tables."""
    lines = [
        f"# GPU benchmark ({report['device_name']}, {report['created']})",
        "",
        f"torch {report['torch']}; network forward {report['gflop_per_pattern']:.3f} GFLOP per pattern.",
        "",
        "Fused kernels against framework ops on this device (relative, forward and gradients; "
        f"accepted up to {kernels.SELF_CHECK_TOLERANCE:g}): "
        f"{report.get('kernel_self_check', 'triton not available')}.",
        "",
        "| options | batch | full (patterns/s) | bare (patterns/s) | full/bare | roofline (bare) |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["predict"]:
        if "error" in r:
            lines.append(f"| {r['options']} | - | {r['error']} | | | |")
            continue
        roof = r["bare"] * report["gflop_per_pattern"] * 1e9 / PEAK_FLOPS[r["precision"]]
        lines.append(
            f"| {r['options']} | {r['batch']} | {r['full']:,.0f} | {r['bare']:,.0f} | "
            f"{r['ratio']:.2f} | {roof:.1%} |"
        )
    if "user_predict" in report:
        lines += [
            "",
            f"Backend.predict (numpy in/out, tf32, batch {report['user_batch']}): "
            f"{report['user_predict']:,.0f} patterns/s",
        ]
    if report.get("training"):
        lines += [
            "",
            "| training precision | batch | Lightning (patterns/s) | plain loop (patterns/s) |",
            "|---|---|---|---|",
        ]
    for r in report.get("training", []):
        lines.append(
            f"| {r['precision']} | {r['batch']} | {r['lightning']:,.0f} | {r['plain_loop']:,.0f} |"
        )
    s = report.get("streaming")
    if s:
        lines += [
            "",
            f"Streamed `ptycho reconstruct` of {s['patterns']:,} patterns: {s['seconds']:.1f} s "
            f"({s['patterns_per_s']:,.0f} patterns/s), peak host RSS {s['peak_rss_mb']:,.0f} MB, "
            f"exit {s['exit']}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke run)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench-results")))
    parser.add_argument("--stream-patterns", type=int, default=1_000_000)
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="what to measure, in this order (default all): predict rates, Backend.predict, "
        "training, the streamed reconstruction, predict rates with torch.compile",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    q = args.quick
    report: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    if kernels.available():
        try:
            report["kernel_self_check"] = f"{kernels.self_check(str(device)):.2e}"
        except Exception as exc:  # recorded: the table says why the fused rows are missing
            report["kernel_self_check"] = f"failed: {type(exc).__name__}: {exc}"[:300]
    model = _model(Backend()).to(device)
    report["gflop_per_pattern"] = flops_per_pattern(model, device) / 1e9
    batches, seconds = ([8], 0.2) if q else ([64, 1024], 1.0)
    report["predict"] = []
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> str:
        """Write the figures so far (a run stopped at its time limit keeps what it measured)."""
        atomic_write_text(args.out / "gpu-bench.json", json.dumps(report, indent=2) + "\n")
        table = markdown(report)
        atomic_write_text(args.out / "gpu-bench.md", table)
        return table

    if "predict" in args.sections:
        report["predict"] += predict_figures(device, batches, seconds, compiled=False)
        save()
    if "user" in args.sections:
        report["user_batch"] = 8 if q else 1024
        report["user_predict"] = user_predict(device, report["user_batch"], 64 if q else 65536)
        save()
    if "training" in args.sections:
        report["training"] = training_figures(device, 64 if q else 16384, [16] if q else [64, 256])
        save()
    if "stream" in args.sections:
        with tempfile.TemporaryDirectory() as tmp:
            report["streaming"] = streaming_figure(
                2000 if q else args.stream_patterns,
                "cpu" if device.type == "cpu" else "gpu",
                64 if q else 1024,
                Path(tmp),
                args.out / "gpu-bench-stream.log",
            )
        save()
    if "compile" in args.sections:
        report["predict"] += predict_figures(device, batches, seconds, compiled=True)
    sys.stdout.write(save())


if __name__ == "__main__":
    main()
