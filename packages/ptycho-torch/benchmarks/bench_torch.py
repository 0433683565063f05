"""PyTorch backend benchmark (same protocol as the TensorFlow one): N=64, gridsize 1, n_filters_scale 2,
batch 64.

Figures:
1. predict throughput (patterns/s) of the full ``diffraction_to_obj`` (network + per-group canvas
   + trim + complex64 packing; with compile, the packing stays outside the compiled graph) vs the
   bare network (encoder + decoders only); target >= 0.8x;
2. one training epoch over ``--n-train`` patterns through Lightning (with the 5 % validation) vs a
   bare forward+backward+Adam loop of the network over the same batches; target <= 1.5x;
3. peak memory predicting ``--n-predict`` patterns and stitching them (host RSS, and device
   memory on CUDA), measured in a fresh subprocess; target < 3 GB;
4. figure 1 again with ``torch.compile``.

Run: ``python packages/ptycho-torch/benchmarks/bench_torch.py [--n-train 2048 --n-predict 20000]``.
Writes a JSON report to ``--output`` (default ``bench-results/torch.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ptycho_api.config import ModelConfig, TrainingConfig
from ptycho_api.container import create_ptycho_data_container
from ptycho_api.schedule import SCHEDULE
from ptycho_api.simulation import simulate_dataset
from ptycho_torch.config import ExecutionConfig
from ptycho_torch.inference import predict_patches, reassemble_position
from ptycho_torch.losses import loss_terms
from ptycho_torch.model import PtychoPINN, build_model
from ptycho_torch.modules import ObjectCrop
from ptycho_torch.training import train_model

logger = logging.getLogger("bench_torch")


class BareNetwork(torch.nn.Module):
    """Encoder + both decoders of a ``PtychoPINN`` only: s*X -> (amplitude, phase) heads."""

    def __init__(self, model: PtychoPINN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, N, N, C)`` -> two ``(B, K, N, N)`` head outputs."""
        z = x_scaled.permute(0, 3, 1, 2) / torch.exp(self.model.log_intensity_scale)
        for block in self.model.encoder:
            z = block(z)
        return self.model.decoder_amp(z), self.model.decoder_phase(z)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _throughput(fn, batches, device: torch.device, repeats: int) -> float:
    """Best-of-``repeats`` patterns per second of ``fn`` over ``batches`` (after one warm-up pass)."""
    with torch.inference_mode():
        for x, o in batches[:2]:
            fn(x, o)
        _sync(device)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for x, o in batches:
                fn(x, o)
            _sync(device)
            best = min(best, time.perf_counter() - start)
    return sum(len(x) for x, _ in batches) / best


def bench_predict(
    model: PtychoPINN, n: int, batch: int, device: torch.device, repeats: int, compiled: bool
) -> dict:
    """Figure 1 (and 4 with ``compile``): full vs bare predict throughput."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy((rng.uniform(0, 2, (n, 64, 64, 1)) * 988.2).astype(np.float32)).to(device)
    o = torch.zeros(n, 1, 2, 1, device=device)
    batches = [(x[i : i + batch], o[i : i + batch]) for i in range(0, n, batch)]
    full = ObjectCrop(model).eval()
    bare = BareNetwork(model).eval()
    if compiled:
        full.compile()
        bare.compile()
    full_rate = _throughput(lambda a, b: torch.complex(*full(a, b)), batches, device, repeats)
    bare_rate = _throughput(lambda a, b: bare(a), batches, device, repeats)
    return {
        "full_patterns_per_s": full_rate,
        "bare_patterns_per_s": bare_rate,
        "ratio": full_rate / bare_rate,
    }


def bench_epoch(n_train: int, batch: int, accelerator: str, repeats: int) -> dict:
    """Figure 2: Lightning epoch vs bare forward+backward+Adam over the same batches."""
    from lightning.pytorch.callbacks import Callback

    raw = simulate_dataset(n_images=n_train, N=64, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainingConfig(
            model=ModelConfig(N=64, gridsize=1, n_filters_scale=2),
            nepochs=repeats + 1,
            batch_size=batch,
            n_groups=n_train,
            seed=0,
            output_dir=Path(tmp),
        )
        container = create_ptycho_data_container(raw, config)
        model = build_model(config.model, container.probe, container.intensity_scale, seed=0)

        times: list[float] = []

        class Timer(Callback):
            def on_train_epoch_start(self, trainer, pl_module):  # noqa: D102 - timing hook
                _sync(pl_module.device)
                self.start = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module):  # noqa: D102 - timing hook
                _sync(pl_module.device)
                times.append(time.perf_counter() - self.start)

        execution = ExecutionConfig(accelerator=accelerator, enable_progress_bar=False)
        train_model(model, container, config, execution=execution, extra_callbacks=[Timer()])
        # Where Lightning trained: after fit it moves the model back to the CPU, so the model's
        # own device would time the baseline on the CPU (what made the ratio 0.05 on a GPU).
        on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        device = torch.device("cuda" if on_gpu else "cpu")
        lightning_epoch = min(times[1:]) if len(times) > 1 else times[0]

        bare = BareNetwork(model).to(device).train()
        optimizer = torch.optim.Adam(
            bare.parameters(),
            lr=SCHEDULE.learning_rate,
            eps=SCHEDULE.epsilon,
            fused=on_gpu or None,
        )
        x_all = torch.from_numpy(container.X * np.float32(container.intensity_scale)).to(device)
        n_fit = int(len(x_all) * 0.95)
        best = float("inf")
        for _ in range(repeats + 1):
            _sync(device)
            start = time.perf_counter()
            perm = torch.randperm(n_fit, device=device)
            for i in range(0, n_fit, batch):
                x = x_all[perm[i : i + batch]]
                amp, phase = bare(x)
                # A loss of the same size as the model's: NLL-like on the head outputs.
                nll, _ = loss_terms(amp.permute(0, 2, 3, 1) * phase.permute(0, 2, 3, 1).cos(), x)
                optimizer.zero_grad(set_to_none=True)
                nll.backward()
                optimizer.step()
            _sync(device)
            best = min(best, time.perf_counter() - start)
    return {
        "lightning_epoch_s": lightning_epoch,
        "bare_epoch_s": best,
        "ratio": lightning_epoch / best,
    }


def _memory_child(n: int, batch: int, device: str) -> None:
    """Run in a fresh process: predict ``n`` patterns and stitch them; print peak memory (JSON)."""
    dev = torch.device(device)
    model = build_model(
        ModelConfig(N=64, gridsize=1, n_filters_scale=2),
        np.ones((64, 64), np.complex64),
        988.2,
        seed=0,
    ).to(dev)
    rng = np.random.default_rng(0)
    x = (rng.uniform(0, 2, (n, 64, 64, 1)) * 988.2).astype(np.float32)
    offsets = np.zeros((n, 1, 2, 1), np.float32)
    centres = rng.uniform(0, 600, (n, 1, 2, 1))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    patches = predict_patches(model, x, offsets, batch_size=batch)
    image = reassemble_position(patches, centres, 20, device=dev)
    elapsed = time.perf_counter() - start
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    gpu_gb = torch.cuda.max_memory_allocated(dev) / 1024**3 if dev.type == "cuda" else 0.0
    sys.stdout.write(
        json.dumps(
            {
                "n": n,
                "peak_host_rss_gb": rss_gb,
                "peak_device_gb": gpu_gb,
                "seconds": elapsed,
                "image_shape": list(image.shape),
            }
        )
        + "\n"
    )


def bench_memory(n: int, batch: int, device: str) -> dict:
    """Figure 3: peak memory of predict + stitch for ``n`` patterns, in a fresh subprocess."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-child",
            str(n),
            "--batch",
            str(batch),
            "--device",
            device,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--n-predict", type=int, default=20000)
    parser.add_argument(
        "--n-throughput", type=int, default=2048, help="patterns per throughput pass"
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["predict", "compile", "epoch", "memory"]
    )
    parser.add_argument("--output", type=Path, default=Path("bench-results/torch.json"))
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        _memory_child(args.memory_child, args.batch, args.device)
        return
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    report: dict = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "N": 64,
        "gridsize": 1,
        "n_filters_scale": 2,
        "batch": args.batch,
    }
    model = build_model(
        ModelConfig(N=64, gridsize=1, n_filters_scale=2),
        np.ones((64, 64), np.complex64),
        988.2,
        seed=0,
    ).to(device)
    if "predict" not in args.skip:
        report["predict"] = bench_predict(
            model, args.n_throughput, args.batch, device, args.repeats, False
        )
    if "compile" not in args.skip:
        report["predict_compiled"] = bench_predict(
            model, args.n_throughput, args.batch, device, args.repeats, True
        )
    if "epoch" not in args.skip:
        accelerator = "gpu" if device.type == "cuda" else "cpu"
        report["epoch"] = {
            "n_train": args.n_train,
            **bench_epoch(args.n_train, args.batch, accelerator, args.repeats),
        }
    if "memory" not in args.skip:
        report["memory"] = bench_memory(args.n_predict, args.batch, args.device)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
